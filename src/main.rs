//! `tianping`: the command line of the court network security fabric.
//!
//! The binary is thin: each command parses its arguments and calls the crates (DESIGN §4).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod assertion;
mod audit_api;
mod audit_status;
mod cmd;
mod decision_log;
mod filters;
mod install_filters;
mod login_tokens;
mod ship;

/// Tianping: one identity, hardened gateways and audited one-way exchange for the court's networks.
#[derive(Debug, Parser)]
#[command(name = "tianping", version, about, propagate_version = true)]
struct Cli {
    /// The data folder of the installation.
    #[arg(
        long,
        global = true,
        default_value = "./tianping-data",
        env = "TIANPING_DATA"
    )]
    data: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every zone on this machine (creates the data folder on first run).
    Up(cmd::up::UpArgs),
    /// What runs on this machine: each component's health, each link's counters, the audit store.
    Status(cmd::status::StatusArgs),
    /// Create the data folder: fabric.toml, PKI, every component's certificate, the default policy.
    Init(cmd::init::InitArgs),
    /// The court PKI: CAs, certificates, revocation, inspection.
    #[command(subcommand)]
    Certs(cmd::certs::CertsCmd),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCmd),
    /// The policy language: check, test, explain, diff, graph, replay.
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCmd),
    /// The one-way link: its sending and receiving daemons.
    #[command(subcommand)]
    Exchange(cmd::exchange::ExchangeCmd),
    /// The zone's identity provider: its store, keys, directory and daemon.
    #[command(subcommand)]
    Idp(cmd::idp::IdpCmd),
    /// The zone's gateway: sign-in, the policy's decisions, forwarding with an assertion.
    Gateway(cmd::gateway::GatewayArgs),
    /// Sign in to a zone's IdP and keep a short-lived administrator's token for the CLI.
    Login(cmd::login::LoginArgs),
    /// Revoke and delete the administrator's token of a zone.
    Logout(cmd::login::LogoutArgs),
    /// A sample case service of the policy (for `up --demo`): deliveries in, a reader's pages out.
    Service(cmd::service::ServiceArgs),
    /// The court scenario, step by step, against a running `tianping up --demo`.
    Demo(cmd::demo::DemoArgs),
}

/// Set by `tianping up` on each component it starts: up's process id. A component started so
/// ends with `up` (SIGTERM from the kernel when up's process goes, however it goes, SIGKILL
/// included), so a killed `up` leaves no orphaned fabric behind; one whose `up` had already
/// gone before it could ask for that stops at once.
pub(crate) const SUPERVISOR_ENV: &str = "TIANPING_SUPERVISOR";

/// Asks for SIGTERM when the supervising `up` goes (see [`SUPERVISOR_ENV`]); false when that
/// `up` is already gone.
fn follow_supervisor() -> bool {
    let Some(pid) = std::env::var(SUPERVISOR_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return true;
    };
    if let Err(e) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
    {
        eprintln!("cannot ask to stop with the supervising up: {e}");
    }
    // asked after the request, so an up that went before it is seen here
    rustix::process::Pid::as_raw(rustix::process::getppid()) == pid
}

/// Whether `command` prints what a person reads or pipes on (`| head`), and runs nothing that
/// must be stopped in order: a closed pipe may end it at once.
fn prints_for_a_reader(command: &Command) -> bool {
    match command {
        Command::Policy(_) | Command::Status(_) | Command::Certs(_) => true,
        Command::Audit(c) => !matches!(c, cmd::audit::AuditCmd::Store { .. }),
        _ => false,
    }
}

/// A reader that stops reading (`tianping policy test p.tp | head -1`) ends the command as a
/// closed pipe ends `cat`: quietly, exit status 141 (128 + SIGPIPE). Rust ignores SIGPIPE, so
/// `println!` panicked ("failed printing to stdout: Broken pipe") with exit status 101.
fn quiet_on_a_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !follow_supervisor() {
        eprintln!("the supervising `tianping up` is gone: not starting");
        return ExitCode::from(1);
    }
    // the data folder as an absolute path, so that every path under it is one too: what a
    // component records for others to reach (its control socket, the audit log's owner) and
    // what `up` hands its children and clamd must not depend on a working directory (the
    // default, `./tianping-data`, is relative)
    let data = match std::path::absolute(&cli.data) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("the data folder `{}`: {e}", cli.data.display());
            return ExitCode::from(2);
        }
    };
    if prints_for_a_reader(&cli.command) {
        quiet_on_a_closed_pipe();
    }
    let is_up = matches!(cli.command, Command::Up(_));
    if let Err(report) = cmd::demo::apply_clock_offset(&data, is_up) {
        eprintln!("{report:?}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Up(args) => cmd::up::run(&data, args),
        Command::Status(args) => cmd::status::run(&data, args),
        Command::Init(args) => cmd::init::run(&data, args),
        Command::Certs(c) => cmd::certs::run(&data, c),
        Command::Audit(c) => cmd::audit::run(&data, c),
        Command::Policy(c) => cmd::policy::run(&data, c),
        Command::Exchange(c) => cmd::exchange::run(&data, c),
        Command::Idp(c) => cmd::idp::run(&data, c),
        Command::Gateway(a) => cmd::gateway::run(&data, a),
        Command::Login(a) => cmd::login::login(&data, a),
        Command::Logout(a) => cmd::login::logout(&data, a),
        Command::Service(a) => cmd::service::run(&data, a),
        Command::Demo(a) => cmd::demo::run(&data, a),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(2)
        }
    }
}
