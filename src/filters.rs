//! The filters the exchange daemons run (both sides): every filter type `tianping_crossdomain`
//! exports, and the audit log's `audit-batch` decoder as a filter over `tianping_audit`.

use std::path::PathBuf;
use std::sync::Arc;

use tianping_core::{DataDir, ZoneName};
use tianping_crossdomain::{
    Filter, FilterInput, Filtered, Filters, ImageLimits, JpegFilter, JsonFilter, MemoryBound,
    Mp4Filter, OfdFilter, PdfFilter, PngFilter, ReceiptFilter, Refusal, Step, StepState,
    TextFilter,
};

/// The socket of the ClamAV daemon `tianping up` runs for this data folder.
pub(crate) fn fabric_clamd_socket(dir: &DataDir) -> PathBuf {
    dir.run().join("clamd.sock")
}

/// Where the `scan` step asks ClamAV's daemon: the one `up` runs for this folder when its
/// socket is there, else Debian's ([`tianping_crossdomain::Clamd::DEFAULT_SOCKET`]).
pub(crate) fn clamd_socket(dir: &DataDir) -> PathBuf {
    let ours = fabric_clamd_socket(dir);
    if ours.exists() {
        ours
    } else {
        PathBuf::from(tianping_crossdomain::Clamd::DEFAULT_SOCKET)
    }
}

/// The flows of `policy` whose sanitize steps ask `scan`, and whether ClamAV's daemon answers
/// `PING` where the filters of `dir` ask it ([`clamd_socket`]): `None` when no flow asks.
pub(crate) fn scanning_at(
    policy: &tianping_policies::Policy,
    dir: &DataDir,
) -> Option<(Vec<String>, PathBuf, Result<(), String>)> {
    let (flows, _) = scanning(policy)?;
    let socket = clamd_socket(dir);
    let clamd =
        tianping_crossdomain::Clamd::new(&socket).with_timeout(std::time::Duration::from_secs(5));
    let answer = clamd.ping();
    Some((flows, socket, answer))
}

/// The flows of `policy` whose sanitize steps ask `scan`, and whether ClamAV's daemon answers
/// `PING` at Debian's socket ([`tianping_crossdomain::Clamd::DEFAULT_SOCKET`]): `None` when no
/// flow asks.
pub(crate) fn scanning(
    policy: &tianping_policies::Policy,
) -> Option<(Vec<String>, Result<(), String>)> {
    let flows: Vec<String> = policy
        .flows()
        .filter(|f| f.sanitize().any(|s| s == "scan"))
        .map(|f| f.name().to_owned())
        .collect();
    if flows.is_empty() {
        return None;
    }
    let clamd = tianping_crossdomain::Clamd::new(tianping_crossdomain::Clamd::DEFAULT_SOCKET)
        .with_timeout(std::time::Duration::from_secs(5));
    Some((flows, clamd.ping()))
}

/// The filters zone `zone` registers, by kind. `dir` is where zone-local filter settings will
/// be read from; today every other filter runs with its defaults.
/// The updates' validators (`policy-update`, `crl`, `trust-bundle`) check against the zone's
/// installed copies under `dir`. The `scan` step asks ClamAV's daemon at [`clamd_socket`]
/// (the one `up` runs, else Debian's `/run/clamav/clamd.ctl`); with no daemon answering, every
/// transfer whose flow asks `scan` is refused.
pub(crate) fn zone_filters(dir: &DataDir, zone: &ZoneName) -> miette::Result<Filters> {
    let mut f = Filters::new();
    f.register(Arc::new(TextFilter::new()));
    f.register(Arc::new(
        JsonFilter::with_default_schemas().map_err(|e| miette::miette!("{e}"))?,
    ));
    f.register(Arc::new(PngFilter::new(ImageLimits::default())));
    f.register(Arc::new(JpegFilter::new(ImageLimits::default())));
    f.register(Arc::new(PdfFilter::default()));
    f.register(Arc::new(OfdFilter::default()));
    f.register(Arc::new(Mp4Filter::default()));
    f.register(Arc::new(ReceiptFilter::new()));
    f.register(Arc::new(AuditBatchFilter));
    f.register(Arc::new(DirectoryUpdateFilter::new(dir, zone)));
    f.register(Arc::new(crate::install_filters::PolicyUpdateFilter::new(
        dir, zone,
    )));
    f.register(Arc::new(crate::install_filters::CrlFilter::new(
        dir,
        zone,
        Arc::new(tianping_core::SystemClock),
    )));
    f.register(Arc::new(crate::install_filters::TrustBundleFilter::new(
        dir, zone,
    )));
    let f = f.with_scanner(Arc::new(tianping_crossdomain::Clamd::new(clamd_socket(
        dir,
    ))));
    Ok(f)
}

/// `audit-batch`: a shipping batch of the audit log, decoded by `tianping_audit` and encoded
/// again; only a batch that re-encodes to the bytes that came is passed, as those bytes.
#[derive(Debug)]
pub(crate) struct AuditBatchFilter;

