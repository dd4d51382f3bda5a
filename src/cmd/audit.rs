//! `tianping audit`: append to, verify, prove, search, export, ship, mirror and archive an
//! audit log folder.
//!
//! A log whose owner runs (its folder's `owner.sock` names a control socket that answers) is
//! read through the owner (`tianping_audit::handle_request`): `verify`, `search`, `export`, `prove`,
//! `checkpoint` (printing the latest) and `ship` print what they print on a stopped log;
//! `append`, `mirror`, `archive` and signing a checkpoint are refused, since only the owner
//! writes its log. A stale record (nothing answers) is ignored and the store opened here.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_audit::{
    Archive, AuditLog, BatchReader, ConsistencyProof, Event, InclusionProof, Query, Retention,
    SignedCheckpoint, danger,
};
use tianping_audit::{ErrorBody, ServiceRequest as Request, VerifyAnswer};
use tianping_core::{Algorithm, PublicKey, RingSigner, Signer, UnixTime};

/// The longest JSON line `append` reads.
const MAX_LINE: u64 = 1 << 20;
/// The most events committed as one group.
const MAX_GROUP: usize = 8192;

mod live;
mod reconcile;
mod store;
mod trust;

use live::{Owner, owner_error, refuse_if_live};

/// `tianping audit` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCmd {
    /// Run the zone's audit store: the mirrors of every zone's logs, fed by the `audit-batch`
    /// transfers its exchange receiver delivers, until `SIGINT` or `SIGTERM`.
    Store {
        /// The zone whose store it is (`private` in the default fabric).
        #[arg(long)]
        zone: tianping_core::ZoneName,
    },
    /// Make a checkpoint signing key (PKCS#8 PEM) and print its public key.
    Keygen {
        /// Where to write the private key (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
        /// `es256` or `ed25519`.
        #[arg(long, default_value = "ed25519")]
        alg: String,
    },
    /// Append events read as JSON lines on stdin; print a receipt line per event once durable.
    Append {
        #[command(flatten)]
        log: LogArg,
        /// A PKCS#8 PEM key: sign checkpoints as `--every` says, and one at the end.
        #[arg(long)]
        key: Option<PathBuf>,
        /// With `--key`: sign a checkpoint after a commit once at least this many entries came
        /// since the last one (the lines read at once are one commit, of up to 8,192 lines, so
        /// checkpoints fall at commit ends, not at exact multiples).
        #[arg(long, default_value_t = 1000)]
        every: u64,
        /// The certificate (PEM, leaf first) of `--key`, such as a component's `node.pem`,
        /// recorded in the log so that `verify --trust` can check who signed it.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// The log's name, when this creates it (default `tianping.localhost/audit/<folder>`).
        #[arg(long)]
        origin: Option<String>,
    },
    /// Recompute the tree and check every checkpoint; exit 0 only if all holds.
    Verify {
        #[command(flatten)]
        log: LogArg,
        /// The checkpoint key (`es256:...` / `ed25519:...`, or a file holding it); default the
        /// key the log pinned.
        #[arg(long)]
        key: Option<String>,
        /// Archive files of this log: their entries are recomputed and checked too.
        #[arg(long = "archive", value_name = "FILE", num_args = 1..)]
        archives: Vec<PathBuf>,
        /// A trust bundle (PEM): the log's key must be that of a `node` certificate of the
        /// log's zone under it (the certificate `append --cert` recorded).
        #[arg(long, value_name = "FILE", conflicts_with = "key")]
        trust: Option<PathBuf>,
        /// The log's zone, for `--trust` (default: the folder after `zones/` in its path).
        #[arg(long, requires = "trust")]
        zone: Option<String>,
    },
    /// Move whole leading records older than the retention period into an archive file (with a
    /// signed checkpoint proving what was archived); the log keeps their leaf hashes.
    Archive {
        #[command(flatten)]
        log: LogArg,
        /// The log's PKCS#8 PEM signing key.
        #[arg(long)]
        key: PathBuf,
        /// The archive file to write (refused if it exists, unless it is an unfinished archive
        /// of this log).
        #[arg(long)]
        out: PathBuf,
        /// Entries younger than this many days stay in the log (at least 180).
        #[arg(long, default_value_t = tianping_audit::MIN_RETENTION_DAYS)]
        retention_days: u64,
        /// Allow a retention shorter than 180 days (below the legal minimum for network logs).
        #[arg(long)]
        danger_allow_short_retention: bool,
        /// The current time in milliseconds since the epoch, for tests; never later than the
        /// system clock.
        #[arg(long, hide = true)]
        now: Option<u64>,
    },
    /// Sign a checkpoint of every entry now (with `--key`), or print the latest one.
    Checkpoint {
        #[command(flatten)]
        log: LogArg,
        /// The PKCS#8 PEM signing key; without it, print the latest checkpoint (a live log's
        /// owner signs on its own schedule).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Print an inclusion proof (`--index`) or a consistency proof (`--from`, `--to`) as JSON.
    Prove {
        #[command(flatten)]
        log: LogArg,
        /// The entry to prove.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        index: Option<u64>,
        /// The tree size to prove it in (default: the whole log).
        #[arg(long, requires = "index")]
        size: Option<u64>,
        /// The older size.
        #[arg(long, requires = "to")]
        from: Option<u64>,
        /// The newer size.
        #[arg(long, requires = "from")]
        to: Option<u64>,
    },
    /// Print matching entries as JSON lines.
    Search {
        #[command(flatten)]
        log: LogArg,
        #[command(flatten)]
        query: QueryArgs,
    },
    /// Set a zone's exchange sender's log against its receivers' logs (each verified first):
    /// every transfer the sender decided, delivered, refused (by either side, with the reason),
    /// lost on the link, held, in flight or missing, and anything a receiver recorded that the
    /// sender never spooled (unexpected); exit 1 when anything is missing or unexpected.
    Reconcile(reconcile::ReconcileArgs),
    /// Print every entry as JSON lines.
    Export {
        #[command(flatten)]
        log: LogArg,
    },
    /// Write an audit batch: entries from `--since` up to the latest checkpoint.
    Ship {
        #[command(flatten)]
        log: LogArg,
        /// The batch file to write.
        #[arg(long)]
        out: PathBuf,
        /// The first entry (the size the mirror has).
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Add shipped batches to a mirror log (created if missing), refusing any that does not
    /// extend it.
    Mirror {
        #[command(flatten)]
        log: LogArg,
        /// The key the origin log signs with; default: pinned by the first batch.
        #[arg(long)]
        key: Option<String>,
        /// Batch files, in order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `--log DIR`.
#[derive(Debug, Args)]
pub(crate) struct LogArg {
    /// The log folder.
    #[arg(long = "log", value_name = "DIR")]
    dir: PathBuf,
}

/// Search filters.
#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// The actor.
    #[arg(long)]
    actor: Option<String>,
    /// The action.
    #[arg(long)]
    action: Option<String>,
    /// The outcome.
    #[arg(long)]
    outcome: Option<String>,
    /// The object.
    #[arg(long)]
    object: Option<String>,
    /// The flow.
    #[arg(long)]
    flow: Option<String>,
    /// The transfer id (`<zone>:<sequence>`), exactly.
    #[arg(long)]
    transfer: Option<String>,
    /// Not before (milliseconds since the epoch).
    #[arg(long)]
    since: Option<u64>,
    /// Not after (milliseconds since the epoch).
    #[arg(long)]
    until: Option<u64>,
}

pub(crate) fn run(data: &Path, cmd: AuditCmd) -> miette::Result<ExitCode> {
    match cmd {
        AuditCmd::Store { zone } => store::serve(data, &zone),
        AuditCmd::Keygen { out, alg } => keygen(&out, &alg),
        AuditCmd::Append {
            log,
            key,
            every,
            cert,
            origin,
        } => append(&log.dir, key.as_deref(), cert.as_deref(), every, origin),
        AuditCmd::Verify {
            log,
            key,
            archives,
            trust,
            zone,
        } => {
            let trust = trust
                .map(|t| trust::zone_of(&log.dir, zone.as_deref()).map(|z| (t, z)))
                .transpose()?;
            verify(&log.dir, key.as_deref(), &archives, trust)
        }
        AuditCmd::Archive {
            log,
            key,
            out,
            retention_days,
            danger_allow_short_retention,
            now,
        } => archive(
            &log.dir,
            &key,
            &out,
            retention_days,
            danger_allow_short_retention,
            now,
        ),
        AuditCmd::Checkpoint { log, key } => checkpoint(&log.dir, key.as_deref()),
        AuditCmd::Prove {
            log,
            index,
            size,
            from,
            to,
        } => prove(&log.dir, index, size, from.zip(to)),
        AuditCmd::Search { log, query } => {
            let q = Query {
                actor: query.actor,
                action: query.action,
                outcome: query.outcome,
                object: query.object,
                flow: query.flow,
                transfer: query.transfer,
                since: query.since.map(UnixTime::from_millis),
                until: query.until.map(UnixTime::from_millis),
            };
            search(&log.dir, q)
        }
        AuditCmd::Reconcile(args) => reconcile::reconcile(data, args),
        AuditCmd::Export { log } => search(&log.dir, Query::default()),
        AuditCmd::Ship { log, out, since } => {
            let head = match Owner::find(&log.dir)? {
                Some(owner) => {
                    let bytes = owner.get(&Request::Ship { since })?;
                    let mut batch = BatchReader::new(bytes.as_slice()).into_diagnostic()?;
                    let mut buf = Vec::new();
                    while batch.next_entry(&mut buf).into_diagnostic()? {}
                    write_new(&out, &bytes)?;
                    batch.head().clone()
                }
                None => {
                    let log = open(&log.dir)?;
                    let mut shipped = None;
                    write_new_with(&out, &mut |f| {
                        let mut w = std::io::BufWriter::new(f);
                        shipped = Some(log.ship_to(since, &mut w).into_diagnostic()?.0);
                        Ok(())
                    })?;
                    shipped.ok_or_else(|| miette!("nothing was shipped"))?
                }
            };
            let cp = SignedCheckpoint::parse_unverified(&head.note).into_diagnostic()?;
            println!(
                "{}",
                serde_json::json!({"from": head.old_size, "to": cp.size, "entries": cp.size - head.old_size})
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Mirror { log, key, files } => mirror(&log.dir, key.as_deref(), &files),
    }
}

fn checkpoint(dir: &Path, key: Option<&Path>) -> miette::Result<ExitCode> {
    let note = match (key, Owner::find(dir)?) {
        (Some(_), Some(owner)) => {
            return Err(miette!(
                "`{}` is live: its owner at `{}` signs checkpoints on its own schedule; run without `--key` to print the latest",
                dir.display(),
                owner.socket.display()
            ));
        }
        (None, Some(owner)) => String::from_utf8(owner.get(&Request::Checkpoint)?)
            .map_err(|_| miette!("the owner's checkpoint is not UTF-8"))?,
        (Some(key), None) => {
            let signer = read_signer(key)?;
            open(dir)?
                .checkpoint(&signer)
                .into_diagnostic()?
                .note()
                .to_string()
        }
        (None, None) => open(dir)?
            .latest_checkpoint()
            .into_diagnostic()?
            .map(|(_, note)| note)
            .ok_or_else(|| miette!("the log has no checkpoint yet"))?,
    };
    print!("{note}");
    Ok(ExitCode::SUCCESS)
}

/// `search` and `export`: from the owner page by page, or from the store.
fn search(dir: &Path, query: Query) -> miette::Result<ExitCode> {
    let Some(owner) = Owner::find(dir)? else {
        let log = open(dir)?;
        let code = print_records(log.search(&query))?;
        let archived = log.archived_size();
        if archived > 0 {
            eprintln!(
                "note: entries 0 to {} are archived (in the archive files, the live log keeps their leaf hashes only) and are not searched or shown",
                archived - 1
            );
        }
        return Ok(code);
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let limit = tianping_audit::MAX_SEARCH_LIMIT;
    let mut from = 0;
    loop {
        let page = owner.get(&Request::Search {
            query: query.clone(),
            from,
            limit,
        })?;
        out.write_all(&page).into_diagnostic()?;
        let lines = page.iter().filter(|b| **b == b'\n').count() as u64;
        if lines < limit {
            break;
        }
        let last = page
            .trim_ascii_end()
            .rsplit(|b| *b == b'\n')
            .next()
            .unwrap_or_default();
        let last: tianping_audit::Record = serde_json::from_slice(last)
            .into_diagnostic()
            .wrap_err("reading the owner's answer")?;
        from = last.index + 1;
    }
    out.flush().into_diagnostic()?;
    Ok(ExitCode::SUCCESS)
}

fn open(dir: &Path) -> miette::Result<AuditLog> {
    AuditLog::open(dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("opening the log `{}`", dir.display()))
}

fn keygen(out: &Path, alg: &str) -> miette::Result<ExitCode> {
    let alg: Algorithm = alg.parse().into_diagnostic()?;
    let (signer, pkcs8) = RingSigner::generate(alg).into_diagnostic()?;
    write_new(out, tianping_audit::pkcs8_to_pem(pkcs8.expose()).as_bytes())?;
    println!("{}", signer.public_key());
    Ok(ExitCode::SUCCESS)
}

/// Writes a file that must not exist yet (mode 0600 on Unix), fully or not at all.
fn write_new(path: &Path, bytes: &[u8]) -> miette::Result<()> {
    write_new_with(path, &mut |f| f.write_all(bytes).into_diagnostic())
}

/// Creates `path` (mode 0600, refused if it exists) from what `fill` writes, durably and
/// atomically: nothing is left at `path` or beside it if `fill` fails.
fn write_new_with(
    path: &Path,
    fill: &mut dyn FnMut(&mut std::fs::File) -> miette::Result<()>,
) -> miette::Result<()> {
    if path.exists() {
        return Err(miette!("`{}` already exists", path.display()));
    }
    let tmp = path.with_extension("tmp-write");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .into_diagnostic()
        .wrap_err_with(|| format!("creating `{}`", tmp.display()))?;
    let written = fill(&mut f).and_then(|()| f.sync_all().into_diagnostic());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).into_diagnostic()?;
    Ok(())
}

/// A PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), ES256 or Ed25519.
fn read_signer(path: &Path) -> miette::Result<RingSigner> {
    let text = std::fs::read_to_string(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading `{}`", path.display()))?;
    tianping_audit::signer_from_pem(&text).map_err(|e| miette!("`{}`: {e}", path.display()))
}

/// A public key as text, or a file holding it.
fn read_public_key(arg: &str) -> miette::Result<PublicKey> {
    if let Ok(k) = arg.parse() {
        return Ok(k);
    }
    let text = std::fs::read_to_string(arg)
        .map_err(|_| miette!("`{arg}` is neither a public key nor a readable file"))?;
    text.trim()
        .parse()
        .map_err(|e| miette!("`{arg}` does not hold a public key: {e}"))
}

fn default_origin(dir: &Path) -> String {
    let name: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '+' {
                '-'
            } else {
                c
            }
        })
        .collect();
    format!(
        "tianping.localhost/audit/{}",
        if name.is_empty() { "log" } else { &name }
    )
}

fn append(
    dir: &Path,
    key: Option<&Path>,
    cert: Option<&Path>,
    every: u64,
    origin: Option<String>,
) -> miette::Result<ExitCode> {
    let signer: Option<Arc<dyn Signer>> = match key {
        Some(k) => Some(Arc::new(read_signer(k)?)),
        None => None,
    };
    refuse_if_live(dir, "audit append")?;
    let origin = origin.unwrap_or_else(|| default_origin(dir));
    let log = AuditLog::open_or_create(dir, &origin)
        .into_diagnostic()
        .wrap_err_with(|| format!("opening the log `{}`", dir.display()))?;
    if let Some(s) = &signer {
        // refused before anything is appended: a checkpoint by another key would fail after
        if let Some(pinned) = log.pinned_key().into_diagnostic()? {
            let given = s.public_key();
            if pinned != given {
                return Err(miette!(
                    "the log's checkpoints are signed by `{pinned}`, not `{given}`; nothing was appended"
                ));
            }
        }
        if let Some(cert) = cert {
            trust::record_signer_certificate(&log, s.as_ref(), cert)?;
        }
        log.set_auto_checkpoint(s.clone(), every);
    }
    let stdin = std::io::stdin();
    let mut reader = BufReader::with_capacity(1 << 20, stdin.lock());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut appended = 0u64;
    let failure = append_lines(&log, &mut reader, &mut out, &mut appended);
    // what was appended is signed, whatever stopped the input
    if let Some(s) = &signer {
        if appended > 0 || failure.is_none() {
            log.checkpoint(s.as_ref()).into_diagnostic()?;
        }
    }
    match failure {
        Some(Stop::Line(e)) => {
            Err(e.wrap_err("events before this line were appended; nothing after it"))
        }
        Some(Stop::Other(e)) => Err(e.wrap_err(format!(
            "{appended} events were appended before this (each has its receipt)"
        ))),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Why [`append_lines`] stopped before the end of its input.
enum Stop {
    /// A line that is no event: those before it were appended.
    Line(miette::Report),
    /// Reading the input, appending or writing receipts failed.
    Other(miette::Report),
}

/// Appends the events of `reader`'s lines, a group of the lines already read at a time (one
/// commit each), and writes a receipt line for each to `out` once durable; counts them in
/// `appended`. Stops at the first line that is not an event (too long, not UTF-8, not an
/// event's JSON, too large once encoded): the events of the lines before it are appended.
fn append_lines(
    log: &AuditLog,
    reader: &mut BufReader<std::io::StdinLock<'_>>,
    out: &mut impl Write,
    appended: &mut u64,
) -> Option<Stop> {
    let mut line_no = 0u64;
    let mut line = Vec::new();
    loop {
        // Block for one line, then take every complete line already buffered: one commit.
        let mut events = Vec::new();
        let mut stop = None;
        let mut eof = false;
        loop {
            line.clear();
            let n = match reader.take(MAX_LINE + 1).read_until(b'\n', &mut line) {
                Ok(n) => n,
                Err(e) => {
                    stop = Some(Stop::Other(miette!("reading stdin: {e}")));
                    break;
                }
            };
            if n == 0 {
                eof = true;
                break;
            }
            line_no += 1;
            if let Err(why) = event_of_line(&line, &mut events) {
                stop = Some(Stop::Line(miette!("line {line_no}: {why}")));
                break;
            }
            if events.len() >= MAX_GROUP || !reader.buffer().contains(&b'\n') {
                break;
            }
        }
        if !events.is_empty() {
            if let Err(e) = append_group(log, &events, out, appended) {
                return Some(Stop::Other(e));
            }
        }
        if stop.is_some() || eof {
            return stop;
        }
    }
}

/// The event of one input line pushed to `events` (nothing for a blank line), or why the line
/// is none.
fn event_of_line(line: &[u8], events: &mut Vec<Event>) -> Result<(), String> {
    if line.len() as u64 > MAX_LINE {
        return Err(format!("longer than {MAX_LINE} bytes"));
    }
    let text = std::str::from_utf8(line).map_err(|e| format!("not UTF-8: {e}"))?;
    if text.trim().is_empty() {
        return Ok(());
    }
    let event = serde_json::from_str::<Event>(text).map_err(|e| format!("not an event: {e}"))?;
    let size = event.encoded_len();
    if size > tianping_audit::MAX_EVENT_BYTES {
        return Err(format!(
            "the event is {size} bytes once encoded, more than the limit of {} bytes",
            tianping_audit::MAX_EVENT_BYTES
        ));
    }
    events.push(event);
    Ok(())
}

/// Appends `events` in one commit and writes their receipts.
fn append_group(
    log: &AuditLog,
    events: &[Event],
    out: &mut impl Write,
    appended: &mut u64,
) -> miette::Result<()> {
    let receipts = log.append_many(events).into_diagnostic()?;
    *appended += receipts.len() as u64;
    for r in receipts {
        serde_json::to_writer(&mut *out, &r).into_diagnostic()?;
        out.write_all(b"\n").into_diagnostic()?;
    }
    out.flush().into_diagnostic()?;
    if let Some(e) = log.auto_checkpoint_error() {
        eprintln!("warning: checkpoint failed: {e}");
    }
    Ok(())
}

fn archive(
    dir: &Path,
    key: &Path,
    out: &Path,
    days: u64,
    allow_short: bool,
    now: Option<u64>,
) -> miette::Result<ExitCode> {
    let retention = match Retention::days(days) {
        Ok(r) => r,
        Err(_) if allow_short => danger::short_retention(days),
        Err(e) => {
            return Err(e)
                .into_diagnostic()
                .wrap_err("pass `--danger-allow-short-retention` only where the law allows it");
        }
    };
    let signer = read_signer(key)?;
    let system_now = tianping_core::Clock::now(&tianping_core::SystemClock);
    // An earlier `--now` only archives less; a later one would archive entries still in retention.
    let now = match now.map(UnixTime::from_millis) {
        Some(t) if t > system_now => {
            return Err(miette::miette!(
                "`--now` may not be later than the system clock; nothing was archived"
            ));
        }
        Some(t) => t,
        None => system_now,
    };
    refuse_if_live(dir, "audit archive")?;
    let log = open(dir)?;
    let cutoff = retention.cutoff(now);
    let r = log
        .archive(cutoff, now, retention, out, &signer)
        .into_diagnostic()
        .wrap_err("nothing was removed from the log")?;
    println!(
        "{}",
        serde_json::json!({
            "from": r.from,
            "to": r.to,
            "archived": r.to - r.from,
            "cutoff": cutoff.as_millis(),
            "file": r.sha256.map(|_| out.display().to_string()),
            "sha256": r.sha256.map(|h| to_hex(&h)),
            "event": r.event,
        })
    );
    if r.sha256.is_none() {
        eprintln!("nothing to archive: no whole record is older than the cutoff");
    }
    Ok(ExitCode::SUCCESS)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn verify(
    dir: &Path,
    key: Option<&str>,
    archive_files: &[PathBuf],
    trust: Option<(PathBuf, tianping_core::ZoneName)>,
) -> miette::Result<ExitCode> {
    let key = key.map(read_public_key).transpose()?;
    if let Some(owner) = Owner::find(dir)? {
        if trust.is_some() {
            return Err(miette!(
                "`--trust` needs the log stopped: its owner at `{}` checks only its own key",
                owner.socket.display()
            ));
        }
        if !archive_files.is_empty() {
            return Err(miette!(
                "`--archive` needs the log stopped: its owner at `{}` does not read archive files",
                owner.socket.display()
            ));
        }
        let given = key.is_some();
        return match owner.request(&Request::Verify { key }) {
            Ok((200, body)) => {
                let r: VerifyAnswer = serde_json::from_slice(&body)
                    .into_diagnostic()
                    .wrap_err("reading the owner's answer")?;
                Ok(print_verified(&r, given))
            }
            Ok((status, body)) => match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(ErrorBody {
                    error,
                    stored: Some(stored),
                    ..
                }) => {
                    eprintln!("verification FAILED ({stored} entries stored): {error}");
                    Ok(ExitCode::from(1))
                }
                _ => Err(owner_error(status, &body)),
            },
            Err(e) => Err(miette!(
                "asking the log's owner at `{}`: {e}",
                owner.socket.display()
            )),
        };
    }
    let mut archives = Vec::with_capacity(archive_files.len());
    for f in archive_files {
        let bytes = std::fs::read(f)
            .into_diagnostic()
            .wrap_err_with(|| format!("reading `{}`", f.display()))?;
        match Archive::decode(&bytes) {
            Ok(a) => archives.push(a),
            Err(e) => {
                eprintln!("verification FAILED: `{}`: {e}", f.display());
                return Ok(ExitCode::from(1));
            }
        }
    }
    let log = match AuditLog::open(dir) {
        Ok(log) => log,
        Err(e @ tianping_audit::StoreError::Storage(_)) => {
            // `sled` refuses a database whose checksums fail: that is a failed verification.
            eprintln!("verification FAILED: the store cannot be read: {e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            return Err(e)
                .into_diagnostic()
                .wrap_err_with(|| format!("opening the log `{}`", dir.display()));
        }
    };
    let stored = log.size();
    let mut progress = |done: u64, total: u64| {
        if total >= 100_000 {
            eprintln!("verified {done}/{total} entries");
        }
    };
    let verified = match &trust {
        Some((bundle, zone)) => {
            let check = trust::key_trust(bundle, zone.clone())?;
            if log.pinned_key().into_diagnostic()?.is_none() {
                eprintln!("verification FAILED: the log has no signed checkpoint to trust");
                return Ok(ExitCode::from(1));
            }
            log.verify_trusted(check.as_ref(), &archives, &mut progress)
        }
        None => log.verify_with_archives(key.as_ref(), &archives, &mut progress),
    };
    match verified {
        Ok(r) => Ok(print_verified(&VerifyAnswer::from(&r), key.is_some())),
        Err(e) => {
            eprintln!("verification FAILED ({stored} entries stored): {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Prints a successful verification and its warnings.
fn print_verified(r: &VerifyAnswer, key_given: bool) -> ExitCode {
    println!(
        "verified {} entries, root {}, {} checkpoints (signed up to {}{})",
        r.entries,
        to_hex(&r.root),
        r.checkpoints,
        r.signed_size,
        match &r.key {
            Some(k) => format!(", key {k}"),
            None => String::new(),
        }
    );
    if r.archived > 0 {
        println!(
            "{} entries verified in full, {} archived ({} recomputed from archive files)",
            r.entries.saturating_sub(r.archived),
            r.archived,
            r.archived_checked
        );
    }
    if r.archived > r.archived_checked {
        eprintln!(
            "warning: {} archived entries were checked by their leaf hashes only; pass `--archive FILE...` to recompute them",
            r.archived.saturating_sub(r.archived_checked)
        );
    }
    if r.signed_size < r.entries {
        eprintln!(
            "warning: {} entries after the last checkpoint are covered by no signature",
            r.entries.saturating_sub(r.signed_size)
        );
    }
    if !key_given && r.key.is_some() {
        eprintln!(
            "warning: checked with the key stored in the log; pass `--key` to check against a key you hold"
        );
    }
    ExitCode::SUCCESS
}

fn prove(
    dir: &Path,
    index: Option<u64>,
    size: Option<u64>,
    range: Option<(u64, u64)>,
) -> miette::Result<ExitCode> {
    if let Some(owner) = Owner::find(dir)? {
        let out = match (index, range) {
            (Some(index), None) => {
                let body = owner.get(&Request::ProveInclusion { index, size })?;
                let p: InclusionProof = serde_json::from_slice(&body).into_diagnostic()?;
                p.verify().into_diagnostic()?;
                serde_json::to_string(&p).into_diagnostic()?
            }
            (None, Some((from, to))) => {
                let body = owner.get(&Request::ProveConsistency { from, to })?;
                let p: ConsistencyProof = serde_json::from_slice(&body).into_diagnostic()?;
                p.verify().into_diagnostic()?;
                serde_json::to_string(&p).into_diagnostic()?
            }
            _ => return Err(miette!("give `--index N` or `--from M --to N`")),
        };
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    let log = open(dir)?;
    let out = match (index, range) {
        (Some(index), None) => {
            let p = log
                .prove_inclusion(index, size.unwrap_or_else(|| log.size()))
                .into_diagnostic()?;
            p.verify().into_diagnostic()?;
            serde_json::to_string(&p).into_diagnostic()?
        }
        (None, Some((from, to))) => {
            let p = log.prove_consistency(from, to).into_diagnostic()?;
            p.verify().into_diagnostic()?;
            serde_json::to_string(&p).into_diagnostic()?
        }
        _ => return Err(miette!("give `--index N` or `--from M --to N`")),
    };
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn print_records(
    records: impl Iterator<Item = Result<tianping_audit::Record, tianping_audit::StoreError>>,
) -> miette::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for r in records {
        let r = r.into_diagnostic()?;
        serde_json::to_writer(&mut out, &r).into_diagnostic()?;
        out.write_all(b"\n").into_diagnostic()?;
    }
    out.flush().into_diagnostic()?;
    Ok(ExitCode::SUCCESS)
}

fn mirror(dir: &Path, key: Option<&str>, files: &[PathBuf]) -> miette::Result<ExitCode> {
    let key = key.map(read_public_key).transpose()?;
    refuse_if_live(dir, "audit mirror")?;
    let made = !dir.exists();
    let log = AuditLog::open_mirror(dir, key.as_ref())
        .into_diagnostic()
        .wrap_err_with(|| format!("opening the mirror `{}`", dir.display()))?;
    let applied = mirror_files(&log, files);
    if applied.is_err() && made && log.size() == 0 {
        // a mirror made for batches that were all refused is not left behind
        drop(log);
        let _ = std::fs::remove_dir_all(dir);
    }
    applied
}

/// Applies each batch file to `log` in order, stopping at the first refused.
fn mirror_files(log: &AuditLog, files: &[PathBuf]) -> miette::Result<ExitCode> {
    for f in files {
        let file = std::fs::File::open(f)
            .into_diagnostic()
            .wrap_err_with(|| format!("reading `{}`", f.display()))?;
        let before = log.size();
        let cp = log
            .apply_batch_from(std::io::BufReader::new(file))
            .into_diagnostic()
            .wrap_err_with(|| {
                format!(
                    "`{}` refused; the mirror is unchanged ({before} entries)",
                    f.display()
                )
            })?;
        // a batch the mirror already holds whole is accepted and adds nothing
        let after = log.size();
        println!(
            "{}",
            serde_json::json!({
                "file": f.display().to_string(),
                "checkpoint_size": cp.checkpoint().size,
                "added": after - before,
                "mirror_size": after,
            })
        );
    }
    Ok(ExitCode::SUCCESS)
}
