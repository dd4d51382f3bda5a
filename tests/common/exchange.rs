//! What the `tianping exchange` process tests share: a data folder with the link's addresses
//! rewritten (and a test flow over the first link), signed bundles (whole or streamed), `submit-raw`, daemons as children that are
//! killed when dropped, their report lines, the receiver's store and peak memory.
//!
//! Included with `#[path = "common/exchange.rs"] mod exchange;`: each test file uses a part.
#![allow(dead_code, reason = "each test file uses a part of it")]
#![allow(unreachable_pub, reason = "a test's module")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "tests fail loudly; the generator's values are cut to size on purpose"
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tianping_core::{Component, DataDir, Fabric, Link, PolicyHash, ZoneName};
use tianping_crossdomain::{
    BundleHeader, ChunkHasher, Ended, Manifest, Store, Submitter, table_hash,
};

/// The chunk size of the bundles the tests build.
pub const CHUNK: u32 = 256 * 1024;

/// `tianping --data DATA`.
pub fn tianping(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tianping"));
    c.arg("--data").arg(data);
    c
}

/// SplitMix64: seeded choices, and payload bytes generated as they are needed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `range`.
    pub fn between(&mut self, range: std::ops::RangeInclusive<u64>) -> u64 {
        let (lo, hi) = (*range.start(), *range.end());
        lo + self.next() % (hi - lo + 1)
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = words.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }

    /// `n` bytes of text that the `text` filter passes unchanged: the stream's bytes made
    /// lowercase letters, in lines of 64 ending with a line feed (the last one too).
    pub fn text(&mut self, n: usize) -> Vec<u8> {
        let mut v = self.bytes(n);
        to_text(&mut v);
        v
    }
}

/// `buf` made text the `text` filter passes unchanged: lowercase letters, a line feed every 64
/// bytes and as the last byte.
pub fn to_text(buf: &mut [u8]) {
    let n = buf.len();
    for (i, b) in buf.iter_mut().enumerate() {
        *b = if i % 64 == 63 || i + 1 == n {
            b'\n'
        } else {
            b'a' + *b % 26
        };
    }
}

/// A data folder made by `tianping init`, with its fabric and first link.
pub struct Setup {
    pub tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub dir: DataDir,
    pub link: Link,
}

/// `tianping init` in a fresh folder; every zone listener on port 0 (so tests running at
/// once never meet), the first link's receiver at `first`, every other link's at
/// `127.0.0.1:0`.
pub fn setup(first: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let init = tianping(&data).arg("init").output().unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let dir = DataDir::new(&data);
    add_link_test_flow(&data);
    isolate_zone_ports(&dir.fabric());
    set_link_addresses(&dir.fabric(), first);
    let link = Fabric::load(&dir.fabric()).unwrap().links()[0].clone();
    Setup {
        tmp,
        data,
        dir,
        link,
    }
}

/// The flow the bundles of [`signed_header`] travel on: the first link's zones (`internet` to
/// `external`), text, submitted by a machine. The default policy has no flow there.
pub const LINK_TEST_FLOW: &str = "\n# the exchange tests' flow over the first link
flow link-test internet -> external {
  kinds text
  max-size 1GiB
  submitters machine
  deliver bank-gateway
  sanitize validate, rebuild
}
";

/// [`LINK_TEST_FLOW`] appended to the policy and to every zone's copy of it.
fn add_link_test_flow(data: &Path) {
    let mut files = vec![data.join("policy.tp")];
    for zone in std::fs::read_dir(data.join("zones")).unwrap() {
        files.push(zone.unwrap().path().join("policy.tp"));
    }
    for f in files.into_iter().filter(|f| f.exists()) {
        let mut text = std::fs::read_to_string(&f).unwrap();
        text.push_str(LINK_TEST_FLOW);
        std::fs::write(&f, text).unwrap();
    }
}

