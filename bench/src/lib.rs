//! Shared helpers for the benchmarks: a policy generator and the translation of a policy into
//! Cedar, built only on `tianping-policies`' public API.

mod cedar;
mod gen_policy;

pub use cedar::{cedar_policies, cedar_request_context, cedar_transfer_context};
pub use gen_policy::{Rng, STAFF, generated_policy};
