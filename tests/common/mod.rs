//! What the command-line tests share.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs the `tianping` binary with `args`, `stdin` on its standard input; its whole output.
pub(crate) fn tianping(args: &[&str], stdin: &str) -> Output {
    tianping_bytes(args, stdin.as_bytes())
}

/// [`tianping`] with raw bytes (not UTF-8, say) on its standard input.
pub(crate) fn tianping_bytes(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tianping"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}