impl Filter for AuditBatchFilter {
    fn kind(&self) -> &str {
        "audit-batch"
    }

    fn memory(&self) -> MemoryBound {
        MemoryBound::Proportional(3)
    }

    fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        let batch = tianping_audit::AuditBatch::decode(bytes)
            .map_err(|e| Refusal::new("audit-batch", format!("not an audit batch: {e}")))?;
        let again = batch
            .encode()
            .map_err(|e| Refusal::new("audit-batch", format!("the batch does not encode: {e}")))?;
        if again != bytes {
            return Err(Refusal::new(
                "audit-batch",
                "the batch is not in its one canonical encoding",
            ));
        }
        let steps = input
            .steps
            .iter()
            .map(|s| {
                let state = match *s {
                    "validate" | "rebuild" => StepState::Done,
                    "strip-metadata" => StepState::NotApplicable,
                    _ => StepState::Unsupported,
                };
                Step::new(*s, state)
            })
            .collect();
        Ok(Filtered {
            bytes: again,
            steps,
            text: Vec::new(),
        })
    }
}

/// `directory-update`: a signed directory update (`tianping_idp::check_update`), checked in
/// the zone the filter runs in (the sender's or the receiver's) against that zone's policy copy
/// (the directory flow from the update's source to its destination: its accounts, attributes
/// and credentials) and trust bundle (signed by the source zone's IdP). The versions are the
/// receiving IdP's to check: the exchange keeps no directory state. Passed as the bytes that
/// came, which are what was signed.
#[derive(Debug)]
pub(crate) struct DirectoryUpdateFilter {
    dir: DataDir,
    zone: ZoneName,
}

impl DirectoryUpdateFilter {
    pub(crate) fn new(dir: &DataDir, zone: &ZoneName) -> Self {
        Self {
            dir: dir.clone(),
            zone: zone.clone(),
        }
    }
}

impl Filter for DirectoryUpdateFilter {
    fn kind(&self) -> &str {
        "directory-update"
    }

    fn memory(&self) -> MemoryBound {
        MemoryBound::Proportional(4)
    }

    fn run(&self, input: &FilterInput<'_>, bytes: &[u8]) -> Result<Filtered, Refusal> {
        let refuse = |why: String| Refusal::new("directory-update", why);
        let update =
            tianping_idp::DirectoryUpdate::decode(bytes).map_err(|e| refuse(e.to_string()))?;
        let b = &update.body;
        if b.source != self.zone && b.to != self.zone {
            return Err(refuse(format!(
                "an update from `{}` to `{}` does not cross zone `{}`",
                b.source, b.to, self.zone
            )));
        }
        let fabric =
            tianping_core::Fabric::load(&self.dir.fabric()).map_err(|e| refuse(e.to_string()))?;
        let (_, terms) =
            crate::cmd::idp::flow_terms(&self.dir, &self.zone, &b.source, &b.to).map_err(refuse)?;
        let signers = crate::cmd::idp::ZoneSigners::load(&self.dir, &fabric, &self.zone)
            .map_err(|e| refuse(e.to_string()))?;
        let expect = tianping_idp::Expect {
            kind: b.kind,
            source: &b.source,
            to: &b.to,
            terms: &terms,
            signers: &signers,
            last_applied: None,
        };
        let checked =
            tianping_idp::check_update(bytes, &expect).map_err(|e| refuse(e.to_string()))?;
        let mut text = Vec::new();
        for rec in &checked.body.records {
            match &rec.change {
                tianping_idp::Change::Court(c) => text.push(c.name.clone()),
                tianping_idp::Change::User(u) => {
                    text.push(u.login.clone());
                    text.extend(u.attributes.iter().map(|(_, v)| v.clone()));
                }
            }
        }
        let steps = input
            .steps
            .iter()
            .map(|s| {
                let state = match *s {
                    "validate" | "rebuild" => StepState::Done,
                    "strip-metadata" => StepState::NotApplicable,
                    _ => StepState::Unsupported,
                };
                Step::new(*s, state)
            })
            .collect();
        Ok(Filtered {
            bytes: bytes.to_vec(),
            steps,
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_an_audit_batch() {
        let input = FilterInput {
            kind: "audit-batch",
            schema: None,
            steps: &["validate", "rebuild"],
            max_size: 1 << 20,
            release: false,
        };
        let got = AuditBatchFilter.run(&input, b"not a batch");
        assert!(got.is_err_and(|r| r.reason.contains("not an audit batch")));
    }

    #[test]
    fn garbage_is_not_a_directory_update() {
        let input = FilterInput {
            kind: "directory-update",
            schema: None,
            steps: &["validate"],
            max_size: 1 << 20,
            release: true,
        };
        let f =
            DirectoryUpdateFilter::new(&DataDir::new("/nonexistent"), &"private".parse().unwrap());
        let got = f.run(&input, b"not an update");
        assert!(got.is_err_and(|r| r.reason.contains("not a directory update")));
    }
}
