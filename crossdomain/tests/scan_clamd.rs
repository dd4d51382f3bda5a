//! The `scan` step against a real ClamAV daemon (Debian's `clamav-daemon`): each test starts
//! `clamd` in the foreground with a configuration and a signature database it writes itself
//! (the EICAR test file by its MD5, `.hdb`, and a custom body signature, `.ndb`; nothing is
//! downloaded), waits until it answers `PING` with `PONG`, and scans through
//! [`tianping_crossdomain::Clamd`] and [`Filters::run`]: clean bytes pass, either signature is
//! refused by its name, a payload over `StreamMaxLength` is refused, and with the daemon
//! stopped (or silent) the step fails closed.
//!
//! `clamd` must be installed (`apt-get install clamav-daemon`); without it these tests fail,
//! they do not skip.
#![cfg(feature = "daemon")]
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests fail loudly, with what went wrong"
)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tianping_crossdomain::{
    Clamd, FilterInput, Filtered, Filters, Refusal, Scanner, StepState, TextFilter, Verdict,
};

/// The EICAR anti-virus test file (eicar.org), 68 bytes.
const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// Its MD5, as an `.hdb` line names it.
const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";
/// The bytes the custom body signature looks for, anywhere in a file.
const MARKER: &[u8] = b"TIANPING-SCAN-TEST-7c1e0d";
/// The daemon's `StreamMaxLength` in these tests.
const STREAM_MAX: usize = 256 << 10;

/// `clamd` on `PATH` or where Debian puts it.
fn clamd_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("clamd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "clamd is not installed: this test starts its own ClamAV daemon and does not \
                 skip; install Debian's `clamav-daemon` (apt-get install -y clamav-daemon)"
            )
        })
}

/// A `clamd` of this test's own, stopped on drop.
struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Daemon {
    fn start() -> Self {
        let binary = clamd_binary();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        std::fs::write(
            db.join("tianping-test.hdb"),
            format!("{EICAR_MD5}:{}:Tianping.Test.EICAR\n", EICAR.len()),
        )
        .unwrap();
        let hex: String = MARKER.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(
            db.join("tianping-test.ndb"),
            format!("Tianping.Test.Custom:0:*:{hex}\n"),
        )
        .unwrap();
        let socket = dir.path().join("clamd.sock");
        let conf = dir.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "LocalSocket {}\nDatabaseDirectory {}\nTemporaryDirectory {}\nPidFile {}\n\
                 LogFile {}\nForeground yes\nStreamMaxLength {}\nBytecode no\nSelfCheck 0\n",
                socket.display(),
                db.display(),
                dir.path().display(),
                dir.path().join("clamd.pid").display(),
                dir.path().join("clamd.log").display(),
                STREAM_MAX,
            ),
        )
        .unwrap();
        let out = std::fs::File::create(dir.path().join("clamd.out")).unwrap();
        let child = Command::new(&binary)
            .arg("--config-file")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", binary.display()));
        let mut d = Daemon {
            child: Some(child),
            dir,
            socket,
        };
        d.wait_ready();
        d
    }

    /// Polls the socket until the daemon answers `PING` with `PONG`; fails if it exits first.
    fn wait_ready(&mut self) {
        let client = Clamd::new(&self.socket).with_timeout(Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if client.ping().is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "clamd exited ({status}) before it answered PING:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "clamd did not answer PING within 120 s:\n{}",
                self.log()
            );
            // the interval between two polls of the socket, not a wait standing in for it
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        let mut out = String::new();
        for name in ["clamd.out", "clamd.log"] {
            if let Ok(mut f) = std::fs::File::open(self.dir.path().join(name)) {
                let _ = f.read_to_string(&mut out);
            }
        }
        out
    }

    fn client(&self) -> Clamd {
        Clamd::new(&self.socket).with_timeout(Duration::from_secs(60))
    }

    /// Stops the daemon and waits for it to exit.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The text filter with `scanner` doing `scan`.
fn filters(scanner: Arc<dyn Scanner>) -> Filters {
    let mut f = Filters::new();
    f.register(Arc::new(TextFilter::new()));
    f.with_scanner(scanner)
}

/// `bytes` declared as text on a flow asking `validate, rebuild, scan` (as `classified-import`).
fn scan_text(f: &Filters, bytes: &[u8]) -> Result<Filtered, Refusal> {
    f.run(
        &FilterInput {
            kind: "text",
            schema: None,
            steps: &["validate", "rebuild", "scan"],
            max_size: 100 << 20,
            release: false,
        },
        bytes,
    )
}

fn refusal(got: Result<Filtered, Refusal>) -> Refusal {
    match got {
        Err(r) => r,
        Ok(out) => panic!("accepted, with steps {:?}", out.steps),
    }
}

/// A text of `len` bytes with `inside` in its middle.
fn text_with(inside: &[u8], len: usize) -> Vec<u8> {
    let line = b"The court has received the statement of claim.\n";
    let mut out: Vec<u8> = line.iter().copied().cycle().take(len / 2).collect();
    out.extend_from_slice(inside);
    out.extend(
        line.iter()
            .copied()
            .cycle()
            .take(len.saturating_sub(out.len())),
    );
    out
}

