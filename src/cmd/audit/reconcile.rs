//! `tianping audit reconcile`: a zone's exchange sender's log set against the logs of the
//! receivers it sends to (`tianping_audit::Reconcile`), each verified first. (One transfer's
//! events are picked out by `audit search --transfer`, a field of its query.)
//!
//! A log is read through its owner when one serves it (as `search` does), else from its store;
//! only the entries the verification covered are read.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_audit::{
    AuditLog, ErrorBody, Query, Reconcile, Record, ServiceRequest as Request, TransferLine,
    TransferState, VerifyAnswer,
};
use tianping_core::{Clock, DataDir, Fabric, SystemClock, UnixTime};

use super::live::{Owner, owner_error};

/// `tianping audit reconcile`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReconcileArgs {
    /// The sending zone's exchange sender's log folder
    /// (`DATA/zones/<zone>/exchange-sender/audit`).
    #[arg(long, value_name = "DIR")]
    sender: PathBuf,
    /// A receiving zone's exchange receiver's log folder
    /// (`DATA/zones/<zone>/exchange-receiver/audit`); once for each zone the sender sends to.
    #[arg(long = "receiver", value_name = "DIR", required = true)]
    receivers: Vec<PathBuf>,
    /// Only transfers of this flow.
    #[arg(long)]
    flow: Option<String>,
    /// Only transfers decided at or after this time (milliseconds since the epoch).
    #[arg(long)]
    since: Option<u64>,
    /// Only transfers decided at or before this time (milliseconds since the epoch).
    #[arg(long)]
    until: Option<u64>,
    /// How long the sender retains a sent transfer (`36h`, `90m`, `0`): a transfer spooled
    /// longer ago and never received is missing. Default: each link's `retain` in the
    /// `fabric.toml` of the data folder the sender's log is in (else `--data`'s), else 24h.
    #[arg(long)]
    retain: Option<String>,
    /// The sending zone (default: the folder after `zones/` in the sender's log's path, else
    /// the zone of its decisions).
    #[arg(long)]
    zone: Option<String>,
    /// One JSON object per transfer on standard output (the summary goes to standard error).
    #[arg(long)]
    json: bool,
    /// The current time in milliseconds since the epoch, for tests.
    #[arg(long, hide = true)]
    now: Option<u64>,
}

/// A log to read: through its running owner, or its store.
enum Log {
    Owned(Owner),
    Stopped(Box<AuditLog>),
}

impl Log {
    /// Opens the log at `dir` (`role` names it in errors) and verifies it with the key it
    /// pinned; a log that does not verify is an error. Also returns how many entries were
    /// verified (what is read of it).
    fn verified(role: &str, dir: &Path) -> miette::Result<(Self, u64)> {
        let failed = |e: &dyn std::fmt::Display| {
            miette!(
                "the {role}'s log `{}` does not verify: {e}; nothing was reconciled",
                dir.display()
            )
        };
        let unreadable = |e: &dyn std::fmt::Display| {
            miette!(
                "the {role}'s log `{}` cannot be read (is its daemon running?): {e}; nothing was reconciled",
                dir.display()
            )
        };
        if let Some(owner) = Owner::find(dir)? {
            let answer = match owner.request(&Request::Verify { key: None }) {
                Ok((200, body)) => serde_json::from_slice::<VerifyAnswer>(&body)
                    .into_diagnostic()
                    .wrap_err("reading the owner's answer")?,
                Ok((status, body)) => {
                    return Err(match serde_json::from_slice::<ErrorBody>(&body) {
                        Ok(ErrorBody {
                            error,
                            stored: Some(_),
                            ..
                        }) => failed(&error),
                        _ => owner_error(status, &body),
                    });
                }
                Err(e) => {
                    return Err(miette!(
                        "asking the owner of `{}` at `{}`: {e}",
                        dir.display(),
                        owner.socket.display()
                    ));
                }
            };
            report_verified(role, dir, &answer);
            return Ok((Self::Owned(owner), answer.entries));
        }
        let log = match AuditLog::open(dir) {
            Ok(log) => log,
            Err(e @ tianping_audit::StoreError::Storage(_)) => return Err(unreadable(&e)),
            Err(e) => {
                return Err(e)
                    .into_diagnostic()
                    .wrap_err_with(|| format!("opening the {role}'s log `{}`", dir.display()));
            }
        };
        let report = log
            .verify_with_archives(None, &[], &mut |_, _| {})
            .map_err(|e| failed(&e))?;
        let answer = VerifyAnswer::from(&report);
        report_verified(role, dir, &answer);
        Ok((Self::Stopped(Box::new(log)), answer.entries))
    }

