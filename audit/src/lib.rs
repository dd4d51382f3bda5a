//! Tianping's tamper-evident audit log (DESIGN §7).
//!
//! - [`Event`]: one audited decision, with one canonical, versioned encoding (the Merkle leaf)
//!   and a JSON form for the command line;
//! - Merkle functions free of I/O: RFC 9162 hashing ([`leaf_hash`], [`root_of`]),
//!   inclusion and consistency proofs and their verification ([`verify_inclusion`],
//!   [`verify_consistency`]) that any party can use without the log's key;
//! - [`Checkpoint`] / [`SignedCheckpoint`]: C2SP `tlog-checkpoint` bodies in `signed-note`
//!   envelopes, signed through [`tianping_core::Signer`];
//! - [`AuditBatch`]: the `audit-batch` shipping format, checked against a mirror's tree;
//! - with the `store` feature, [`AuditLog`]: the `sled` store with group commit, checkpoints,
//!   search, export, proofs, verification, shipping and mirrors, queued appends ([`Queued`]);
//!   and [`handle_request`]: the read API a live log's owner serves on its control socket to
//!   the callers allowed it ([`Reader`]), and the `owner.sock` record naming it
//!   ([`record_owner`], [`owner_socket`]).
//!
//! ```
//! use tianping_audit::{Checkpoint, Event, SignedCheckpoint, leaf_hash, root_of, inclusion_proof, verify_inclusion};
//! use tianping_core::{Algorithm, RingSigner, Signer, UnixTime};
//!
//! let events: Vec<Event> = (0..5)
//!     .map(|i| Event::new(UnixTime::from_millis(i), "sign-in"))
//!     .collect();
//! let leaves: Vec<_> = events.iter().map(|e| leaf_hash(&e.encode())).collect();
//! let root = root_of(&leaves);
//! let proof = inclusion_proof(&leaves, 3, 5)?;
//! verify_inclusion(&leaves[3], 3, 5, &proof, &root)?;
//!
//! let (signer, _pkcs8) = RingSigner::generate(Algorithm::Ed25519).unwrap();
//! let cp = Checkpoint { origin: "tianping.localhost/audit/n1".into(), size: 5, root };
//! let note = cp.sign(&signer).unwrap();
//! let checked = SignedCheckpoint::verify(note.note(), &signer.public_key()).unwrap();
//! assert_eq!(checked.checkpoint().root, root);
//! # Ok::<(), tianping_audit::ProofError>(())
//! ```
//!
//! # Threat model
//!
//! Verification needs no secret: whoever holds the log's public key checks every signed
//! checkpoint and recomputes every root. An attacker who can write the store can change entries
//! after the last signed checkpoint and can delete checkpoints with the entries they cover;
//! checkpoints shipped to a mirror (or held by the verifier) catch both.
//!
//! A queued append ([`AuditLog::append_queued`]) is in the log's order at once but durable only
//! once its group commits (within the queue window, 20 ms by default): a crash loses the
//! queued events not yet committed, never part of a record, and the log still verifies. Use it
//! only where an effect may precede its record (DESIGN §2 rule 6), and [`Queued::wait`] where
//! it may not. Async code whose effect must follow the record (a token, a sign-in) uses
//! [`AuditLog::append_prompt`], committed at once, and awaits [`Queued::durable`].
//!
//! Through the owner's control socket ([`handle_request`]) audit data goes to the `auditor`
//! role only and the ship endpoint to the zone's log shipper only; each person's read is
//! recorded as an `audit.read` event before it is answered.
//!
//! # Retention
//!
//! Nothing in this crate deletes entries. [`AuditLog::archive`] moves whole leading records
//! whose every entry is older than a cutoff (never newer than now minus a [`Retention`] of at
//! least [`MIN_RETENTION_DAYS`], unless [`danger::short_retention`] says otherwise) into an
//! [`Archive`] file that verifies on its own against a signed checkpoint of exactly the archived
//! prefix. The live log keeps their leaf hashes, so roots, checkpoints and proofs of retained
//! entries still verify; [`AuditLog::verify_with_archives`] recomputes the archived leaves from
//! the files. Each archive appends an `audit.archive` event naming the range and the file's
//! SHA-256. An attacker who can write the store could replace retained records by their leaf
//! hashes as if archived: `verify` reports the archived count, and the `audit.archive` events
//! and the archive files show what was archived legitimately.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod archive;
mod batch;
mod checkpoint;
mod event;
mod hexhash;
#[doc(hidden)]
pub mod internal;
mod keys;
mod merkle;
mod query;
mod reconcile;
mod record;
mod service;
#[cfg(feature = "store")]
mod store;

pub use archive::{Archive, CheckedArchive, MIN_RETENTION_DAYS, Retention, RetentionError, danger};
pub use batch::{AuditBatch, BatchError, BatchHead, BatchReader};
pub use checkpoint::{
    Checkpoint, CheckpointError, MAX_NOTE_BYTES, SignedCheckpoint, key_id, key_name,
};
pub use event::{EVENT_VERSION, Event, EventError, MAX_EVENT_BYTES};
pub use keys::{KeyFileError, pkcs8_to_pem, signer_from_pem};
pub use merkle::{
    Frontier, Hash, ProofError, consistency_proof, empty_root, inclusion_proof, leaf_hash,
    node_hash, root_of, subtree_root, verify_consistency, verify_inclusion,
};
pub use query::{ConsistencyProof, InclusionProof, Query, Receipt, Record};
pub use reconcile::{Reconcile, Reconciliation, TransferLine, TransferState};
#[cfg(feature = "store")]
pub use service::{
    Access, OWNER_FILE, OwnerRecord, Reader, StatusAnswer, VerifyAnswer, clear_owner,
    handle as handle_request, owner_record, owner_socket, record_owner, record_owner_under,
};
pub use service::{
    DEFAULT_SEARCH_LIMIT, ErrorBody, MAX_SEARCH_LIMIT, Request as ServiceRequest, ServiceResponse,
};
#[cfg(feature = "store")]
pub use store::{
    ArchiveReport, AuditLog, Durable, Entries, KeyTrust, PreparedArchive, Queued, StoreError,
    VerifyReport,
};
