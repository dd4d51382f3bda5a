//! The one-way link between two zones (DESIGN §6): signed bundles carried as UDP datagrams with
//! RaptorQ repair, paced, and reassembled on the far side, which never answers.
//!
//! Everything here but the sockets is I/O-free: bytes and a time in, bytes and events out.
//!
//! - bundles: a [`Manifest`], approvals and a chunk table in a signed [`BundleHeader`], then the
//!   payload; [`ChunkHasher`] builds the table in one pass, [`BundleReader`] checks the signature
//!   (asking a [`SignerTrust`] about the signer) and each chunk as bytes arrive;
//! - filters: a [`Filter`] per kind validates and rebuilds every payload on both sides,
//!   registered in [`Filters`] by the binary; a [`Refusal`] says what to fix;
//!   the declared kind is checked against what the bytes are ([`sniff`]), and a flow asking
//!   `scan` has them scanned by the node's [`Scanner`] (ClamAV's daemon, `Clamd`, feature
//!   `daemon`), failing closed;
//!   documents are rebuilt from an allow-list: [`PdfFilter`] (a new PDF from the pages, text,
//!   fonts and images, active content refused or dropped) and [`OfdFilter`] (a new OFD archive
//!   of canonical XML parts);
//! - receipts: a signed [`Receipt`] (transfer, content hash, service, time; delivery or read)
//!   that the receiving zone sends back on a reply flow, passed by the [`ReceiptFilter`];
//! - datagrams: [`Datagram`] (a RaptorQ symbol or a [`Heartbeat`] of the sender's counters), each
//!   with a check so flipped bits are dropped;
//! - the sending end: [`Sender`] cuts transfers into blocks, encodes them (RFC 6330, the
//!   `raptorq` crate) with the link's repair, and lets transfers take turns; [`Pacer`] holds it
//!   to the link's rate;
//! - the receiving end: [`Receiver`] decodes blocks in any order and reports each transfer once,
//!   complete or lost ([`LinkEvent`]); [`Assembler`] reads its transfers as bundles, so a
//!   transfer is complete only when its signature and every chunk hash checked ([`Arrival`]);
//! - with the `io` feature, `UdpSender` and `UdpReceiver`: the loops over real sockets;
//! - with the `daemon` feature, `Spool` (the sender's durable transfers, numbered per link,
//!   sent ones retained for a resend) and `Store` (the receiver's staged bundles, handed to a
//!   `Sink` once, complete; its record of ended ids bounded by `KEEP_ENDED`); the daemons' loops
//!   `run_sender` and `run_receiver` with their `SendStatus` / `ReceiveStatus` (the link
//!   counters on `/metrics`), and the control sockets' handlers `SenderControl` (status, a
//!   streamed submit, resend) and `ReceiverControl` (status).
//!
//! What is trusted: nothing on the wire. A datagram's check is a plain hash that keeps flipped
//! bits from the decoder; the bundle's signature, checked against the receiving zone's trust
//! (a [`SignerTrust`]; with the `daemon` feature, `ZoneTrust` over `tianping-certs`), is what authenticates a
//! transfer. The receiver bounds what forged datagrams can cost it (transfers and blocks open at
//! once, symbols per block), and reports every transfer once. Transfer ids on a link are
//! consecutive (the spool numbers them), which is how a heartbeat names a transfer that never
//! showed a symbol.
//!
//! ```
//! use tianping_core::UnixTime;
//! use tianping_crossdomain::{LinkConfig, LinkEvent, Receiver, ReceiverConfig, Sender};
//!
//! let mut sender = Sender::new(LinkConfig::new(7), 1)?;
//! sender.submit(1, Box::new(b"an order of the court".to_vec()))?;
//! let mut receiver = Receiver::new(ReceiverConfig::new(7), None);
//! let (mut datagram, mut events) = (Vec::new(), Vec::new());
//! while sender.next_datagram(&mut datagram)?.is_some() {
//!     receiver.receive(&datagram, UnixTime::from_secs(0), &mut events);
//! }
//! assert!(matches!(&events[..], [LinkEvent::Data { bytes, .. }, LinkEvent::Complete { .. }]
//!     if bytes == b"an order of the court"));
//! # Ok::<(), tianping_crossdomain::LinkError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod approval;
mod assemble;
mod bundle;
#[cfg(feature = "daemon")]
mod control;
#[cfg(feature = "daemon")]
mod daemon;
mod datagram;
#[cfg(feature = "daemon")]
mod deliver;
mod filter;
#[cfg(feature = "daemon")]
mod held;
mod inbound;
#[cfg(feature = "daemon")]
mod install;
#[doc(hidden)]
pub mod internal;
mod manifest;
mod outbound;
mod pacing;
#[cfg(feature = "daemon")]
mod rate;
mod receipt;
mod receiver;
#[cfg(feature = "daemon")]
mod record;
mod sender;
#[cfg(feature = "daemon")]
mod spool;
#[cfg(feature = "daemon")]
mod store;
#[cfg(feature = "daemon")]
mod trust;
#[cfg(feature = "io")]
mod udp;
mod update;

