//! The link is one-way on a real wire: sender and receiver in two network namespaces joined by
//! a veth pair, with nothing that could carry a packet back. The sender's side knows the
//! receiver's MAC from a static neighbour entry; the receiver's veth has ARP and IPv6 off; an
//! nftables rule in the receiver's namespace counts and drops everything it sends. After a
//! batch arrives byte-identical, that counter and the receiver veth's transmitted packets are
//! both zero (and a datagram sent from the receiver's side on purpose shows the rule counts).
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables): without them the test fails, it does not
//! skip. `.ci/run` installs both, and CI runs as root.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    reason = "tests fail loudly; sizes are small"
)]

#[path = "common/exchange.rs"]
mod exchange;

use std::collections::BTreeSet;
use std::process::Command;

use exchange::{
    Rng, deadline, delivered, parse_report, receiver, run, sender, setup, spool_bytes, wait_files,
};
use tianping_crossdomain::Ended;

const SENDER_IP: &str = "10.231.0.1";
const RECEIVER_IP: &str = "10.231.0.2";
const TABLE: &str = "tianping_oneway";

/// Two namespaces and the veth pair between them, deleted when dropped.
struct Namespaces {
    sender: String,
    receiver: String,
    /// The veth end in the sender's namespace, and in the receiver's.
    veth_s: String,
    veth_r: String,
}

impl Namespaces {
    fn new() -> Self {
        let pid = std::process::id();
        let ns = Self {
            sender: format!("tp-snd-{pid}"),
            receiver: format!("tp-rcv-{pid}"),
            veth_s: format!("tps{pid}"),
            veth_r: format!("tpr{pid}"),
        };
        let who = run(&["id", "-u"]);
        assert_eq!(
            who.trim(),
            "0",
            "this test needs root (network namespaces, nftables); CI runs it as root"
        );
        for tool in ["ip", "nft"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap()
                .status
                .success();
            assert!(found, "`{tool}` is missing: install iproute2 and nftables");
        }
        run(&["ip", "netns", "add", &ns.sender]);
        run(&["ip", "netns", "add", &ns.receiver]);
        run(&[
            "ip",
            "link",
            "add",
            &ns.veth_s,
            "netns",
            &ns.sender,
            "type",
            "veth",
            "peer",
            "name",
            &ns.veth_r,
            "netns",
            &ns.receiver,
        ]);
        let r = ns.exec_args(&ns.receiver);
        let s = ns.exec_args(&ns.sender);
        // the receiver's side: nothing that answers or announces, then the drop-all rule, then up
        let vr = ns.veth_r.as_str();
        sh(&cat(&r, &["ip", "link", "set", "dev", vr, "arp", "off"]));
        sh(&cat(
            &r,
            &[
                "sysctl",
                "-w",
                &format!("net.ipv6.conf.{vr}.disable_ipv6=1"),
            ],
        ));
        sh(&cat(
            &r,
            &["ip", "addr", "add", &format!("{RECEIVER_IP}/24"), "dev", vr],
        ));
        sh(&cat(
            &r,
            &[
                "nft",
                &format!(
                    "add table inet {TABLE}; \
                     add chain inet {TABLE} out {{ type filter hook output priority 0; policy accept; }}; \
                     add rule inet {TABLE} out counter drop"
                ),
            ],
        ));
        sh(&cat(&r, &["ip", "link", "set", "dev", "lo", "up"]));
        sh(&cat(&r, &["ip", "link", "set", "dev", vr, "up"]));
        // the sender's side: its address, and the receiver's MAC written down
        let vs = ns.veth_s.as_str();
        sh(&cat(
            &s,
            &["ip", "addr", "add", &format!("{SENDER_IP}/24"), "dev", vs],
        ));
        sh(&cat(&s, &["ip", "link", "set", "dev", "lo", "up"]));
        sh(&cat(&s, &["ip", "link", "set", "dev", vs, "up"]));
        let mac = ns.stat_text(&ns.receiver, &format!("/sys/class/net/{vr}/address"));
        sh(&cat(
            &s,
            &[
                "ip",
                "neigh",
                "add",
                RECEIVER_IP,
                "lladdr",
                mac.trim(),
                "dev",
                vs,
                "nud",
                "permanent",
            ],
        ));
        ns
    }

