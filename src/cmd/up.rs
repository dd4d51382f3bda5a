//! `tianping up`: every zone on this machine.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

/// Options of `tianping up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {}

pub(crate) fn run(data: &Path, _args: UpArgs) -> miette::Result<ExitCode> {
    super::init::run(data, super::init::InitArgs {})
}
