//! Tianping's zone gateway.
//!
//! Every request to a zone's services passes here: a session cookie, a bearer token or a client
//! certificate becomes one identity, the zone's policy decides on the normalized path, and an
//! allowed request is forwarded with a signed `Tianping-Assertion` in place of whatever identity
//! headers the client sent.
#![deny(missing_docs)]
