//! The table of open connections, per client address and in total, that the connection limits
//! are checked against.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The open connections of one or more listeners, per client address and in total, checked
/// against [`crate::Limits::max_connections_per_addr`] and [`crate::Limits::max_connections`] at
/// each accept.
///
/// Each listener counts its own (TCP and QUIC together) unless [`crate::ServerOptions::connections`]
/// gives it a table: listeners given the same table share the limits. Give one table to every
/// runtime's listener of a port bound with [`crate::ServerOptions::reuse_port`], or each runtime would
/// let a client address hold the per-address limit once per runtime.
#[derive(Debug, Default)]
pub struct ConnectionTable {
    open: Mutex<Open>,
}

/// The open connections: per address, and their sum (kept, not summed per accept, so an accept
/// costs the same with one client address or a hundred thousand).
#[derive(Debug, Default)]
struct Open {
    per_addr: HashMap<IpAddr, usize>,
    total: usize,
}

pub(crate) struct ConnSlot {
    counter: Arc<ConnectionTable>,
    ip: IpAddr,
}

impl ConnectionTable {
    /// An empty table, to share between listeners.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        per_addr: usize,
        total: usize,
    ) -> Option<ConnSlot> {
        let mut g = self.open.lock().ok()?;
        if g.total >= total {
            return None;
        }
        let n = g.per_addr.entry(ip).or_insert(0);
        if *n >= per_addr {
            if *n == 0 {
                g.per_addr.remove(&ip);
            }
            return None;
        }
        *n += 1;
        g.total += 1;
        Some(ConnSlot {
            counter: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if let Ok(mut g) = self.counter.open.lock() {
            if let Some(n) = g.per_addr.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    g.per_addr.remove(&self.ip);
                }
                g.total = g.total.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slots_count_per_address_and_in_total() {
        let c = Arc::new(ConnectionTable::default());
        let (a, b): (IpAddr, IpAddr) = ([127, 0, 0, 1].into(), [127, 0, 0, 2].into());
        let a1 = c.acquire(a, 2, 3).unwrap();
        let a2 = c.acquire(a, 2, 3).unwrap();
        assert!(c.acquire(a, 2, 3).is_none(), "per-address limit");
        let b1 = c.acquire(b, 2, 3).unwrap();
        assert!(c.acquire(b, 2, 3).is_none(), "total limit");
        drop(a1);
        let b2 = c.acquire(b, 2, 3).unwrap();
        drop((a2, b1, b2));
        let open = c.open.lock().unwrap();
        assert_eq!((open.total, open.per_addr.len()), (0, 0));
        drop(open);
        // A refused address leaves no entry behind.
        assert!(c.acquire(a, 0, 3).is_none());
        assert!(c.open.lock().unwrap().per_addr.is_empty());
    }
}
