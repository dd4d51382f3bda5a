//! A 2 GiB body streamed through the control socket and through a TLS listener whose route sets
//! its own limit, each received by a child process (this test binary, run again) whose peak
//! resident memory (`VmHWM`) stays under 64 MiB; the payload is generated and SHA-256 hashed on
//! both sides, and one byte over the limit is refused with 413.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::pin::Pin;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use common::*;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tianping_certs::{ClientAuth, ServerTlsBuilder};
use tianping_net::{
    Body, ControlBody, ControlOptions, ServerOptions, control_send, full, serve_control_with,
    serve_tls,
};
use tokio::io::{AsyncRead, ReadBuf};

/// The body size, and the route's limit.
const SIZE: u64 = 2 << 30;
/// Peak resident memory allowed to the receiving process.
const MAX_HWM_KB: u64 = 64 * 1024;
/// Tells the child which receiver to run: `control:<socket>` or `tls:<pki dir>`.
const CHILD_ENV: &str = "TIANPING_BIG_BODY_CHILD";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Sets the route's limit to [`SIZE`] and answers the length and SHA-256 of the body.
async fn hashing(mut req: http::Request<Body>) -> http::Response<tianping_net::ResponseBody> {
    req.body_mut().set_limit(SIZE);
    let mut body = req.into_body();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    ctx.update(d);
                    len += d.len() as u64;
                }
            }
            Err(e) => {
                let mut r = http::Response::new(full(e.to_string()));
                *r.status_mut() = http::StatusCode::from_u16(e.status()).unwrap();
                return r;
            }
        }
    }
    http::Response::new(full(format!("{len} {}", hex(ctx.finish().as_ref()))))
}

/// The receiver, in the child: serves until its stdin closes.
#[test]
#[ignore = "run by the tests below in a child process"]
fn receiver_child() {
    let mode = std::env::var(CHILD_ENV).expect("run by the parent test");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ready = if let Some(socket) = mode.strip_prefix("control:") {
            let ctl = serve_control_with(socket.as_ref(), ControlOptions::new(&[]), hashing)
                .await
                .unwrap();
            std::mem::forget(ctl);
            "READY".to_string()
        } else if let Some(dir) = mode.strip_prefix("tls:") {
            let dir = std::path::Path::new(dir);
            let tls = ServerTlsBuilder::new(dir.join("tls.pem"), dir.join("tls.key"))
                .client_auth(ClientAuth::None, dir.join("trust.pem"), vec![])
                .build()
                .unwrap();
            let mut options = ServerOptions::new(tianping_net::HostSet::new([HOST]));
            options.http3 = false;
            options.limits.body_ceiling = SIZE;
            let addr = "127.0.0.1:0".parse().unwrap();
            let server = serve_tls(addr, Arc::new(tls), options, hashing)
                .await
                .unwrap();
            let port = server.local_addr().port();
            std::mem::forget(server);
            format!("READY {port}")
        } else {
            panic!("unknown mode `{mode}`");
        };
        println!("{ready}");
        std::io::stdout().flush().unwrap();
        // Until the parent has read our peak memory and closes stdin.
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await
        .unwrap();
    });
}

/// The child process and what it printed when ready.
struct Receiver {
    child: Child,
    stdin: Option<ChildStdin>,
    ready: String,
    /// Reads the rest of the child's output, so its test harness can write it.
    drain: std::thread::JoinHandle<()>,
}

impl Receiver {
    fn start(mode: String) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "receiver_child", "--nocapture"])
            .env(CHILD_ENV, mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = loop {
            let line = lines
                .next()
                .expect("child ended before it was ready")
                .unwrap();
            if line.starts_with("READY") {
                break line;
            }
        };
        let drain = std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        Self {
            child,
            stdin,
            ready,
            drain,
        }
    }

    /// The child's peak resident memory in KiB.
    fn hwm_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn stop(mut self) {
        drop(self.stdin.take());
        assert!(self.child.wait().unwrap().success());
        self.drain.join().unwrap();
    }
}

/// [`SIZE`] (or `len`) bytes, generated in 1 MiB blocks (a seeded pseudo-random block, each copy
/// stamped with its index), hashed as they are read.
struct Payload {
    block: Vec<u8>,
    left: u64,
    sent: u64,
    hash: Arc<Mutex<Option<ring::digest::Context>>>,
}

