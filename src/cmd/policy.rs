//! `tianping policy`.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

/// `tianping policy` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCmd {
    /// Not built yet.
    Todo,
}

pub(crate) fn run(_data: &Path, cmd: PolicyCmd) -> miette::Result<ExitCode> {
    match cmd {
        PolicyCmd::Todo => Err(miette::miette!("`tianping policy` is not built yet")),
    }
}