    /// The records of the first `size` entries (in the log's order); the first failure to read
    /// stops them and is kept in `failure`.
    fn records<'a>(
        &'a self,
        size: u64,
        failure: &'a RefCell<Option<miette::Report>>,
    ) -> Box<dyn Iterator<Item = Record> + 'a> {
        let fail = move |e: miette::Report| {
            failure.borrow_mut().get_or_insert(e);
        };
        match self {
            Self::Stopped(log) => Box::new(
                log.entries(0)
                    .map_while(move |r| match r {
                        Ok(r) => Some(r),
                        Err(e) => {
                            fail(miette!("reading the log: {e}"));
                            None
                        }
                    })
                    .take_while(move |r| r.index < size),
            ),
            Self::Owned(owner) => {
                let (mut page, mut from, mut done) = (VecDeque::new(), 0u64, false);
                let limit = tianping_audit::MAX_SEARCH_LIMIT;
                Box::new(std::iter::from_fn(move || {
                    loop {
                        if let Some(r) = page.pop_front() {
                            return Some(r);
                        }
                        if done || from >= size {
                            return None;
                        }
                        let body = owner.get(&Request::Search {
                            query: Query::default(),
                            from,
                            limit,
                        });
                        let records = body.and_then(|b| {
                            b.split(|c| *c == b'\n')
                                .filter(|l| !l.is_empty())
                                .map(|l| {
                                    serde_json::from_slice::<Record>(l)
                                        .into_diagnostic()
                                        .wrap_err("reading the owner's answer")
                                })
                                .collect::<miette::Result<Vec<Record>>>()
                        });
                        match records {
                            Ok(records) => {
                                done = (records.len() as u64) < limit;
                                from = records.last().map_or(size, |r| r.index + 1);
                                page.extend(records.into_iter().filter(|r| r.index < size));
                            }
                            Err(e) => {
                                fail(e);
                                return None;
                            }
                        }
                    }
                }))
            }
        }
    }
}

/// Says on standard error what was verified, with the warnings `audit verify` gives.
fn report_verified(role: &str, dir: &Path, a: &VerifyAnswer) {
    eprintln!(
        "{role}'s log `{}`: verified {} entries, {} checkpoints (signed up to {})",
        dir.display(),
        a.entries,
        a.checkpoints,
        a.signed_size
    );
    if a.signed_size < a.entries {
        eprintln!(
            "warning: {} entries of `{}` after its last checkpoint are covered by no signature",
            a.entries - a.signed_size,
            dir.display()
        );
    }
    if a.archived > 0 {
        eprintln!(
            "warning: {} entries of `{}` are archived and not read: their transfers may show as unexpected",
            a.archived,
            dir.display()
        );
    }
}

/// The data folder a log sits in (`DATA/zones/<zone>/<component>/audit`), if it does.
fn data_dir_of(dir: &Path) -> Option<DataDir> {
    let full = std::path::absolute(dir).ok()?;
    let parts: Vec<_> = full.components().collect();
    let at = parts.iter().rposition(|c| c.as_os_str() == "zones")?;
    let root: PathBuf = parts.get(..at)?.iter().collect();
    Some(DataDir::new(root))
}

/// Each link's retention from the first of `folders` whose `fabric.toml` loads.
fn retention(folders: &[DataDir]) -> BTreeMap<u32, Duration> {
    folders
        .iter()
        .filter(|d| d.fabric().exists())
        .find_map(|d| Fabric::load(&d.fabric()).ok())
        .map(|f| f.links().iter().map(|l| (l.id, l.retain)).collect())
        .unwrap_or_default()
}

