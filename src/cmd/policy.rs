//! `tianping policy`: check, test, explain, diff, graph and replay a policy file.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod publish;

use clap::{Args, Subcommand, ValueEnum};
use miette::{IntoDiagnostic, WrapErr, miette};
use tianping_core::{Acr, Clearance, CourtCode, Fabric, Role, SubjectId, UnixTime};
use tianping_policies::{
    Approval, Checked, DecisionInput, Policy, Subject, Submitter, TransferRequest, check, diff,
};

/// `tianping policy` subcommands.
#[derive(Debug, Subcommand)]
#[expect(clippy::large_enum_variant, reason = "parsed once per run")]
pub(crate) enum PolicyCmd {
    /// Put a policy in force in every zone (a `secadmin` of `private`, signed in with `tianping
    /// login`): checked, installed as the authority's and `private`'s copy, and sent as a
    /// `policy-update` transfer on every flow out of `private` that carries one.
    Publish {
        /// The policy file.
        file: PathBuf,
    },
    /// Verify a policy: errors and warnings with the offending text underlined; exit 0 when
    /// there is no error.
    Check {
        /// The policy file.
        file: PathBuf,
        /// Also check a `fabric.toml` against the policy: every service bound in its own zone,
        /// no binding of a service the policy does not declare.
        #[arg(long, value_name = "FILE")]
        fabric: Option<PathBuf>,
        /// The memory an exchange node gives its filters (`4GiB`, `512MiB`): a warning for each
        /// flow whose `max-size` lets through a payload of some kind that the kind's filter
        /// would need more memory than this to check and rebuild.
        #[arg(long, value_name = "SIZE", default_value = DEFAULT_FILTER_MEMORY, value_parser = size_arg)]
        filter_memory: u64,
    },
    /// Run the tests written beside the policy.
    Test {
        /// The policy file.
        file: PathBuf,
    },
    /// Decide one request or transfer and print `{"decision","rule","reason",...}`.
    Explain(ExplainArgs),
    /// What changed between two policies: routes, flows, zone-to-zone reachability.
    Diff {
        /// The policy in force.
        old: PathBuf,
        /// The candidate.
        new: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Draw the zones and flows (Graphviz).
    Graph {
        /// The policy file.
        file: PathBuf,
        /// `dot` text, or `svg` rendered by Graphviz's `dot` when it is installed.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Re-decide recorded inputs (JSON lines of `DecisionInput`) and list every flip.
    Replay {
        /// The policy file.
        file: PathBuf,
        /// The recorded inputs, one JSON object a line.
        #[arg(long, required_unless_present = "log", conflicts_with = "log")]
        inputs: Option<PathBuf>,
        /// An audit log folder: every recorded request and transfer decision in it, after the
        /// log verifies.
        #[arg(long)]
        log: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Output formats of `policy graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum GraphFormat {
    /// Graphviz source.
    Dot,
    /// SVG, rendered by `dot -Tsvg`.
    Svg,
}

/// `tianping policy explain`: a request (`--zone`, `--method`, `--path`) or a transfer
/// (`--flow`, `--kind`, `--size`).
#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// The policy file.
    file: PathBuf,
    /// The zone whose gateway receives the request.
    #[arg(long, conflicts_with = "flow", requires_all = ["method", "path"])]
    zone: Option<String>,
    /// The request's method.
    #[arg(long)]
    method: Option<String>,
    /// The request's normalized path.
    #[arg(long)]
    path: Option<String>,
    /// The flow of the transfer.
    #[arg(long, requires_all = ["kind", "size"])]
    flow: Option<String>,
    /// The subject's (or submitter's) roles.
    #[arg(long, value_delimiter = ',')]
    roles: Vec<Role>,
    /// The subject's court.
    #[arg(long)]
    court: Option<CourtCode>,
    /// The subject's authentication strength.
    #[arg(long, default_value = "pwd")]
    acr: Acr,
    /// The subject's clearance.
    #[arg(long, default_value = "none")]
    clearance: Clearance,
    /// The time of the request, `HH:MM` UTC (for time windows; default 12:00).
    #[arg(long)]
    at: Option<String>,
    /// The transfer's content kind.
    #[arg(long)]
    kind: Option<String>,
    /// For `json`, the schema name.
    #[arg(long)]
    schema: Option<String>,
    /// The transfer's size in bytes.
    #[arg(long)]
    size: Option<u64>,
    /// Labels on the content.
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// The content was redacted.
    #[arg(long)]
    redacted: bool,
    /// Roles of the approvers, one distinct approver each.
    #[arg(long, value_delimiter = ',')]
    approvals: Vec<Role>,
    /// The node itself submits (receipts, directory updates, audit batches).
    #[arg(long)]
    machine: bool,
}

/// The memory an exchange node gives its filters unless told otherwise: a quarter of a 16 GiB
/// node, so that the spool's and the store's caches and a second transfer filtered at the same
/// time still fit.
const DEFAULT_FILTER_MEMORY: &str = "4GiB";

fn size_arg(s: &str) -> Result<u64, String> {
    tianping_policies::parse_size(s)
        .ok_or_else(|| format!("`{s}` is not a size (`4GiB`, `512MiB`, `1000000`)"))
}

/// Adds `policy check`'s memory warnings: each kind's limit against the memory its filter
/// would hold for a payload that large. The filters' bounds are the same in every zone (they
/// depend on the filters' limits, not on the zone's installed state), so one zone's set says.
fn warn_memory(data: &Path, c: &mut Checked, budget: u64) -> miette::Result<()> {
    let zone: tianping_core::ZoneName = "private".parse().into_diagnostic()?;
    let filters = crate::filters::zone_filters(&tianping_core::DataDir::new(data), &zone)?;
    c.warn_memory(budget, |kind, size| filters.memory_for(kind, size));
    Ok(())
}

fn read(file: &Path) -> miette::Result<String> {
    std::fs::read_to_string(file)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read `{}`", file.display()))
}

fn checked(file: &Path) -> miette::Result<Checked> {
    let text = read(file)?;
    Ok(check(&file.display().to_string(), &text))
}

/// Checks `file`; prints its problems; the policy only when there is no error.
fn load(file: &Path) -> miette::Result<Policy> {
    let c = checked(file)?;
    if !c.is_ok() {
        eprint!("{}", c.render());
        return Err(miette!(
            "`{}` has {} error(s)",
            file.display(),
            c.errors().count()
        ));
    }
    c.into_policy()
        .ok_or_else(|| miette!("`{}` did not compile", file.display()))
}

/// The JSON Schemas of a policy's `json(NAME)` kinds are read beside it, from
/// `schemas/NAME.json` in the policy's folder (as `policies/default.tp` and `policies/schemas/`
/// ship): each named schema must be there, parse, and load as a JSON Schema that refers to
/// nothing outside itself. One message per problem.
fn schema_problems(file: &Path, p: &Policy) -> Vec<String> {
    let dir = file
        .parent()
        .map_or_else(|| PathBuf::from("schemas"), |d| d.join("schemas"));
    let mut named: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for f in p.flows() {
        for (_, schema) in f.kinds() {
            if let Some(s) = schema {
                named.entry(s).or_insert(f.name());
            }
        }
    }
    let mut out = Vec::new();
    for (name, flow) in named {
        let path = dir.join(format!("{name}.json"));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                out.push(format!(
                    "flow `{flow}` carries `json({name})`, but its schema `{}` cannot be read: {e}",
                    path.display()
                ));
                continue;
            }
        };
        let schema = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                out.push(format!("schema `{}` is not JSON: {e}", path.display()));
                continue;
            }
        };
        let one = std::collections::BTreeMap::from([(name.to_owned(), schema)]);
        if let Err(e) = tianping_crossdomain::JsonFilter::new(one) {
            out.push(format!("`{}`: {e}", path.display()));
        }
    }
    out
}

fn summary(c: &Checked) -> String {
    let e = c.errors().count();
    let w = c.warnings().count();
    format!("{e} error(s), {w} warning(s)")
}

pub(crate) fn run(data: &Path, cmd: PolicyCmd) -> miette::Result<ExitCode> {
    match cmd {
        PolicyCmd::Publish { file } => publish::publish(data, &file),
        PolicyCmd::Check {
            file,
            fabric,
            filter_memory,
        } => {
            let mut c = checked(&file)?;
            warn_memory(data, &mut c, filter_memory)?;
            eprint!("{}", c.render());
            if let (Some(fabric), Some(p)) = (fabric, c.policy()) {
                let fabric = Fabric::load(&fabric).map_err(miette::Report::new)?;
                let found = p.check_fabric(&fabric);
                for m in &found {
                    eprint!("{}", m.render());
                }
                if !found.is_empty() {
                    println!(
                        "{}: {}; {} binding mismatch(es) with the fabric",
                        file.display(),
                        summary(&c),
                        found.len()
                    );
                    return Ok(ExitCode::from(1));
                }
            }
            if let Some(p) = c.policy() {
                let problems = schema_problems(&file, p);
                for m in &problems {
                    eprintln!("error: {m}");
                }
                if !problems.is_empty() {
                    println!(
                        "{}: {}; {} schema problem(s)",
                        file.display(),
                        summary(&c),
                        problems.len()
                    );
                    return Ok(ExitCode::from(1));
                }
            }
            if c.is_ok() {
                let p = c
                    .policy()
                    .map(Policy::hash)
                    .map(|h| h.to_hex())
                    .unwrap_or_default();
                println!("{}: ok, {}; sha256 {p}", file.display(), summary(&c));
                Ok(ExitCode::SUCCESS)
            } else {
                println!("{}: {}", file.display(), summary(&c));
                Ok(ExitCode::from(1))
            }
        }
        PolicyCmd::Test { file } => {
            let c = checked(&file)?;
            let failed_checks: Vec<_> = c
                .errors()
                .filter(|e| !e.message.starts_with("test failed"))
                .collect();
            if !failed_checks.is_empty() || c.tests().is_empty() && !c.is_ok() {
                eprint!("{}", c.render());
                println!("{}: {}; tests not run", file.display(), summary(&c));
                return Ok(ExitCode::from(1));
            }
            let mut failed = 0;
            for t in c.tests() {
                if t.passed {
                    println!("ok    line {}: {}", t.line, t.text);
                } else {
                    failed += 1;
                    println!("FAIL  line {}: {}\n      got {}", t.line, t.text, t.got);
                }
            }
            let n = c.tests().len();
            println!("{} passed, {failed} failed, {n} total", n - failed);
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        PolicyCmd::Explain(a) => explain(a),
        PolicyCmd::Diff { old, new, json } => {
            let (o, n) = (load(&old)?, load(&new)?);
            let d = diff(&o, &n);
            if json {
                println!("{}", serde_json::to_string_pretty(&d).into_diagnostic()?);
            } else {
                print!("{d}");
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCmd::Graph { file, format } => {
            let p = load(&file)?;
            let dot = p.to_dot();
            match format {
                GraphFormat::Dot => print!("{dot}"),
                GraphFormat::Svg => print!("{}", render_svg(&dot)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCmd::Replay {
            file,
            inputs,
            log,
            json,
        } => {
            let list = match (inputs, log) {
                (Some(inputs), _) => inputs_from_file(&inputs)?,
                (None, Some(log)) => inputs_from_log(&log)?,
                (None, None) => return Err(miette!("give `--inputs FILE` or `--log DIR`")),
            };
            replay(&file, &list, json)
        }
    }
}

fn render_svg(dot: &str) -> miette::Result<String> {
    let child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(miette!(
                "Graphviz `dot` is not installed, so no svg can be drawn; use `--format dot` and render it elsewhere"
            ));
        }
        Err(e) => return Err(e).into_diagnostic().wrap_err("cannot run `dot`"),
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(dot.as_bytes()).into_diagnostic()?;
    }
    let out = child.wait_with_output().into_diagnostic()?;
    if !out.status.success() {
        return Err(miette!(
            "`dot -Tsvg` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).into_diagnostic()
}

fn explain(a: ExplainArgs) -> miette::Result<ExitCode> {
    let p = load(&a.file)?;
    let json = if let Some(zone) = &a.zone {
        let (Some(method), Some(path)) = (&a.method, &a.path) else {
            return Err(miette!("a request needs `--method` and `--path`"));
        };
        let minutes = match &a.at {
            None => 12 * 60,
            Some(t) => parse_hhmm(t).ok_or_else(|| miette!("`{t}` is not a time `HH:MM`"))?,
        };
        let subject = Subject {
            roles: a.roles.clone(),
            court: a.court.clone(),
            clearance: a.clearance,
            acr: a.acr,
        };
        p.decide_request(
            zone,
            &subject,
            method,
            path,
            UnixTime::from_secs(u64::from(minutes) * 60),
        )
        .to_json()
    } else if let Some(flow) = &a.flow {
        let (Some(kind), Some(size)) = (&a.kind, a.size) else {
            return Err(miette!("a transfer needs `--kind` and `--size`"));
        };
        let mut approvals = Vec::new();
        for (i, role) in a.approvals.iter().enumerate() {
            let by: SubjectId = format!("approver-{i}")
                .parse()
                .map_err(|e| miette!("{e}"))?;
            approvals.push(Approval { by, role: *role });
        }
        let t = TransferRequest {
            kind: kind.clone(),
            schema: a.schema.clone(),
            size,
            submitter: Submitter {
                id: "submitter".parse().ok(),
                roles: a.roles.clone(),
                machine: a.machine,
            },
            labels: a.labels.clone(),
            redacted: a.redacted,
            approvals,
        };
        p.decide_transfer(flow, &t).to_json()
    } else {
        return Err(miette!(
            "say what to decide: `--zone Z --method M --path P` or `--flow F --kind K --size BYTES`"
        ));
    };
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn inputs_from_file(inputs: &Path) -> miette::Result<Vec<DecisionInput>> {
    let text = read(inputs)?;
    let mut list = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let di: DecisionInput = serde_json::from_str(line).map_err(|e| {
            miette!(
                "`{}` line {}: not a decision input: {e}",
                inputs.display(),
                i + 1
            )
        })?;
        list.push(di);
    }
    Ok(list)
}

/// Every decision recorded in a stopped audit log, after the whole log verifies.
fn inputs_from_log(dir: &Path) -> miette::Result<Vec<DecisionInput>> {
    let log = tianping_audit::AuditLog::open(dir)
        .map_err(|e| miette!("cannot open the audit log `{}`: {e}", dir.display()))?;
    let report = log
        .verify(None, &mut |_, _| {})
        .map_err(|e| miette!("the audit log `{}` does not verify: {e}", dir.display()))?;
    let mut list = Vec::new();
    let mut skipped = 0u64;
    for record in log.entries(0) {
        let record = record.map_err(|e| miette!("cannot read `{}`: {e}", dir.display()))?;
        match crate::decision_log::decision_input(&record.event) {
            Some(Ok(di)) => list.push(di),
            Some(Err(e)) => {
                return Err(miette!(
                    "audit entry {} ({}) is not a replayable decision: {e}",
                    record.index,
                    record.event.action
                ));
            }
            None => skipped += 1,
        }
    }
    eprintln!(
        "audit log `{}`: {} entries verified (root {}), {} decisions to replay, {skipped} other events",
        dir.display(),
        report.entries,
        hex_root(&report.root),
        list.len()
    );
    Ok(list)
}

fn hex_root(root: &[u8]) -> String {
    root.iter().map(|b| format!("{b:02x}")).collect()
}

fn replay(file: &Path, list: &[DecisionInput], json: bool) -> miette::Result<ExitCode> {
    let p = load(file)?;
    let r = p.replay(list);
    if json {
        println!("{}", serde_json::to_string_pretty(&r).into_diagnostic()?);
    } else {
        for f in &r.flips {
            println!(
                "flip #{}: {}: was {}, now {} ({}{})",
                f.index,
                f.what,
                f.was,
                f.now,
                f.rule
                    .as_deref()
                    .map(|r| format!("rule `{r}`: "))
                    .unwrap_or_default(),
                f.reason
            );
        }
        println!(
            "{} input(s): {} same, {} flipped ({} allow->deny, {} deny->allow, {} retargeted); policy sha256 {}",
            r.total,
            r.same,
            r.flips.len(),
            r.allow_to_deny,
            r.deny_to_allow,
            r.retargeted,
            p.hash()
        );
    }
    Ok(ExitCode::SUCCESS)
}
