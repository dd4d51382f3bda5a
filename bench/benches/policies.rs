//! Benchmarks of `policies`, written by its issue.
fn main() {}
