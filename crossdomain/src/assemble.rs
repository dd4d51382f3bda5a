//! The receiving end for bundles: a [`Receiver`] whose transfers are read as bundles as their
//! blocks arrive, so a transfer ends as [`Arrival::Complete`] only when every block decoded, the
//! signature and signer were checked, and every chunk matched its hash.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tianping_core::UnixTime;

use crate::{
    BundleError, BundleHeader, BundleReader, LinkEvent, LostReason, Receiver, SignerTrust, Verified,
};

/// What the receiving end hands on. A consumer writes `Chunk`s to a staging file and hands the
/// transfer on at `Complete`; `Lost` and `Refused` mean the staged bytes are dropped.
#[derive(Debug)]
pub enum Arrival {
    /// A transfer's header, its signature and signer checked.
    Header {
        /// The transfer.
        transfer: u64,
        /// The header.
        header: Box<BundleHeader>,
    },
    /// The next chunk of a transfer's payload, its hash checked.
    Chunk {
        /// The transfer.
        transfer: u64,
        /// The chunk's position, from 0.
        index: u64,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// Every byte arrived and was checked.
    Complete {
        /// The transfer.
        transfer: u64,
        /// Its header.
        header: Box<BundleHeader>,
    },
    /// The transfer can no longer complete.
    Lost {
        /// The transfer.
        transfer: u64,
        /// Why.
        reason: LostReason,
    },
    /// The transfers `from..to`, never seen, are lost.
    LostRange {
        /// The first id.
        from: u64,
        /// One past the last id.
        to: u64,
    },
    /// The transfer arrived but is not a good bundle (bad signature, untrusted signer, a chunk
    /// that does not match); it is never handed on.
    Refused {
        /// The transfer.
        transfer: u64,
        /// Why.
        error: BundleError,
    },
    /// The sender restarted.
    Restarted {
        /// The epoch before.
        previous: u64,
        /// The new epoch.
        epoch: u64,
    },
    /// Nothing arrived since `since`.
    Silent {
        /// When the last datagram arrived.
        since: UnixTime,
    },
}

/// Reassembles transfers and reads them as bundles (I/O-free).
#[derive(Debug)]
pub struct Assembler {
    receiver: Receiver,
    trust: Arc<dyn SignerTrust>,
    readers: BTreeMap<u64, BundleReader>,
    /// Transfers refused before their last block: their later data is dropped.
    refused: BTreeSet<u64>,
    link_events: Vec<LinkEvent>,
}

impl Assembler {
    /// Reads the transfers of `receiver` as bundles whose signers `trust` decides on.
    pub fn new(receiver: Receiver, trust: Arc<dyn SignerTrust>) -> Self {
        Self {
            receiver,
            trust,
            readers: BTreeMap::new(),
            refused: BTreeSet::new(),
            link_events: Vec::new(),
        }
    }

    /// The link's receiving end (counters, floor).
    pub fn receiver(&self) -> &Receiver {
        &self.receiver
    }

    /// Takes one datagram that arrived at `now`.
    pub fn receive(&mut self, datagram: &[u8], now: UnixTime, out: &mut Vec<Arrival>) {
        let mut events = std::mem::take(&mut self.link_events);
        self.receiver.receive(datagram, now, &mut events);
        self.handle(&mut events, now, out);
        self.link_events = events;
    }

    /// Reports lost transfers and silence; call it on a timer.
    pub fn poll(&mut self, now: UnixTime, out: &mut Vec<Arrival>) {
        let mut events = std::mem::take(&mut self.link_events);
        self.receiver.poll(now, &mut events);
        self.handle(&mut events, now, out);
        self.link_events = events;
    }

    fn handle(&mut self, events: &mut Vec<LinkEvent>, now: UnixTime, out: &mut Vec<Arrival>) {
        for e in events.drain(..) {
            match e {
                LinkEvent::Data {
                    transfer, bytes, ..
                } => self.data(transfer, &bytes, now, out),
                LinkEvent::Complete { transfer, .. } => self.complete(transfer, out),
                LinkEvent::Lost { transfer, reason } => {
                    self.readers.remove(&transfer);
                    if !self.refused.remove(&transfer) {
                        out.push(Arrival::Lost { transfer, reason });
                    }
                }
                LinkEvent::LostRange { from, to } => out.push(Arrival::LostRange { from, to }),
                LinkEvent::Restarted { previous, epoch } => {
                    out.push(Arrival::Restarted { previous, epoch });
                }
                LinkEvent::Silent { since } => out.push(Arrival::Silent { since }),
            }
        }
    }

    fn data(&mut self, transfer: u64, bytes: &[u8], now: UnixTime, out: &mut Vec<Arrival>) {
        if self.refused.contains(&transfer) {
            return;
        }
        let trust = &self.trust;
        let reader = self
            .readers
            .entry(transfer)
            .or_insert_with(|| BundleReader::new(Arc::clone(trust), now));
        let pushed = reader.push(bytes, &mut |v| {
            out.push(match v {
                Verified::Header(h) => Arrival::Header {
                    transfer,
                    header: Box::new(h.clone()),
                },
                Verified::Chunk { index, bytes } => Arrival::Chunk {
                    transfer,
                    index,
                    bytes: bytes.to_vec(),
                },
            });
            Ok(())
        });
        if let Err(error) = pushed {
            self.readers.remove(&transfer);
            self.refused.insert(transfer);
            out.push(Arrival::Refused { transfer, error });
        }
    }

    fn complete(&mut self, transfer: u64, out: &mut Vec<Arrival>) {
        if self.refused.remove(&transfer) {
            return;
        }
        let Some(reader) = self.readers.remove(&transfer) else {
            return;
        };
        out.push(match reader.finish() {
            Ok(header) => Arrival::Complete {
                transfer,
                header: Box::new(header),
            },
            Err(error) => Arrival::Refused { transfer, error },
        });
    }
}
