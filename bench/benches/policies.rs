//! Decisions per second of the policy engine beside the same decisions written as Cedar policies
//! and evaluated by `cedar-policy` in the same run.
//!
//! Two policies: the default five-zone policy, and a generated one with 1,000 routes and 200
//! flows. Each batch holds 1,000 prebuilt inputs (a mix of allows and denies); Cedar gets its
//! requests prebuilt too (contexts parsed before timing), so only evaluation is timed on both
//! sides. Before timing, both engines must agree on every input's allow/deny.
//!
//! `cd bench && cargo bench --bench policies`
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a benchmark fails loudly on a broken set-up"
)]

use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, Instant};

use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet, Request};
use criterion::{Criterion, Throughput, criterion_group};
use tianping_bench::{
    Rng, STAFF, cedar_policies, cedar_request_context, cedar_transfer_context, generated_policy,
};
use tianping_core::{Acr, Clearance, Role, SubjectId, UnixTime};
use tianping_policies::{
    Approval, DEFAULT_POLICY, Policy, Subject, Submitter, TransferRequest, check,
};

const COURTS: [&str; 6] = ["bj", "bj.01", "bj.01.03", "sh", "sh.02", "gd.03.05"];
const ZONES: usize = 10;

struct Req {
    zone: String,
    method: String,
    path: String,
    subject: Subject,
    at: UnixTime,
}

fn subject(rng: &mut Rng) -> Subject {
    let n = 1 + rng.below(2);
    let mut roles: Vec<Role> = (0..n).map(|_| *rng.pick(&STAFF)).collect();
    if rng.below(10) == 0 {
        roles.push(Role::Lawyer);
    }
    Subject {
        roles,
        court: Some(rng.pick(&COURTS).parse().unwrap()),
        clearance: [Clearance::None, Clearance::Secret][rng.below(2)],
        acr: [Acr::Pwd, Acr::Otp, Acr::Cert][rng.below(3)],
    }
}

fn default_requests(rng: &mut Rng, n: usize) -> Vec<Req> {
    let shapes: [(&str, &str, &str); 14] = [
        ("internet", "POST", "/filings"),
        ("internet", "GET", "/judgments/2024/1"),
        ("internet", "GET", "/receipts/77"),
        ("internet", "POST", "/service/9/read"),
        ("private", "GET", "/courts/{c}/cases/42"),
        ("private", "PUT", "/courts/{c}/cases/42/notes"),
        ("private", "POST", "/judgments"),
        ("private", "POST", "/enforcement/inquiries"),
        ("private", "GET", "/audit/2024/01"),
        ("private", "GET", "/nothing/here"),
        ("mobile", "GET", "/courts/{c}/cases/7"),
        ("mobile", "POST", "/uploads/abc"),
        ("classified", "GET", "/cases/1"),
        ("external", "POST", "/answers"),
    ];
    (0..n)
        .map(|_| {
            let (zone, method, path) = *rng.pick(&shapes);
            let mut subject = subject(rng);
            if zone == "internet" {
                subject.roles = vec![*rng.pick(&[Role::Lawyer, Role::Litigant, Role::Public])];
            }
            if zone == "external" {
                subject.roles = vec![Role::Partner];
            }
            Req {
                zone: zone.into(),
                method: method.into(),
                path: path.replace("{c}", rng.pick::<&str>(&COURTS)),
                subject,
                at: UnixTime::from_secs(rng.below(86_400) as u64),
            }
        })
        .collect()
}

fn generated_requests(rng: &mut Rng, n: usize) -> Vec<Req> {
    (0..n)
        .map(|_| {
            let r = rng.below(1000);
            let court = rng.pick(&COURTS);
            let path = match (r % 4, rng.below(8)) {
                (_, 0) => format!("/app{r}/unknown/x/y"),
                (0, _) => format!("/app{r}/items/{}", rng.below(100)),
                (1, _) => format!("/app{r}/{court}/cases/{}", rng.below(100)),
                (2, _) => format!("/app{r}/reports"),
                _ => format!("/app{r}/{court}/files/a/b"),
            };
            Req {
                zone: format!(
                    "z{}",
                    if rng.below(10) == 0 {
                        rng.below(ZONES)
                    } else {
                        r % ZONES
                    }
                ),
                method: ["GET", "HEAD", "POST", "PUT", "PATCH"][rng.below(5)].into(),
                path,
                subject: subject(rng),
                at: UnixTime::from_secs(rng.below(86_400) as u64),
            }
        })
        .collect()
}