#[test]
fn clean_bytes_pass_and_either_signature_is_refused_by_its_name() {
    let d = Daemon::start();
    let clamd = d.client();
    assert_eq!(clamd.scan(b"a statement of claim\n"), Verdict::Clean);
    assert_eq!(clamd.scan(b""), Verdict::Clean);
    assert!(
        matches!(clamd.scan(EICAR), Verdict::Finding(n) if n.starts_with("Tianping.Test.EICAR")),
        "{}",
        d.log()
    );
    assert!(matches!(
        clamd.scan(&text_with(MARKER, 200_000)),
        Verdict::Finding(n) if n.starts_with("Tianping.Test.Custom")
    ));

    let f = filters(Arc::new(d.client()));
    let clean = text_with(b"nothing to see", 150_000);
    let out = scan_text(&f, &clean).unwrap();
    assert!(
        out.steps
            .iter()
            .any(|s| s.name == "scan" && s.state == StepState::Done),
        "{:?}",
        out.steps
    );
    // EICAR declared as text: printable ASCII, which the text filter would pass on
    let r = refusal(scan_text(&f, EICAR));
    assert_eq!(r.filter, "scan");
    assert!(r.reason.contains("`Tianping.Test.EICAR"), "{r}");
    let r = refusal(scan_text(&f, &text_with(MARKER, 10_000)));
    assert!(r.reason.contains("`Tianping.Test.Custom"), "{r}");
}

#[test]
fn a_payload_over_stream_max_length_is_refused_not_scanned_in_part() {
    let d = Daemon::start();
    let clamd = d.client();
    // up to the limit the daemon scans it, and still finds what is at its end
    let mut at_limit = text_with(b"", STREAM_MAX - MARKER.len());
    at_limit.extend_from_slice(MARKER);
    assert_eq!(at_limit.len(), STREAM_MAX);
    assert!(matches!(clamd.scan(&at_limit), Verdict::Finding(_)));
    assert_eq!(clamd.scan(&text_with(b"", STREAM_MAX)), Verdict::Clean);
    // one byte over: the daemon's own refusal, an error and never clean
    let over = text_with(b"", STREAM_MAX + 1);
    match clamd.scan(&over) {
        Verdict::Error(e) => assert!(e.contains("size limit exceeded"), "{e}"),
        v => panic!("over StreamMaxLength: {v:?}"),
    }
    // far over (the daemon closes while the client still writes), and the marker past the limit
    let mut far = text_with(b"", 4 * STREAM_MAX);
    far.extend_from_slice(MARKER);
    assert!(matches!(clamd.scan(&far), Verdict::Error(_)));
    let r = refusal(scan_text(&filters(Arc::new(d.client())), &far));
    assert!(r.reason.contains("did not complete"), "{r}");
    // told the limit, the client refuses before sending anything
    let told = d.client().with_stream_max_length(STREAM_MAX as u64);
    match told.scan(&over) {
        Verdict::Error(e) => assert!(e.contains("over clamd's StreamMaxLength"), "{e}"),
        v => panic!("{v:?}"),
    }
    assert_eq!(told.scan(b"short"), Verdict::Clean);
}

#[test]
fn with_the_daemon_stopped_scan_fails_closed() {
    let mut d = Daemon::start();
    let f = filters(Arc::new(d.client()));
    assert!(scan_text(&f, b"a statement of claim\n").is_ok());
    d.stop();
    match d.client().scan(b"a statement of claim\n") {
        Verdict::Error(e) => assert!(e.contains("no clamd answers"), "{e}"),
        v => panic!("{v:?}"),
    }
    let r = refusal(scan_text(&f, b"a statement of claim\n"));
    assert!(r.reason.contains("did not complete"), "{r}");
    assert!(r.reason.contains("no clamd answers"), "{r}");
    // a socket no daemon ever listened on
    let nowhere = Clamd::new(Path::new("/nonexistent/clamd.ctl"));
    assert!(matches!(nowhere.scan(b"x"), Verdict::Error(_)));
    assert_eq!(nowhere.socket(), Path::new("/nonexistent/clamd.ctl"));
    assert!(nowhere.ping().is_err());
}

/// Reads a `zINSTREAM` command and its stream up to the zero-length chunk that ends it.
fn read_stream(conn: &mut UnixStream) {
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while !(got.starts_with(b"zINSTREAM\0") && got.ends_with(&[0, 0, 0, 0])) {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "the client closed before it ended its stream");
        got.extend_from_slice(buf.get(..n).unwrap());
    }
}

#[test]
fn a_daemon_that_does_not_answer_in_time_or_answers_otherwise_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    // One connection each: silent until the client gives up; "stream: OK" with no NUL; "stream:
    // OK " (not the exact answer); an answer longer than any clamd gives.
    let answers: Vec<Option<Vec<u8>>> = vec![
        None,
        Some(b"stream: OK".to_vec()),
        Some(b"stream: OK \0".to_vec()),
        Some(vec![b'A'; 10_000]),
    ];
    let server = std::thread::spawn(move || {
        for answer in answers {
            let (mut conn, _) = listener.accept().unwrap();
            read_stream(&mut conn);
            match answer {
                Some(a) => {
                    let _ = conn.write_all(&a);
                }
                None => {
                    let mut buf = [0u8; 64];
                    while conn.read(&mut buf).is_ok_and(|n| n > 0) {}
                }
            }
        }
    });
    let client = Clamd::new(&socket).with_timeout(Duration::from_millis(300));
    match client.scan(b"hello") {
        Verdict::Error(e) => assert!(e.contains("did not answer within"), "{e}"),
        v => panic!("a silent daemon: {v:?}"),
    }
    match client.scan(b"hello") {
        Verdict::Error(e) => assert!(e.contains("cut short"), "{e}"),
        v => panic!("an answer with no NUL: {v:?}"),
    }
    match client.scan(b"hello") {
        Verdict::Error(e) => assert!(e.contains("`stream: OK `"), "{e}"),
        v => panic!("not the exact answer: {v:?}"),
    }
    match client.scan(b"hello") {
        Verdict::Error(e) => assert!(e.contains("longer than"), "{e}"),
        v => panic!("an endless answer: {v:?}"),
    }
    server.join().unwrap();
}