pub(super) fn reconcile(data: &Path, a: ReconcileArgs) -> miette::Result<ExitCode> {
    let now = match a.now {
        Some(ms) => UnixTime::from_millis(ms),
        None => SystemClock.now(),
    };
    let mut options = Reconcile::new(now, tianping_core::DEFAULT_RETAIN);
    match &a.retain {
        Some(r) => {
            options.default_retain = tianping_core::parse_retain(r).ok_or_else(|| {
                miette!("`--retain {r}` is not a retention: a number and `s`, `m`, `h` or `d` (at most 30d), or `0`")
            })?;
        }
        None => {
            let folders: Vec<DataDir> = data_dir_of(&a.sender)
                .into_iter()
                .chain([DataDir::new(data)])
                .collect();
            options.retain = retention(&folders);
        }
    }
    options.zone = match &a.zone {
        Some(z) => Some(
            z.parse::<tianping_core::ZoneName>()
                .map_err(|e| miette!("{e}"))?,
        ),
        None => super::trust::zone_of(&a.sender, None).ok(),
    }
    .map(|z| z.to_string());
    options.flow = a.flow;
    options.since = a.since.map(UnixTime::from_millis);
    options.until = a.until.map(UnixTime::from_millis);

    // The receivers are read first: a running sender records a transfer's decision before it
    // sends it, so every transfer a receiver has recorded by then is in the sender's log read
    // after it (one decided in between is in flight, not unexpected).
    let mut receivers = Vec::with_capacity(a.receivers.len());
    for dir in &a.receivers {
        receivers.push(Log::verified("receiver", dir)?);
    }
    let sender = Log::verified("sender", &a.sender)?;
    let failure = RefCell::new(None);
    let result = {
        let sent = sender.0.records(sender.1, &failure).map(|r| r.event);
        let seen = receivers
            .iter()
            .flat_map(|(log, size)| log.records(*size, &failure))
            .map(|r| r.event);
        options.run(sent, seen)
    };
    if let Some(e) = failure.into_inner() {
        return Err(e.wrap_err("nothing was reconciled"));
    }

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if a.json {
        for l in &result.lines {
            serde_json::to_writer(&mut out, l).into_diagnostic()?;
            out.write_all(b"\n").into_diagnostic()?;
        }
        out.flush().into_diagnostic()?;
        eprintln!("{}", result.summary());
    } else {
        write_table(&mut out, &result.lines).into_diagnostic()?;
        writeln!(out, "{}", result.summary()).into_diagnostic()?;
        out.flush().into_diagnostic()?;
    }
    Ok(if result.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What the table says of a line after its state.
fn detail(l: &TransferLine) -> String {
    let mut d = match l.state {
        TransferState::Delivered => format!("to {}", l.service),
        _ => l.reason.clone(),
    };
    if let (Some(link), Some(n)) = (l.link, l.link_transfer) {
        d.push_str(&format!(" [link {link} transfer {n}]"));
    }
    for n in &l.notes {
        d.push_str("; ");
        d.push_str(n);
    }
    d.trim().to_owned()
}

/// The table for people; its time is when the state was settled (delivered, refused, lost,
/// received), else when the sender decided.
fn write_table(out: &mut dyn Write, lines: &[TransferLine]) -> std::io::Result<()> {
    let rows: Vec<[String; 5]> = lines
        .iter()
        .map(|l| {
            [
                l.transfer.clone().unwrap_or_else(|| "-".into()),
                l.state.words().to_owned(),
                l.flow.clone(),
                l.time.or(l.decided).map(utc).unwrap_or_default(),
                detail(l),
            ]
        })
        .collect();
    let head = ["TRANSFER", "STATE", "FLOW", "TIME (UTC)", "DETAIL"].map(str::to_owned);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&head).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&head).chain(&rows) {
        let mut line = String::new();
        for (i, (w, cell)) in widths.iter().zip(row).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// `2026-12-03 06:05:00`: a time in UTC (the table's head says so).
fn utc(t: UnixTime) -> String {
    let text = tianping_certs::format_time(i64::try_from(t.as_secs()).unwrap_or(i64::MAX));
    match text.strip_suffix(" UTC") {
        Some(bare) => bare.to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_in_utc() {
        assert_eq!(utc(UnixTime::from_millis(0)), "1970-01-01 00:00:00");
        assert_eq!(utc(UnixTime::from_secs(951_782_400)), "2000-02-29 00:00:00");
        assert_eq!(
            utc(UnixTime::from_millis(1_796_277_900_999)),
            "2026-12-03 06:05:00"
        );
    }
}