    fn exec_args(&self, ns: &str) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), ns.into()]
    }

    fn stat_text(&self, ns: &str, path: &str) -> String {
        run(&["ip", "netns", "exec", ns, "cat", path])
    }

    /// A counter of the receiver's veth (`/sys/class/net/X/statistics/NAME`).
    fn receiver_stat(&self, name: &str) -> u64 {
        let path = format!("/sys/class/net/{}/statistics/{name}", self.veth_r);
        self.stat_text(&self.receiver, &path)
            .trim()
            .parse()
            .unwrap()
    }

    /// The packets the receiver namespace's drop rule counted.
    fn dropped(&self) -> u64 {
        let text = run(&[
            "ip",
            "netns",
            "exec",
            &self.receiver,
            "nft",
            "list",
            "table",
            "inet",
            TABLE,
        ]);
        let after = text
            .split("counter packets ")
            .nth(1)
            .unwrap_or_else(|| panic!("no counter in {text}"));
        after.split(' ').next().unwrap().parse().unwrap()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [&self.sender, &self.receiver] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn cat(a: &[String], b: &[&str]) -> Vec<String> {
    a.iter()
        .cloned()
        .chain(b.iter().map(|s| (*s).to_string()))
        .collect()
}

fn sh(args: &[String]) -> String {
    let v: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&v)
}

#[test]
fn a_batch_crosses_namespaces_and_the_receiver_sends_nothing() {
    let ns = Namespaces::new();
    let s = setup(&format!("{RECEIVER_IP}:7600"));
    assert_eq!(s.link.address.to_string(), format!("{RECEIVER_IP}:7600"));

    let mut rng = Rng::new(0x006e_6574_6e73);
    let mut sent = Vec::new();
    for i in 0..8u64 {
        let n = match i {
            0 => 1,
            1 => 2_500_000,
            _ => rng.between(1..=600_000) as usize,
        };
        let payload = rng.text(n);
        let b = exchange::bundle(&s.dir, &s.link, i + 1, &payload);
        let id = spool_bytes(&s, &format!("bundle-{i}"), &b);
        assert_eq!(id, i + 1);
        sent.push(payload);
    }

    let by = deadline(120);
    let in_r = ["ip", "netns", "exec", ns.receiver.as_str()];
    let in_s = ["ip", "netns", "exec", ns.sender.as_str()];
    let r = receiver(&s, &in_r, by);
    let _s = sender(&s, &in_s, by);
    let mut got = BTreeSet::new();
    let mut link = None;
    while got.len() < sent.len() {
        let line = r.line_by(by).expect("every transfer reported in time");
        assert!(!line.contains(" refused"), "{line}");
        let Some(rep) = parse_report(&line) else {
            continue;
        };
        assert_eq!(rep.how, Ended::Delivered, "{line}");
        assert!(got.insert(rep.transfer), "twice: {line}");
        link = Some(rep.link);
    }
    assert!(link.is_some());
    let files: Vec<_> = (1..=sent.len() as u64)
        .map(|id| delivered(&s, id))
        .collect();
    wait_files(&r, &files, by, |line| {
        assert!(!line.contains(" refused"), "{line}")
    });
    for (b, id) in sent.iter().zip(1..) {
        let got = std::fs::read(delivered(&s, id)).unwrap();
        assert!(got == *b, "transfer {id} differs");
    }

    // the wire carried the batch one way only
    assert!(ns.receiver_stat("rx_packets") > 0);
    assert_eq!(ns.dropped(), 0, "the receiver's side tried to send");
    assert_eq!(
        ns.receiver_stat("tx_packets"),
        0,
        "the receiver's veth sent"
    );

    // the rule counts and drops: a datagram sent from the receiver's side on purpose
    let tried = Command::new("ip")
        .args(["netns", "exec", &ns.receiver, "bash", "-c"])
        .arg(format!("echo x > /dev/udp/{SENDER_IP}/9"))
        .output()
        .unwrap();
    assert!(!tried.status.success(), "the drop rule let a datagram out");
    assert_eq!(ns.dropped(), 1);
    assert_eq!(ns.receiver_stat("tx_packets"), 0);
}