fn transfers(rng: &mut Rng, p: &Policy, n: usize) -> Vec<(String, TransferRequest)> {
    let flows: Vec<String> = p.flows().map(|f| f.name().to_owned()).collect();
    (0..n)
        .map(|i| {
            let flow = rng.pick(&flows).clone();
            let info = p.flow(&flow).unwrap();
            let (kind, schema) = info.kinds().nth(rng.below(info.kinds().count())).unwrap();
            let approvers: Vec<Role> = info.approver_roles().collect();
            let approvals = (0..rng.below(3))
                .filter(|_| !approvers.is_empty())
                .map(|k| Approval {
                    by: SubjectId::from_str(&format!("approver-{k}")).unwrap(),
                    role: *rng.pick(&approvers),
                })
                .collect();
            let machine = rng.below(4) == 0;
            (
                flow,
                TransferRequest {
                    kind: if i % 13 == 0 {
                        "mp4".into()
                    } else {
                        kind.as_str().into()
                    },
                    schema: schema.map(str::to_owned),
                    size: rng.next() % (info.max_size() + info.max_size() / 8 + 1),
                    submitter: Submitter {
                        id: Some("submitter-1".parse().unwrap()),
                        roles: if machine {
                            Vec::new()
                        } else {
                            vec![*rng.pick(&STAFF)]
                        },
                        machine,
                    },
                    labels: if rng.below(6) == 0 {
                        vec!["secret".into()]
                    } else {
                        Vec::new()
                    },
                    redacted: rng.below(2) == 0,
                    approvals,
                },
            )
        })
        .collect()
}

struct Case {
    name: &'static str,
    policy: Policy,
    cedar: PolicySet,
    requests: Vec<Req>,
    cedar_requests: Vec<Request>,
    transfers: Vec<(String, TransferRequest)>,
    cedar_transfers: Vec<Request>,
}

fn uid(s: &str) -> EntityUid {
    EntityUid::from_str(s).unwrap()
}

fn build(name: &'static str, src: &str, requests: Vec<Req>, n_transfers: usize, seed: u64) -> Case {
    let checked = check(name, src);
    assert!(checked.is_ok(), "{}", checked.render());
    let policy = checked.into_policy().unwrap();
    let cedar_text = cedar_policies(&policy);
    let cedar = PolicySet::from_str(&cedar_text).unwrap_or_else(|e| panic!("cedar: {e:?}"));
    let cedar_requests = requests
        .iter()
        .map(|r| {
            let ctx = cedar_request_context(&r.zone, &r.subject, &r.path, r.at);
            Request::new(
                uid("User::\"u\""),
                uid(&format!("Action::\"{}\"", r.method)),
                uid("Resource::\"r\""),
                Context::from_json_value(ctx, None).unwrap(),
                None,
            )
            .unwrap()
        })
        .collect();
    let mut rng = Rng(seed);
    let transfers = transfers(&mut rng, &policy, n_transfers);
    let cedar_transfers = transfers
        .iter()
        .map(|(f, t)| {
            Request::new(
                uid("User::\"u\""),
                uid("Action::\"transfer\""),
                uid("Resource::\"r\""),
                Context::from_json_value(cedar_transfer_context(&policy, f, t), None).unwrap(),
                None,
            )
            .unwrap()
        })
        .collect();
    let case = Case {
        name,
        policy,
        cedar,
        requests,
        cedar_requests,
        transfers,
        cedar_transfers,
    };
    agree(&case);
    case
}

