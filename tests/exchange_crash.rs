//! The link survives SIGKILL: sender and receiver run as processes and are killed at seeded
//! points during a batch (the receiver after a few transfers ended, then the sender, then both
//! at once), with more transfers spooled while the sender is down, and restarted each time.
//! Every transfer whose id `submit-raw` returned ends exactly once — delivered byte-identical
//! or reported lost — in the receiver's reports, its store and its delivered folder; nothing
//! is delivered twice, partly or corrupted. Kill points are seeded counts of what happened
//! (reports, payloads the sender finished, watched in the spool's folder): a transfer the
//! sender finished while no receiver ran is reported lost; what the killed sender had not sent
//! in full is resumed by the restarted one and, the receiver running, arrives; what is spooled
//! after the last restart arrives.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    reason = "tests fail loudly; sizes are small"
)]

#[path = "common/exchange.rs"]
mod exchange;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Instant;

use exchange::{
    Daemon, Report, Rng, Setup, deadline, delivered, parse_report, receiver, sender, setup,
    spool_bytes, store_ended, wait_files,
};
use tianping_core::{Component, Listener};
use tianping_crossdomain::Ended;

/// Every report of every receiver run, in order, and the payloads spooled by id (each
/// bundle's payload is text, which the receiving zone's filter passes unchanged).
struct Batch {
    rng: Rng,
    bundles: BTreeMap<u64, Vec<u8>>,
    reports: Vec<Report>,
    link: Option<u32>,
}

impl Batch {
    /// Spools `n` bundles of seeded sizes (the sender must be stopped); ids must follow on.
    fn spool(&mut self, s: &Setup, n: usize) -> Vec<u64> {
        let mut ids = Vec::new();
        for _ in 0..n {
            let seq = self.bundles.len() as u64 + 1;
            // one block is about 1.4 MB: most transfers fit one, some take several
            let size = match self.rng.between(0..=4) {
                0 => self.rng.between(1..=2_000),
                1 => self.rng.between(2_000..=200_000),
                2 | 3 => self.rng.between(200_000..=900_000),
                _ => self.rng.between(2_000_000..=6_000_000),
            } as usize;
            let payload = self.rng.text(size);
            let b = exchange::bundle(&s.dir, &s.link, seq, &payload);
            let id = spool_bytes(s, &format!("bundle-{seq}"), &b);
            assert_eq!(id, seq, "ids on a link follow on");
            self.bundles.insert(id, payload);
            ids.push(id);
        }
        ids
    }

    /// Reads `r`'s lines until `k` more reports of the link arrived (the lines of its intake
    /// and deliverer pass by).
    fn read(&mut self, r: &Daemon, k: usize, by: Instant) {
        let mut read = 0;
        while read < k {
            let line = r.line_by(by).expect("a report in time");
            assert!(!line.contains(" refused"), "{line}");
            let Some(rep) = parse_report(&line) else {
                continue;
            };
            self.link.get_or_insert(rep.link);
            self.reports.push(rep);
            read += 1;
        }
    }

    fn ids(&self) -> Vec<u64> {
        self.bundles.keys().copied().collect()
    }
}

/// The transfer ids whose payload files are in the spool's `payloads/` folder.
fn payloads(dir: &std::path::Path) -> BTreeSet<u64> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            name.split_once('-')?.1.parse().ok()
        })
        .collect()
}

