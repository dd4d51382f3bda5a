//! The shared vocabulary of Tianping (DESIGN §8): every crate speaks these types.
//!
//! - identities: [`SubjectId`], [`CourtCode`] (with "within" on the dotted hierarchy), [`Role`],
//!   [`Acr`], [`Amr`], [`Clearance`], [`ZoneName`]; each parses strictly and refuses anything
//!   outside the grammar;
//! - time: the [`Clock`] trait, with [`SystemClock`] and a [`ManualClock`] that tests move by hand;
//! - signatures: the [`Signer`] trait and [`PublicKey`] / [`Signature`] values that always carry
//!   their [`Algorithm`] id, with a `ring` implementation ([`RingSigner`]);
//! - secrets: [`Secret`] (zeroized on drop, `Debug` prints `[redacted]`) and [`ct_eq`];
//! - files: PEM text ([`pem_encode`], [`pem_blocks`]), private-key files read into a [`Secret`]
//!   and written at mode 0600 ([`read_private_key`], [`write_private_key`]), and files written
//!   whole or not at all ([`write_atomic`]);
//! - the installation: its components ([`Component`]), the data folder's layout ([`DataDir`]),
//!   its `fabric.toml` ([`Fabric`]: zones, links and their datagram settings, service bindings),
//!   loaded strictly with a diagnostic pointing at any error ([`FabricError`]), and the
//!   addresses listeners bound when their port is 0 ([`publish_addr`], [`listener_addr`]);
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

mod addr;
mod clock;
mod component;
mod data_dir;
mod fabric;
mod files;
mod ids;
#[doc(hidden)]
pub mod internal;
mod pem;
mod secret;
mod sign;
mod verdict;
mod wire;

pub use addr::{
    AddrError, Listener, clear_published_addrs, listener_addr, publish_addr, published_addrs,
    rebind_addr,
};
pub use clock::{Clock, ManualClock, SystemClock, UnixTime};
pub use component::{Component, UnknownComponent};
pub use data_dir::DataDir;
pub use fabric::{
    AUDIT_STORE_ZONE, DATAGRAM_HEADER, DEFAULT_BLOCK_SYMBOLS, DEFAULT_MTU, DEFAULT_REPAIR_PERCENT,
    Fabric, FabricError, FabricProblem, IP_UDP_HEADER, Link, MAX_BLOCK_SIZE, MAX_BLOCK_SYMBOLS,
    MAX_MTU, MAX_REPAIR_PERCENT, MIN_BLOCK_SYMBOLS, MIN_MTU, MIN_SYMBOL_SIZE, RATE_MBPS,
    SYMBOL_ALIGNMENT, ServiceBinding, ServiceTarget, ZoneListeners, block_size_range,
    default_binding, default_block_size, symbol_size,
};
pub use fabric::{DEFAULT_RETAIN, EXPLICIT_LINK_IDS, MAX_RETAIN, derived_link_id, parse_retain};
pub use files::{Existing, FileError, FileMode, write_atomic, write_private_file};
pub use ids::{Acr, Amr, Clearance, CourtCode, DEFAULT_ZONES, IdError, Role, SubjectId, ZoneName};
pub use pem::{
    PRIVATE_KEY_LABEL, PemBlock, PemError, pem_blocks, pem_encode, private_key_from_pem, read_pem,
    read_private_key, write_private_key,
};
pub use secret::{Secret, ct_eq};
pub use sign::{Algorithm, PublicKey, RingSigner, SignError, Signature, Signer, VerifyError};
pub use verdict::{PolicyHash, Verdict, VerdictError};
pub use wire::{WireError, WireReader, WireWriter, len16_size, len32_size};
