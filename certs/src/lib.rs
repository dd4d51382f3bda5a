//! tianping-certs: see the crate description; its issue builds it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
