//! `tianping audit`.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

/// `tianping audit` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCmd {
    /// Not built yet.
    Todo,
}

pub(crate) fn run(_data: &Path, cmd: AuditCmd) -> miette::Result<ExitCode> {
    match cmd {
        AuditCmd::Todo => Err(miette::miette!("`tianping audit` is not built yet")),
    }
}