/// Both engines give the same allow/deny on every input, and the batch holds both outcomes.
fn agree(c: &Case) {
    let auth = Authorizer::new();
    let entities = Entities::empty();
    let mut allows = 0;
    for (r, cr) in c.requests.iter().zip(&c.cedar_requests) {
        let ours = c
            .policy
            .decide_request(&r.zone, &r.subject, &r.method, &r.path, r.at)
            .is_allow();
        let theirs =
            auth.is_authorized(cr, &c.cedar, &entities).decision() == cedar_policy::Decision::Allow;
        assert_eq!(
            ours, theirs,
            "{}: {} {} {} {:?}",
            c.name, r.zone, r.method, r.path, r.subject
        );
        allows += usize::from(ours);
    }
    assert!(
        allows > 0 && allows < c.requests.len(),
        "{}: {allows} allows",
        c.name
    );
    let mut allows = 0;
    for ((f, t), cr) in c.transfers.iter().zip(&c.cedar_transfers) {
        let ours = c.policy.decide_transfer(f, t).is_allow();
        let theirs =
            auth.is_authorized(cr, &c.cedar, &entities).decision() == cedar_policy::Decision::Allow;
        assert_eq!(ours, theirs, "{}: transfer {f} {t:?}", c.name);
        allows += usize::from(ours);
    }
    assert!(
        allows > 0 && allows < c.transfers.len(),
        "{}: {allows} transfer allows",
        c.name
    );
}

fn cases() -> Vec<Case> {
    let mut rng = Rng(42);
    let default_reqs = default_requests(&mut rng, 1000);
    let gen_src = generated_policy(ZONES, 1000, 200);
    let gen_reqs = generated_requests(&mut rng, 1000);
    vec![
        build("default", DEFAULT_POLICY, default_reqs, 1000, 7),
        build(
            "generated-1000-routes-200-flows",
            &gen_src,
            gen_reqs,
            1000,
            9,
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let auth = Authorizer::new();
    let entities = Entities::empty();
    for case in cases() {
        let mut g = c.benchmark_group(case.name);
        g.sample_size(10);
        g.warm_up_time(Duration::from_secs(1));
        g.measurement_time(Duration::from_secs(3));
        g.throughput(Throughput::Elements(case.requests.len() as u64));
        g.bench_function("requests/tianping", |b| {
            b.iter(|| {
                for r in &case.requests {
                    black_box(
                        case.policy
                            .decide_request(&r.zone, &r.subject, &r.method, &r.path, r.at),
                    );
                }
            })
        });
        g.bench_function("requests/cedar", |b| {
            b.iter(|| {
                for r in &case.cedar_requests {
                    black_box(auth.is_authorized(r, &case.cedar, &entities));
                }
            })
        });
        g.throughput(Throughput::Elements(case.transfers.len() as u64));
        g.bench_function("transfers/tianping", |b| {
            b.iter(|| {
                for (f, t) in &case.transfers {
                    black_box(case.policy.decide_transfer(f, t));
                }
            })
        });
        g.bench_function("transfers/cedar", |b| {
            b.iter(|| {
                for r in &case.cedar_transfers {
                    black_box(auth.is_authorized(r, &case.cedar, &entities));
                }
            })
        });
        g.finish();
    }
}

/// Decisions per second over `min` of wall time, one thread.
fn rate(min: Duration, mut f: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < min {
        n += f();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// A plain summary after criterion's figures: decisions/s on one core and the ratio to Cedar.
fn summary() {
    let auth = Authorizer::new();
    let entities = Entities::empty();
    println!("\nsummary (one thread; decisions per second)");
    println!(
        "{:<34} {:>10} {:>14} {:>12} {:>8}",
        "policy", "inputs", "tianping", "cedar", "ratio"
    );
    for case in cases() {
        let t = Duration::from_secs(2);
        let ours = rate(t, || {
            for r in &case.requests {
                black_box(
                    case.policy
                        .decide_request(&r.zone, &r.subject, &r.method, &r.path, r.at),
                );
            }
            case.requests.len()
        });
        let theirs = rate(t, || {
            for r in &case.cedar_requests {
                black_box(auth.is_authorized(r, &case.cedar, &entities));
            }
            case.cedar_requests.len()
        });
        println!(
            "{:<34} {:>10} {:>14.0} {:>12.0} {:>7.1}x",
            case.name,
            "requests",
            ours,
            theirs,
            ours / theirs
        );
        let ours = rate(t, || {
            for (f, tr) in &case.transfers {
                black_box(case.policy.decide_transfer(f, tr));
            }
            case.transfers.len()
        });
        let theirs = rate(t, || {
            for r in &case.cedar_transfers {
                black_box(auth.is_authorized(r, &case.cedar, &entities));
            }
            case.cedar_transfers.len()
        });
        println!(
            "{:<34} {:>10} {:>14.0} {:>12.0} {:>7.1}x",
            case.name,
            "transfers",
            ours,
            theirs,
            ours / theirs
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