pub use approval::{
    APPROVAL_CONTEXT, ApprovalError, ApprovalStatement, Approving, count_approvals,
    manifest_transfer_id,
};
pub use assemble::{Arrival, Assembler};
pub use bundle::{
    BundleError, BundleHeader, BundleReader, ChunkHasher, MAX_APPROVAL, MAX_APPROVALS,
    MAX_CERTIFICATE, MAX_CHUNK, MAX_CHUNKS, MAX_HEADER, PinnedKeys, SIGNING_CONTEXT, SignerTrust,
    Verified, chunk_hash, table_hash,
};
#[cfg(feature = "daemon")]
pub use control::{
    BUNDLE_CHUNK, ReceiverControl, ResendHook, STATUS_PATH, SenderControl, SenderLink,
    SenderOutbound, content_type, percent_decode,
};
#[cfg(feature = "daemon")]
pub use daemon::{
    LinkEnd, RECENT_IDS, ReceiveDetail, ReceiveStatus, SendOptions, SendStatus, receive_into,
    run_receiver, run_receiver_reporting, run_sender, send_spooled,
};
pub use datagram::{
    Datagram, DatagramError, DatagramHeader, Heartbeat, MAX_BLOCK_SYMBOLS, MAX_TRANSFER, MIN_MTU,
    SYMBOL_ALIGN, SymbolHeader, symbol_size_for,
};
#[cfg(feature = "daemon")]
pub use deliver::{
    ATTEMPT_TIMEOUT, Counter, Deliver, Deliverer, Delivery, Failure, Install, Intake, KeptReceipt,
    MakeReceipt, NetDeliver, Queue, Queued, RETRY_FIRST, RETRY_MAX, ReceiptBook, ReceiverEvent,
    Report, Target, Zone, backoff, component_path, folder_name, hex, manifest_headers,
    manifest_json, percent, sha256, targets,
};
#[cfg(feature = "daemon")]
pub use filter::Clamd;
pub use filter::ReceiptFilter;
pub use filter::{Filter, FilterInput, Filtered, Filters, MemoryBound, Refusal, Step, StepState};
pub use filter::{
    ImageLimits, JpegFilter, JsonFilter, PngFilter, SchemaError, TextFilter, marking_check,
    normalize_marking,
};
pub use filter::{Mp4Filter, Mp4Limits};
pub use filter::{OfdFilter, OfdLimits, PdfFilter, PdfLimits};
pub use filter::{STREAM_PIECE, Scanner, Unchanged, UnchangedCheck, Verdict, sniff};
#[cfg(feature = "daemon")]
pub use held::Held;
pub use inbound::{Accepted, CountApprovals, Inbound, InboundRefusal, transfer_id};
#[cfg(feature = "daemon")]
pub use install::{Installer, Receipts, replace};
pub use manifest::{MAX_MANIFEST, Manifest, Submitter};
pub use outbound::{Decided, Outbound, OutboundRefusal, Outgoing, RateWindow, rate_admit, request};
pub use pacing::Pacer;
#[cfg(feature = "daemon")]
pub use rate::AdmitError;
pub use receipt::{
    MAX_RECEIPT, MAX_RECEIPT_CHAIN, RECEIPT_CONTEXT, Receipt, ReceiptKind, Receipting,
};
pub use receiver::{LinkEvent, LostReason, Receiver, ReceiverConfig, ReceiverStats};
#[cfg(feature = "daemon")]
pub use record::{KEEP_RECORDS, TransferRecord, TransferState};
pub use sender::{LinkConfig, LinkError, Sender, Sent, TransferSource};
#[cfg(feature = "daemon")]
pub use spool::{Retained, Spool, SpoolError, SpooledFile};
#[cfg(feature = "daemon")]
pub use store::{Ended, FolderSink, KEEP_ENDED, Sink, Store};
#[cfg(feature = "daemon")]
pub use trust::ZoneTrust;
#[cfg(feature = "io")]
pub use udp::{SendStats, Submission, UdpReceiver, UdpSender, bind_udp, recv_buffer};
pub use update::{
    check_crl_update, check_policy_update, check_trust_update, rebuild_crl, rebuild_policy_update,
    rebuild_trust_bundle,
};
