//! The OpenID Connect provider of a zone (DESIGN §5): its protocol core, free of I/O.
//!
//! Every function here takes bytes and a [`Clock`](tianping_core::Clock) reading and returns a
//! decision and bytes; sockets, files and the sled store come later behind the `server` and
//! `store` features. The pieces:
//!
//! - one error enum, [`IdpError`], each variant mapped to exactly one OAuth/OIDC `error` code
//!   ([`ErrorCode`]) and one HTTP status.
//!
//! ```
//! use tianping_idp::{ErrorCode, IdpError};
//!
//! let e = IdpError::MissingParameter("response_type");
//! assert_eq!(e.code(), ErrorCode::InvalidRequest);
//! assert_eq!(e.status(), 400);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;

pub use error::{ErrorCode, IdpError};
