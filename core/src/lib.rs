//! The shared vocabulary of Tianping (DESIGN §8): every crate speaks these types.
//!
//! - identities: [`SubjectId`], [`CourtCode`] (with "within" on the dotted hierarchy), [`Role`],
//!   [`Acr`], [`Amr`], [`Clearance`], [`ZoneName`]; each parses strictly and refuses anything
//!   outside the grammar;
//! - time: the [`Clock`] trait, with [`SystemClock`] and a [`ManualClock`] that tests move by hand;
//! - signatures: the [`Signer`] trait and [`PublicKey`] / [`Signature`] values that always carry
//!   their [`Algorithm`] id, with a `ring` implementation ([`RingSigner`]);
//! - secrets: [`Secret`] (zeroized on drop, `Debug` prints `[redacted]`) and [`ct_eq`];
//! - the installation's `fabric.toml` ([`Fabric`]), loaded strictly with the line of any error;
//! - one checked binary codec ([`WireReader`], [`WireWriter`]) that every binary format is
//!   written with;
//! - what a decision carries into the audit log: [`PolicyHash`] and [`Verdict`].
//!
//! ```
//! use tianping_core::{CourtCode, Role, SubjectId};
//!
//! let court: CourtCode = "bj.01.03".parse()?;
//! assert!(court.is_within(&"bj".parse()?));
//! let judge: Role = "judge".parse()?;
//! assert_eq!(judge.as_str(), "judge");
//! assert!("Alice".parse::<SubjectId>().is_err());
//! # Ok::<(), tianping_core::IdError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod clock;
mod fabric;
mod ids;
#[doc(hidden)]
pub mod internal;
mod secret;
mod sign;
mod verdict;
mod wire;

pub use clock::{Clock, ManualClock, SystemClock, UnixTime};
pub use fabric::{
    Component, DataDir, Fabric, FabricError, Link, ServiceBinding, ServiceTarget, ZoneListeners,
};
pub use ids::{Acr, Amr, Clearance, CourtCode, DEFAULT_ZONES, IdError, Role, SubjectId, ZoneName};
pub use secret::{Secret, ct_eq};
pub use sign::{Algorithm, PublicKey, RingSigner, SignError, Signature, Signer, VerifyError};
pub use verdict::{PolicyHash, Verdict, VerdictError};
pub use wire::{WireError, WireReader, WireWriter, len16_size, len32_size};
