//! Reading entries in order.

use super::{AuditLog, StoreError, index_of, key_of};
use crate::event::Event;
use crate::query::{Query, Record};
use crate::record;

impl AuditLog {
    /// Reads entries in order from index `from`, with their stored leaf hashes.
    pub fn entries(&self, from: u64) -> Entries {
        // Start at the group that holds `from`.
        let start = self
            .batches
            .range(..=key_of(from))
            .next_back()
            .and_then(Result::ok)
            .and_then(|(k, _)| index_of(&k))
            .unwrap_or(0);
        Entries {
            iter: self.batches.range(key_of(start)..),
            buffered: Vec::new().into_iter(),
            from,
            next: start,
            failed: false,
        }
    }

    /// The entry at `index`.
    pub fn get(&self, index: u64) -> Result<Option<Record>, StoreError> {
        match self.entries(index).next() {
            Some(Ok(r)) if r.index == index => Ok(Some(r)),
            Some(Err(e)) => Err(e),
            _ => Ok(None),
        }
    }

    /// The entries matching `query`, in order.
    pub fn search<'a>(
        &'a self,
        query: &'a Query,
    ) -> impl Iterator<Item = Result<Record, StoreError>> + 'a {
        self.entries(0)
            .filter(move |r| r.as_ref().map_or(true, |r| query.matches(&r.event)))
    }
}

/// Entries of a log in order (see [`AuditLog::entries`]).
pub struct Entries {
    iter: sled::Iter,
    buffered: std::vec::IntoIter<Result<Record, StoreError>>,
    from: u64,
    next: u64,
    failed: bool,
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries").field("next", &self.next).finish()
    }
}

impl Iterator for Entries {
    type Item = Result<Record, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            match self.buffered.next() {
                Some(Ok(r)) if r.index < self.from => continue,
                Some(Ok(r)) => return Some(Ok(r)),
                Some(Err(e)) => {
                    self.failed = true;
                    return Some(Err(e));
                }
                None => {}
            }
            let (k, v) = match self.iter.next()? {
                Ok(kv) => kv,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e.into()));
                }
            };
            let at = self.next;
            let damaged = |reason: String| StoreError::Damaged { index: at, reason };
            if index_of(&k) != Some(at) {
                self.failed = true;
                return Some(Err(damaged("entries are missing or out of order".into())));
            }
            let opened = match record::open(&v, true) {
                Ok(r) if r.is_archived() => {
                    // Archived: only leaf hashes are left here.
                    self.next = at + r.len() as u64;
                    continue;
                }
                Ok(r) => r,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(damaged(e.into())));
                }
            };
            let parsed = match opened.entries() {
                Ok(p) => p,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(damaged(e.into())));
                }
            };
            let mut out = Vec::with_capacity(parsed.len());
            for (i, (leaf, bytes)) in parsed.into_iter().enumerate() {
                let index = at + i as u64;
                match Event::decode(bytes) {
                    Ok(event) => out.push(Ok(Record { index, leaf, event })),
                    Err(e) => {
                        // Yield what decoded, then the error.
                        out.push(Err(StoreError::Damaged {
                            index,
                            reason: e.to_string(),
                        }));
                        break;
                    }
                }
            }
            self.next = at + out.len() as u64;
            self.buffered = out.into_iter();
        }
    }
}