const BLOCK: u64 = 1 << 20;

impl Payload {
    fn new(len: u64) -> (Self, Arc<Mutex<Option<ring::digest::Context>>>) {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let block = (0..BLOCK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        let hash = Arc::new(Mutex::new(Some(ring::digest::Context::new(
            &ring::digest::SHA256,
        ))));
        let p = Self {
            block,
            left: len,
            sent: 0,
            hash: hash.clone(),
        };
        (p, hash)
    }
}

impl AsyncRead for Payload {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let at = self.sent % BLOCK;
        let n = (BLOCK - at).min(self.left).min(buf.remaining() as u64);
        if n == 0 {
            return Poll::Ready(Ok(()));
        }
        if at == 0 {
            let stamp = (self.sent / BLOCK).to_le_bytes();
            self.block[..8].copy_from_slice(&stamp);
        }
        let (at, n) = (usize::try_from(at).unwrap(), usize::try_from(n).unwrap());
        let piece = &self.block[at..at + n];
        buf.put_slice(piece);
        if let Some(ctx) = self.hash.lock().unwrap().as_mut() {
            ctx.update(piece);
        }
        self.sent += n as u64;
        self.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

fn digest(hash: &Mutex<Option<ring::digest::Context>>) -> String {
    hex(hash.lock().unwrap().take().unwrap().finish().as_ref())
}

async fn answer(resp: http::Response<Body>) -> (u16, String) {
    let status = resp.status().as_u16();
    let body = resp.into_body().bytes().await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

const WITHIN: std::time::Duration = std::time::Duration::from_secs(600);

#[tokio::test]
async fn two_gib_through_the_control_socket_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("a-big.sock");
    let child = Receiver::start(format!("control:{}", socket.display()));
    let (payload, hash) = Payload::new(SIZE);
    let req = http::Request::post("/upload")
        .body(ControlBody::reader(payload, Some(SIZE)))
        .unwrap();
    let (status, body) = answer(control_send(&socket, req, WITHIN).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, format!("{SIZE} {}", digest(&hash)));
    let hwm = child.hwm_kb();
    assert!(hwm < MAX_HWM_KB, "child peak memory {hwm} KiB");
    eprintln!("control socket: 2 GiB received, child VmHWM {hwm} KiB");
    // One byte over the route's limit: refused at once, from the declared length, before a
    // byte of the body is sent.
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        SIZE + 1
    );
    let out = control_raw(&socket, head.as_bytes()).await;
    assert_eq!(statuses(&out), vec![413], "{out}");
    child.stop();
}

async fn tls_post(pki: &Pki, port: u16, len: u64) -> (u16, String, String) {
    let cfg = Arc::new(pki.client_config(false, &[b"http/1.1"]));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from(HOST).unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let drive = tokio::spawn(conn);
    let (payload, hash) = Payload::new(len);
    let req = http::Request::post("/upload")
        .header(http::header::HOST, HOST)
        .body(ControlBody::reader(payload, Some(len)))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    drop(send);
    let _ = drive.await;
    let sent = digest(&hash);
    (status, String::from_utf8(body.to_vec()).unwrap(), sent)
}

#[tokio::test]
async fn two_gib_through_a_tls_listener_with_a_route_limit_in_bounded_memory() {
    let pki = Pki::new();
    let child = Receiver::start(format!("tls:{}", pki.dir.path().display()));
    let port: u16 = child.ready.strip_prefix("READY ").unwrap().parse().unwrap();
    let (status, body, sent) = tls_post(&pki, port, SIZE).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, format!("{SIZE} {sent}"));
    let hwm = child.hwm_kb();
    assert!(hwm < MAX_HWM_KB, "child peak memory {hwm} KiB");
    eprintln!("tls listener: 2 GiB received, child VmHWM {hwm} KiB");
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n\r\n",
        SIZE + 1
    );
    let out = raw(&pki, ([127, 0, 0, 1], port).into(), head.as_bytes()).await;
    assert_eq!(statuses(&out), vec![413], "{out}");
    child.stop();
}
