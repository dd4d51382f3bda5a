//! `tianping certs`.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

/// `tianping certs` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CertsCmd {
    /// Not built yet.
    Todo,
}

pub(crate) fn run(_data: &Path, cmd: CertsCmd) -> miette::Result<ExitCode> {
    match cmd {
        CertsCmd::Todo => Err(miette::miette!("`tianping certs` is not built yet")),
    }
}
