//! The receipts a zone is delivered (`receipt` transfers to its `receipt-store`, which the
//! receiver serves itself), kept by the receipt transfer's id and by correlation id (the id of
//! the transfer it receipts), and served on the receiver's control socket.

use std::path::Path;

use serde_json::{Value, json};

use super::{Delivery, Failure, hex};
use crate::SpoolError;

/// A receipt as kept: what its transfer said, and its signed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptReceipt {
    /// The receipt transfer's own id.
    pub receipt: String,
    /// The correlation id: the id of the transfer it receipts.
    pub correlation: String,
}

/// The receipts a receiver keeps, in their own `sled` database.
#[derive(Debug, Clone)]
pub struct ReceiptBook {
    db: sled::Db,
    by_id: sled::Tree,
    by_correlation: sled::Tree,
}

impl ReceiptBook {
    /// Opens (or creates) the book in `dir`.
    pub fn open(dir: &Path) -> Result<Self, SpoolError> {
        let db = crate::spool::open_db(dir)?;
        Ok(Self {
            by_id: db.open_tree("receipts")?,
            by_correlation: db.open_tree("by_correlation")?,
            db,
        })
    }

    /// Keeps the receipt `d` carries (a no-op for one kept before); refused for good when it
    /// names no correlation id.
    pub fn keep(&self, d: &Delivery<'_>) -> Result<KeptReceipt, Failure> {
        let m = &d.header.manifest;
        let correlation = m
            .correlation
            .clone()
            .ok_or_else(|| Failure::Refuse("a receipt that names no correlation id".to_owned()))?;
        let receipt = d.queued.transfer_id.clone();
        let entry = json!({
            "receipt": receipt,
            "transfer": correlation,
            "correlation": correlation,
            "flow": m.flow,
            "from": m.source.as_str(),
            "time_ms": m.time.as_millis(),
            "sha256": hex(&d.sha256),
            "bytes": hex(d.payload),
        });
        let io = |e: sled::Error| Failure::Retry(e.to_string());
        self.by_id
            .insert(receipt.as_bytes(), entry.to_string().as_bytes())
            .map_err(io)?;
        self.by_correlation
            .insert(correlation_key(&correlation, &receipt), &[])
            .map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(KeptReceipt {
            receipt,
            correlation,
        })
    }

    /// The receipts of transfer `id`: the receipt transfer itself, or those receipting it.
    pub fn by_transfer(&self, id: &str) -> Result<Vec<Value>, SpoolError> {
        let mut out = self.by_correlation(id)?;
        if let Some(v) = self.by_id.get(id.as_bytes())? {
            let v: Value = serde_json::from_slice(&v).unwrap_or_default();
            if !out.contains(&v) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The receipts whose correlation id is `id`, oldest receipt id first.
    pub fn by_correlation(&self, id: &str) -> Result<Vec<Value>, SpoolError> {
        let mut prefix = id.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.by_correlation.scan_prefix(&prefix) {
            let (key, _) = item?;
            let receipt = key.get(prefix.len()..).unwrap_or_default();
            if let Some(v) = self.by_id.get(receipt)? {
                out.push(serde_json::from_slice(&v).unwrap_or_default());
            }
        }
        Ok(out)
    }
}

fn correlation_key(correlation: &str, receipt: &str) -> Vec<u8> {
    let mut k = correlation.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(receipt.as_bytes());
    k
}
