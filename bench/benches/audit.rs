//! Benchmarks of `audit`, written by its issue.
fn main() {}
