//! Audit log throughput, each beside raw SHA-256 over the same bytes in the same run:
//!
//! - `audit_append`: durable appends (each call returns once its events are flushed) from many
//!   concurrent writers, one event per call and batches per call; and queued appends (each
//!   call returns at once with its index; a commit within 20 ms makes it durable) from 64
//!   writers, one event per call, timed until every event is durable;
//! - `audit_verify`: recomputing a stored log (every leaf and node hash, decoding every event,
//!   checking every checkpoint).
//!
//! `cd bench && cargo bench --bench audit`
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "a benchmark fails loudly on a broken set-up; its sizes fit in memory"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tianping_audit::{AuditLog, Event};
use tianping_core::{Algorithm, RingSigner, UnixTime};

fn event(i: u64) -> Event {
    let mut e = Event::new(UnixTime::from_millis(1_764_000_000_000 + i), "request");
    e.node = "n1".into();
    e.zone = "private".into();
    e.component = "gateway".into();
    e.actor = format!("u-{}", i % 1000);
    e.source = "10.1.2.3:50312".into();
    e.object = format!("/cases/{i}");
    e.outcome = "allow".into();
    e.request_id = format!("req-{i}");
    e.policy_hash = "9f2c".repeat(16).parse().ok();
    e.method = "GET".into();
    e.path = "/cases".into();
    e.roles = vec!["judge".into()];
    e.court = "bj.01.03".into();
    e.acr = "cert".into();
    e
}

