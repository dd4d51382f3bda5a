//! `tianping init`: creates the data folder (DESIGN §9).

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

/// Options of `tianping init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {}

pub(crate) fn run(_data: &Path, _args: InitArgs) -> miette::Result<ExitCode> {
    Err(miette::miette!("`tianping init` is not built yet"))
}
