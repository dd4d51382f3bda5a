//! Time of the verifier (`check()` alone: parse, compile, lints, expects and tests) on generated
//! policies, from the decision benchmark's 10 zones / 1,000 routes / 200 flows up to the target
//! of 50 zones / 10,000 routes / 2,000 flows (under 0.5 s).
//!
//! `cd bench && cargo bench --bench verifier`
#![expect(
    clippy::indexing_slicing,
    reason = "a benchmark fails loudly on a broken set-up"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use tianping_bench::generated_policy;
use tianping_policies::check;

/// (zones, routes, flows) of each generated policy.
const SIZES: [(usize, usize, usize); 5] = [
    (10, 1_000, 200),
    (10, 10_000, 200),
    (2, 10_000, 200),
    (2, 20_000, 200),
    (50, 10_000, 2_000),
];

fn name((z, r, f): (usize, usize, usize)) -> String {
    format!("{z}-zones-{r}-routes-{f}-flows")
}

fn sources() -> Vec<((usize, usize, usize), String)> {
    SIZES
        .iter()
        .map(|&(z, r, f)| {
            let src = generated_policy(z, r, f);
            let c = check("gen.tp", &src);
            assert!(c.is_ok(), "{}", c.render());
            ((z, r, f), src)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("verifier");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    for (size, src) in sources() {
        g.bench_function(name(size), |b| {
            b.iter(|| black_box(check("gen.tp", black_box(&src))));
        });
    }
    g.finish();
}

/// The fastest and the median of seven whole checks of each policy, printed as a table.
fn summary() {
    println!("\nsummary (one thread; seconds per check(), min / median of 7)");
    println!(
        "{:<8} {:>8} {:>8} {:>10} {:>10}",
        "zones", "routes", "flows", "min", "median"
    );
    for ((z, r, f), src) in sources() {
        let mut times: Vec<f64> = (0..7)
            .map(|_| {
                let t = Instant::now();
                black_box(check("gen.tp", black_box(&src)));
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!("{z:<8} {r:>8} {f:>8} {:>10.4} {:>10.4}", times[0], times[3]);
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if !std::env::args().any(|a| a == "--test") {
        summary();
    }
}