/// An event whose every variable field differs from its neighbours' (hex digests), so that the
/// store's LZ4 packing finds little to share: the worst case for it.
fn varied_event(i: u64) -> Event {
    let hex = |tag: &str| {
        ring::digest::digest(&ring::digest::SHA256, format!("{tag}{i}").as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let mut e = event(i);
    e.actor = format!("u-{}", &hex("actor")[..12]);
    e.source = format!(
        "10.{}.{}.{}:{}",
        i % 251,
        i % 241,
        i % 239,
        1024 + i % 60_000
    );
    e.object = format!("/cases/{}", &hex("object")[..24]);
    e.request_id = hex("request")[..32].to_owned();
    e.policy_hash = hex("policy").parse().ok();
    e
}

fn sha256_all(bytes: &[Vec<u8>]) -> u8 {
    let mut x = 0u8;
    for b in bytes {
        x ^= ring::digest::digest(&ring::digest::SHA256, b).as_ref()[0];
    }
    x
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit_append");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    const PER_ITER: u64 = 32_768;
    g.throughput(Throughput::Elements(PER_ITER));
    let encoded: Vec<Vec<u8>> = (0..PER_ITER).map(|i| event(i).encode()).collect();
    g.bench_function("raw_sha256_same_bytes", |b| {
        b.iter(|| std::hint::black_box(sha256_all(&encoded)))
    });
    // Encoding included: what a caller pays from an `Event` to a digest.
    g.bench_function("raw_encode_and_sha256", |b| {
        b.iter(|| {
            let mut x = 0u8;
            for i in 0..PER_ITER {
                let bytes = event(i).encode();
                x ^= ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()[0];
            }
            std::hint::black_box(x)
        })
    });

    for (writers, per_call, varied) in [
        (64u64, 1u64, false),
        (8, 1024, false),
        (2, 4096, false),
        (8, 1024, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AuditLog::create(dir.path(), "bench.localhost/audit").unwrap());
        let make = if varied { varied_event } else { event };
        let events: Arc<Vec<Event>> = Arc::new((0..PER_ITER).map(make).collect());
        if varied {
            let encoded: Vec<Vec<u8>> = events.iter().map(Event::encode).collect();
            g.bench_function("raw_sha256_same_bytes_varied", |b| {
                b.iter(|| std::hint::black_box(sha256_all(&encoded)))
            });
        }
        let (work, name) = if varied {
            (
                PER_ITER,
                format!("durable_{writers}_writers_{per_call}_events_per_call_varied"),
            )
        } else if per_call == 1 {
            // One event per call: 64 writers, 2,048 events each would take minutes per sample
            // at one flush per group, so this case appends fewer events per iteration.
            (
                4_096u64,
                format!("durable_{writers}_writers_1_event_per_call"),
            )
        } else {
            (
                PER_ITER,
                format!("durable_{writers}_writers_{per_call}_events_per_call"),
            )
        };
        g.throughput(Throughput::Elements(work));
        g.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let handles: Vec<_> = (0..writers)
                        .map(|w| {
                            let log = log.clone();
                            let events = events.clone();
                            std::thread::spawn(move || {
                                let share = work / writers;
                                let mine =
                                    &events[(w * share) as usize..((w + 1) * share) as usize];
                                for chunk in mine.chunks(per_call as usize) {
                                    if per_call == 1 {
                                        log.append(&chunk[0]).unwrap();
                                    } else {
                                        log.append_many(chunk).unwrap();
                                    }
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.join().unwrap();
                    }
                    total += start.elapsed();
                }
                total
            })
        });
        let event_bytes: usize = events.iter().map(|e| e.encode().len()).sum();
        eprintln!(
            "{name}: {} entries, {} bytes of events each, {} bytes on disk each (sled files)",
            log.size(),
            event_bytes / events.len(),
            folder_bytes(dir.path()) / log.size().max(1)
        );
        g.throughput(Throughput::Elements(PER_ITER));
    }
    queued(&mut g, PER_ITER);
    g.finish();
}

/// Queued appends, 64 writers × 1 event per call, beside the durable case above: each writer
/// queues its share, then waits until its last event is durable (commits are in order, so all
/// of its events are), so the time counts every event made durable.
fn queued(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, work: u64) {
    let writers = 64u64;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::create(dir.path(), "bench.localhost/audit").unwrap());
    let events: Arc<Vec<Event>> = Arc::new((0..work).map(event).collect());
    g.throughput(Throughput::Elements(work));
    g.bench_function("queued_64_writers_1_event_per_call", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let handles: Vec<_> = (0..writers)
                    .map(|w| {
                        let log = log.clone();
                        let events = events.clone();
                        std::thread::spawn(move || {
                            let share = work / writers;
                            let mine = &events[(w * share) as usize..((w + 1) * share) as usize];
                            let mut last = None;
                            for e in mine {
                                last = Some(log.append_queued(e).unwrap());
                            }
                            last.unwrap().wait().unwrap();
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().unwrap();
                }
                total += start.elapsed();
            }
            total
        })
    });
    eprintln!("queued_64_writers_1_event_per_call: {} entries", log.size());
}

fn folder_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                folder_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

fn verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit_verify");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    const N: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::create(dir.path(), "bench.localhost/audit").unwrap();
    let (signer, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
    let events: Vec<Event> = (0..N).map(event).collect();
    for chunk in events.chunks(10_000) {
        log.append_many(chunk).unwrap();
        log.checkpoint(&signer).unwrap();
    }
    let encoded: Vec<Vec<u8>> = events.iter().map(Event::encode).collect();
    let bytes: usize = encoded.iter().map(Vec::len).sum();
    eprintln!(
        "audit_verify: {N} entries, {bytes} bytes of events, {} bytes on average",
        bytes as u64 / N
    );
    g.throughput(Throughput::Elements(N));
    g.bench_function("raw_sha256_same_bytes", |b| {
        b.iter(|| std::hint::black_box(sha256_all(&encoded)))
    });
    g.bench_function("verify_log", |b| {
        b.iter(|| {
            let r = log.verify(None, &mut |_, _| {}).unwrap();
            assert_eq!(r.entries, N);
            r
        })
    });
    g.finish();
}

criterion_group!(benches, append, verify);
criterion_main!(benches);
