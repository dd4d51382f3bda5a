//! The directory's machine flow, run by `idp serve`: what changed in this IdP's directory sent
//! by itself, as signed `directory-update` transfers on each flow of the zone's policy that
//! carries them out of the zone — from `private` (the authority) to every zone it replicates
//! to, and from a zone with public registrations (`internet`) to `private`.
//!
//! The pusher looks at the directory's change log every [`LOOK_EVERY`] (on change, within that
//! time), at once on `SIGUSR1` (on request), and exports for a destination when the directory
//! has versions it has not sent there. Updates **overlap**: each one starts where the update
//! before the last one ended (its records are the current state of what changed, so applying a
//! version twice changes nothing), so one update lost on the link is made up by the next; the
//! receiving IdP refuses one that leaves a gap, and takes (without applying) one it holds
//! already. What was sent is kept per destination in `directory-pushed.json` beside the store,
//! so a restarted IdP goes on from there; `SIGUSR2` sends everything again from version 0.
//! A submission the sender refuses, or a sender not running, is said and tried at the next look.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tianping_certs::TokenSigner;
use tianping_core::{Component, DataDir, ZoneName};
use tianping_idp::Store;

use super::replicate::Replicator;
use crate::ship::{Overlap, read_state, write_state};

/// How often the change log is looked at: a change leaves the zone within this time.
pub(crate) const LOOK_EVERY: Duration = Duration::from_secs(2);

/// The destinations and what each needs.
pub(crate) struct Pusher {
    zone: ZoneName,
    store: Arc<dyn Store>,
    replicator: Arc<Replicator>,
    tokens: TokenSigner,
    sender: PathBuf,
    state: PathBuf,
    /// `(destination, flow)` for every flow out of the zone carrying `directory-update`.
    flows: Vec<(ZoneName, String)>,
    /// The last failure said per destination: a sender that does not run is said once, not
    /// at every look.
    said: std::sync::Mutex<BTreeMap<String, String>>,
}

impl Pusher {
    /// The pusher of `zone`'s IdP, `None` when its policy sends no directory update anywhere.
    pub(crate) fn new(
        dir: &DataDir,
        zone: &ZoneName,
        store: Arc<dyn Store>,
        replicator: Arc<Replicator>,
        state_dir: &std::path::Path,
    ) -> miette::Result<Option<Self>> {
        use miette::{IntoDiagnostic, WrapErr};
        let path = dir.zone_policy(zone);
        let source = std::fs::read_to_string(&path)
            .into_diagnostic()
            .wrap_err_with(|| format!("reading `{}`", path.display()))?;
        let checked = tianping_policies::check(&path.display().to_string(), &source);
        let Some(policy) = checked.policy() else {
            return Ok(None);
        };
        let flows: Vec<(ZoneName, String)> = policy
            .flows()
            .filter(|f| {
                f.from() == zone
                    && f.kinds()
                        .any(|(k, _)| k == tianping_policies::Kind::DirectoryUpdate)
            })
            .map(|f| (f.to().clone(), f.name().to_owned()))
            .collect();
        if flows.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            zone: zone.clone(),
            store,
            replicator,
            tokens: crate::ship::node_tokens(dir, zone, Component::Idp)?,
            sender: dir.socket(zone, Component::ExchangeSender),
            state: state_dir.join("directory-pushed.json"),
            flows,
            said: std::sync::Mutex::new(BTreeMap::new()),
        }))
    }

    /// Sends each destination what it lacks; `again`: from version 0.
    async fn push(&self, again: bool, asked: bool) {
        let store = Arc::clone(&self.store);
        let latest = tokio::task::spawn_blocking(move || store.changes_since(u64::MAX))
            .await
            .ok()
            .and_then(Result::ok)
            .map_or(0, |(_, latest)| latest);
        let mut sent: BTreeMap<String, Overlap> = read_state(&self.state);
        for (to, flow) in &self.flows {
            let was = sent.get(to.as_str()).copied().unwrap_or_default();
            if latest == 0 || (latest <= was.last && !again) {
                if asked {
                    println!("directory: nothing new for `{to}` (version {latest} sent)");
                }
                continue;
            }
            let since = was.next_since(latest, again);
            let (store, replicator, dest) = (
                Arc::clone(&self.store),
                Arc::clone(&self.replicator),
                to.clone(),
            );
            let made =
                tokio::task::spawn_blocking(move || replicator.export(&*store, since, &dest)).await;
            let bytes = match made {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    eprintln!("directory: the update for `{to}` was not made: {e}");
                    continue;
                }
                Err(_) => continue,
            };
            match crate::ship::submit(&self.sender, &self.tokens, flow, "directory-update", bytes)
                .await
            {
                Ok(transfer) => {
                    if let Ok(mut said) = self.said.lock() {
                        said.remove(to.as_str());
                    }
                    println!(
                        "directory: versions {since}..{latest} of `{}` sent to `{to}` as transfer {transfer} on `{flow}`",
                        self.zone
                    );
                    sent.insert(to.to_string(), was.sent(latest));
                    if let Err(e) = write_state(&self.state, &sent) {
                        eprintln!("directory: {e}");
                    }
                }
                Err(e) => {
                    let mut said = self
                        .said
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if asked || said.get(to.as_str()) != Some(&e) {
                        eprintln!(
                            "directory: sending to `{to}` on `{flow}` failed, tried again at each look: {e}"
                        );
                        said.insert(to.to_string(), e);
                    }
                }
            }
        }
    }

    /// Runs on the IdP's runtime until `stop` turns true.
    pub(crate) fn spawn(
        self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> miette::Result<tokio::task::JoinHandle<()>> {
        use miette::IntoDiagnostic;
        use tokio::signal::unix::{SignalKind, signal};
        let mut usr1 = signal(SignalKind::user_defined1()).into_diagnostic()?;
        let mut usr2 = signal(SignalKind::user_defined2()).into_diagnostic()?;
        Ok(tokio::spawn(async move {
            let mut look = tokio::time::interval(LOOK_EVERY);
            loop {
                let (again, asked) = tokio::select! {
                    _ = look.tick() => (false, false),
                    _ = usr1.recv() => (false, true),
                    _ = usr2.recv() => (true, true),
                    _ = stop.changed() => return,
                };
                self.push(again, asked).await;
            }
        }))
    }
}