#[test]
fn killed_and_restarted_daemons_end_every_spooled_transfer_once() {
    let s = setup("127.0.0.1:0");
    // slow enough that the kills land in the middle of the batch
    exchange::set_first_link_rate(&s.dir.fabric(), 20);
    let s = Setup {
        link: tianping_core::Fabric::load(&s.dir.fabric())
            .unwrap()
            .links()[0]
            .clone(),
        ..s
    };
    assert_eq!(s.link.rate_mbps, 20);
    let mut batch = Batch {
        rng: Rng::new(0x0063_7261_7368),
        bundles: BTreeMap::new(),
        reports: Vec::new(),
        link: None,
    };
    let by = deadline(240);
    batch.spool(&s, 14);

    // the receiver picks its port once; restarts keep it, so the running sender still reaches it
    let r = receiver(&s, &[], by);
    let published =
        tianping_core::published_addrs(&s.dir, &s.link.to, Component::ExchangeReceiver).unwrap();
    let addr: SocketAddr = published[&Listener::Link {
        from: s.link.from.clone(),
    }];
    exchange::set_link_addresses(&s.dir.fabric(), &addr.to_string());
    let snd = sender(&s, &[], by);

    // 1. SIGKILL the receiver after a seeded number of reports, restart it
    // and first let the sender finish a transfer into the void: that one must be reported lost
    let k = batch.rng.between(1..=3) as usize;
    batch.read(&r, k, by);
    r.kill();
    let link = batch.link.unwrap();
    let spool_dir = s
        .dir
        .component(&s.link.from, Component::ExchangeSender)
        .join("spool");
    let ended_before = store_ended(&s, link, &batch.ids());
    let waiting: BTreeSet<u64> = payloads(&spool_dir.join("payloads"))
        .into_iter()
        .filter(|id| ended_before[id].is_none())
        .collect();
    assert!(
        !waiting.is_empty(),
        "the sender sent the whole batch already"
    );
    let into_the_void = loop {
        let gone: Vec<u64> = waiting
            .difference(&payloads(&spool_dir.join("payloads")))
            .copied()
            .collect();
        if !gone.is_empty() {
            break gone;
        }
        assert!(Instant::now() < by, "the sender sends nothing");
        std::thread::yield_now();
    };
    let r = receiver(&s, &[], by);

    // 2. SIGKILL the sender once it sent a seeded number more in full; spool more while it is down; restart it. What
    // it had not sent in full is resumed, and with the receiver running throughout, arrives.
    let before_kill = payloads(&spool_dir.join("payloads"));
    let j = (batch.rng.between(1..=2) as usize).min(before_kill.len().saturating_sub(1));
    while before_kill
        .difference(&payloads(&spool_dir.join("payloads")))
        .count()
        < j
    {
        assert!(Instant::now() < by, "the sender sends nothing");
        std::thread::yield_now();
    }
    snd.kill();
    let resumed: Vec<u64> = tianping_crossdomain::Spool::open(&spool_dir)
        .unwrap()
        .pending(link)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| !batch.reports.iter().any(|r| r.transfer == *id))
        .collect();
    batch.spool(&s, 4);
    let snd = sender(&s, &[], by);

    // 3. SIGKILL both at once once the resumed transfers ended; spool more; restart both
    while !resumed
        .iter()
        .all(|id| batch.reports.iter().any(|r| r.transfer == *id))
    {
        batch.read(&r, 1, by);
    }
    for id in &resumed {
        let rep = batch.reports.iter().find(|r| r.transfer == *id).unwrap();
        assert_eq!(rep.how, Ended::Delivered, "resumed transfer {id}");
    }
    r.kill();
    snd.kill();
    let last = batch.spool(&s, 3);
    let ids = batch.ids();
    let before = store_ended(&s, link, &ids);
    let r = receiver(&s, &[], by);
    let snd = sender(&s, &[], by);

    // every id ends: in the store before this run, or reported by it
    let mut open: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| before[id].is_none())
        .collect();
    while !open.is_empty() {
        let line = r.line_by(by).unwrap_or_else(|| {
            panic!(
                "transfers {open:?} never ended; reports so far {:?}",
                batch.reports
            )
        });
        assert!(!line.contains(" refused"), "{line}");
        let Some(rep) = parse_report(&line) else {
            continue;
        };
        open.retain(|id| *id != rep.transfer);
        batch.reports.push(rep);
    }
    // every transfer the link delivered, in this run or before, reaches its service folder
    let files: Vec<_> = ids
        .iter()
        .filter(|id| {
            before[*id] == Some(Ended::Delivered)
                || batch
                    .reports
                    .iter()
                    .any(|r| r.transfer == **id && r.how == Ended::Delivered)
        })
        .map(|id| delivered(&s, *id))
        .collect();
    wait_files(&r, &files, by, |line| {
        assert!(!line.contains(" refused"), "{line}");
    });
    r.kill();
    snd.kill();

    // never reported twice, never both ways
    let mut reported: BTreeMap<u64, Ended> = BTreeMap::new();
    for rep in &batch.reports {
        assert_eq!(rep.link, link);
        assert!(
            batch.bundles.contains_key(&rep.transfer),
            "a transfer nobody spooled: {rep:?}"
        );
        let old = reported.insert(rep.transfer, rep.how);
        assert!(old.is_none(), "transfer {} reported twice", rep.transfer);
    }
    // the store, the folder and the reports agree; delivered means byte-identical
    let after = store_ended(&s, link, &ids);
    let mut lost = Vec::new();
    for (id, b) in &batch.bundles {
        let file = delivered(&s, *id);
        match after[id] {
            Some(Ended::Delivered) => {
                let got = std::fs::read(&file).unwrap();
                assert!(got == *b, "transfer {id} delivered corrupted");
            }
            Some(Ended::Lost) => {
                assert!(!file.exists(), "transfer {id} lost and delivered");
                lost.push(*id);
            }
            other => panic!("transfer {id} ended as {other:?}"),
        }
        if let Some(how) = reported.get(id) {
            assert_eq!(Some(*how), after[id], "transfer {id}");
        }
    }
    let delivered_files = std::fs::read_dir(exchange::delivered_dir(&s))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "text")
        })
        .count();
    assert_eq!(delivered_files, ids.len() - lost.len());
    // what the sender sent in full while no receiver ran is lost
    for id in &into_the_void {
        assert_eq!(after[id], Some(Ended::Lost), "transfer {id}");
    }
    // what was spooled after the last restart, with both running, all arrived
    for id in &last {
        assert_eq!(after[id], Some(Ended::Delivered), "transfer {id}");
    }
    eprintln!(
        "{} transfers: {} delivered, lost {lost:?} (sent while no receiver ran {into_the_void:?}); resumed after the sender's kill {resumed:?}",
        ids.len(),
        ids.len() - lost.len()
    );
}