/// Every port of a `[zones.*]` table set to 0.
fn isolate_zone_ports(fabric: &Path) {
    let text = std::fs::read_to_string(fabric).unwrap();
    let mut in_zone = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with('[') {
            in_zone = line.trim().starts_with("[zones.");
        }
        let key = line.split('=').next().unwrap_or("").trim();
        if in_zone && ["gateway", "idp", "admin"].contains(&key) {
            let (k, v) = line.split_once('=').unwrap();
            let mut value = String::new();
            let mut digits = false;
            for c in v.chars() {
                if c.is_ascii_digit() {
                    if !digits {
                        value.push('0');
                    }
                    digits = true;
                } else {
                    digits = false;
                    value.push(c);
                }
            }
            out.push_str(&format!("{k}={value}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(fabric, out).unwrap();
}

/// The first `[[links]]` table's address set to `first`, every other one's to `127.0.0.1:0`.
pub fn set_link_addresses(fabric: &Path, first: &str) {
    let text = std::fs::read_to_string(fabric).unwrap();
    let (mut in_link, mut seen) = (false, 0usize);
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with('[') {
            in_link = line.trim() == "[[links]]";
            if in_link {
                seen += 1;
            }
        }
        if in_link && line.trim_start().starts_with("address") {
            let addr = if seen == 1 { first } else { "127.0.0.1:0" };
            out.push_str(&format!("address = \"{addr}\"\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(fabric, out).unwrap();
}

/// The first link's `rate-mbps` set to `mbps`.
pub fn set_first_link_rate(fabric: &Path, mbps: u32) {
    let text = std::fs::read_to_string(fabric).unwrap();
    let (mut in_link, mut seen) = (false, 0usize);
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with('[') {
            in_link = line.trim() == "[[links]]";
            if in_link {
                seen += 1;
            }
        }
        if in_link && seen == 1 && line.trim_start().starts_with("rate-mbps") {
            out.push_str(&format!("rate-mbps = {mbps}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(fabric, out).unwrap();
}

/// The encoded, signed header of a bundle over `link` whose payload has `size` bytes and the
/// chunk table `table` (of [`CHUNK`]-byte chunks), signed by the sending zone's exchange node.
pub fn signed_header(
    dir: &DataDir,
    link: &Link,
    sequence: u64,
    size: u64,
    table: Vec<[u8; 32]>,
) -> Vec<u8> {
    let (cert, key) = dir.node(&link.from, Component::ExchangeSender);
    let signer = tianping_audit::signer_from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
    let der = tianping_certs::certs_from_pem(&std::fs::read(cert).unwrap()).unwrap()[0].to_vec();
    let m = Manifest {
        flow: "link-test".into(),
        source: link.from.clone(),
        destination: link.to.clone(),
        kind: "text".into(),
        content_type: "text/plain; charset=utf-8".into(),
        schema: None,
        size,
        chunk_size: CHUNK,
        chunks_hash: [0; 32],
        submitter: Submitter {
            subject: "exchange-sender".parse().unwrap(),
            roles: vec![],
            machine: true,
        },
        labels: vec![],
        redacted: false,
        correlation: None,
        time: tianping_core::Clock::now(&tianping_core::SystemClock),
        sequence,
        policy_hash: PolicyHash::of(b"p"),
    };
    BundleHeader::sign(m, vec![], table, der, &signer)
        .unwrap()
        .encode()
        .unwrap()
}

/// A whole bundle (header, then `payload`).
pub fn bundle(dir: &DataDir, link: &Link, sequence: u64, payload: &[u8]) -> Vec<u8> {
    let mut h = ChunkHasher::new(CHUNK).unwrap();
    h.update(payload);
    let (size, table) = h.finish();
    let mut b = signed_header(dir, link, sequence, size, table);
    b.extend_from_slice(payload);
    b
}

/// A digest of a byte stream of any length, computed as it passes: the size and the hash
/// over its 16 MiB chunks' hashes.
#[derive(Debug)]
pub struct StreamHash(ChunkHasher);

impl StreamHash {
    pub fn new() -> Self {
        Self(ChunkHasher::new(tianping_crossdomain::MAX_CHUNK).unwrap())
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> (u64, [u8; 32]) {
        let (size, table) = self.0.finish();
        (size, table_hash(&table))
    }

    /// The digest of a file, read in pieces.
    pub fn of_file(path: &Path) -> (u64, [u8; 32]) {
        use std::io::Read;
        let mut f = std::fs::File::open(path).unwrap();
        let mut h = Self::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                return h.finish();
            }
            h.update(&buf[..n]);
        }
    }
}

/// `submit-raw` of `file` over `link` (the sender must be stopped); the transfer id it returned.
pub fn submit_raw(data: &Path, link: &Link, file: &Path) -> u64 {
    let out = tianping(data)
        .args(["exchange", "submit-raw", "--zone", link.from.as_str()])
        .args(["--to", link.to.as_str(), "--file"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "submit-raw: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `bytes` written to a file beside the data folder and spooled; the transfer id.
pub fn spool_bytes(s: &Setup, name: &str, bytes: &[u8]) -> u64 {
    let file = s.tmp.path().join(name);
    std::fs::write(&file, bytes).unwrap();
    let id = submit_raw(&s.data, &s.link, &file);
    std::fs::remove_file(&file).unwrap();
    id
}

/// How a receiver line reports a transfer: `link L transfer T delivered|lost|refused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub link: u32,
    pub transfer: u64,
    pub how: Ended,
}

/// Reads a receiver's report line; `None` for any other line.
pub fn parse_report(line: &str) -> Option<Report> {
    let w: Vec<&str> = line.split(' ').collect();
    match w.as_slice() {
        ["link", link, "transfer", transfer, how] => Some(Report {
            link: link.parse().ok()?,
            transfer: transfer.parse().ok()?,
            how: match *how {
                "delivered" => Ended::Delivered,
                "lost" => Ended::Lost,
                "refused" => Ended::Refused,
                _ => return None,
            },
        }),
        _ => None,
    }
}

/// A daemon run as a child; its standard output read line by line on a thread. Killed
/// (SIGKILL) when dropped, so a failing test leaves no daemon behind.
pub struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub name: String,
}

impl Daemon {
    /// Spawns `cmd` with its standard output piped.
    pub fn spawn(name: &str, mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            name: name.to_string(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line, waiting until `by`; `None` at `by` or once the daemon's output ended.
    pub fn line_by(&self, by: Instant) -> Option<String> {
        let wait = by.saturating_duration_since(Instant::now());
        self.lines.recv_timeout(wait).ok()
    }

    /// The next line, which must come before `by`.
    pub fn expect_line(&mut self, by: Instant) -> String {
        match self.line_by(by) {
            Some(l) => l,
            None => panic!(
                "{}: no line in time (exit: {:?})",
                self.name,
                self.child.try_wait()
            ),
        }
    }

    /// Waits for the line the daemon prints once it is ready (`starts`).
    pub fn ready(&mut self, starts: &str, by: Instant) {
        let line = self.expect_line(by);
        assert!(line.starts_with(starts), "{}: {line}", self.name);
    }

    /// Peak resident memory so far, in KiB (`VmHWM` of `/proc/<pid>/status`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// SIGKILL, and reaped.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Daemon {
    /// Lines until one equal to `want`, which must come before `by`; the lines seen before it.
    pub fn until(&mut self, want: &str, by: Instant) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self.expect_line(by);
            if line == want {
                return seen;
            }
            seen.push(line);
        }
    }

    /// Waits until it has exited by itself (what it does after its last line, such as `up`
    /// deleting its namespaces, is done).
    pub fn wait_exit(mut self) {
        let _ = self.child.wait();
    }

    /// Asks it to stop, as Ctrl-C does (`SIGINT`).
    pub fn interrupt(&self) {
        let ok = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tianping exchange receive` for the link's receiving zone, started and ready; `wrap` puts
/// a command in front (`ip netns exec NS`), or nothing.
pub fn receiver(s: &Setup, wrap: &[&str], by: Instant) -> Daemon {
    let mut d = Daemon::spawn("receiver", daemon_cmd(&s.data, wrap, "receive", &s.link.to));
    d.ready("receiving into", by);
    d
}

/// `tianping exchange send` for the link's sending zone, started and ready.
pub fn sender(s: &Setup, wrap: &[&str], by: Instant) -> Daemon {
    let mut d = Daemon::spawn("sender", daemon_cmd(&s.data, wrap, "send", &s.link.from));
    d.ready("sending from", by);
    d
}

fn daemon_cmd(data: &Path, wrap: &[&str], what: &str, zone: &ZoneName) -> Command {
    let bin = env!("CARGO_BIN_EXE_tianping");
    let mut c = match wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    c.arg("--data")
        .arg(data)
        .args(["exchange", what, "--zone", zone.as_str()]);
    c
}

/// The folder of the link test flow's service (`bank-gateway`), where the receiving zone
/// delivers the payloads of [`LINK_TEST_FLOW`].
pub fn delivered_dir(s: &Setup) -> PathBuf {
    s.data
        .join("zones")
        .join(s.link.to.as_str())
        .join("delivery")
        .join("bank-gateway")
}

/// Where the payload of the sending zone's transfer `sequence` is delivered (the bundles of
/// [`bundle`] carry their link transfer id as their sequence).
pub fn delivered(s: &Setup, sequence: u64) -> PathBuf {
    delivered_dir(s).join(format!("{}-{sequence}.text", s.link.from))
}

/// The sequence of the transfer a receiver's line says was delivered into its service
/// (`transfer <zone>:<sequence> delivered to <service> after <n> attempts`); `None` for any
/// other line.
pub fn parse_delivered(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("transfer ")?;
    let (id, rest) = rest.split_once(' ')?;
    rest.starts_with("delivered to ").then_some(())?;
    id.rsplit_once(':')?.1.parse().ok()
}

/// Reads `r`'s lines until every one of `files` exists (each delivered into its service by
/// the receiver's deliverer, which says so in a line), the lines read given to `seen`.
pub fn wait_files(r: &Daemon, files: &[PathBuf], by: Instant, mut seen: impl FnMut(&str)) {
    while let Some(missing) = files.iter().find(|f| !f.exists()) {
        let line = r
            .line_by(by)
            .unwrap_or_else(|| panic!("`{}` never delivered", missing.display()));
        seen(&line);
    }
}

/// How the receiver's store (not running) says each of `ids` on `link` ended, without handing
/// anything on (the restarted receiver hands a bundle a crash left complete to its intake,
/// which delivers it).
pub fn store_ended(s: &Setup, link: u32, ids: &[u64]) -> BTreeMap<u64, Option<Ended>> {
    let base = s.dir.component(&s.link.to, Component::ExchangeReceiver);
    let store = Store::open_deferred(&base.join("store").join(link.to_string())).unwrap();
    ids.iter()
        .map(|id| (*id, store.ended(link, *id).unwrap()))
        .collect()
}

/// The `up --demo --clock-offset` that puts the fabric's clocks at the next `hour`:30 at
/// +08:00: never behind the machine's clock, which made the folder's certificates (`up` refuses
/// an offset further back than their 5 minutes of grace).
pub fn offset_to(hour: u64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let local = (now + 8 * 3600) % 86_400;
    let target = hour * 3600 + 1800;
    (i64::try_from(target).unwrap() - i64::try_from(local).unwrap()).rem_euclid(86_400)
}

/// A deadline `secs` from now.
pub fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// Runs a command to success; its standard output.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("`{}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`{}`: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
