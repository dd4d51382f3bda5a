//! `gateway-bench serve-upstream CERT KEY ADDR_FILE THREADS`: the service behind both proxies, a
//! process of its own so its CPU time is its own: `tianping_net::serve_tls` (TLS 1.3, HTTP/1.1
//! and HTTP/2 by ALPN) on 127.0.0.1 port 0 for the host `localhost`, answering every
//! request with the same 100-byte body (as `bench/net`'s servers do), on one multi-threaded
//! tokio runtime of THREADS workers. An answer to a request that carried a `Tianping-Assertion`
//! says so in `x-bench-assertion: 1`, so the runner can see that the gateway put one in, and
//! `x-bench-upstream-version` names the HTTP version it was asked over.
//!
//! It reads every request's body to its end before answering, and says `x-bench-body-open: 1`
//! when the body was not known to be over as the request arrived. The gateway forwards a `GET`
//! that came over HTTP/3 with such a body (`tianping-net` hands an HTTP/3 request's body over
//! as a stream whose end is seen only when read): an HTTP/2 server that answers without reading
//! it resets the stream (`RST_STREAM CANCEL`), and a `tianping-net` server counts those against
//! `h2_max_local_error_reset_streams` (20) and ends the connection with GOAWAY, so every
//! request in flight on it failed with 502 at the gateway (see bench/README.md). Reading the
//! body first keeps the HTTP/3 rows measurable; for HTTP/1.1 and HTTP/2 requests the body is
//! already known to be empty and nothing is read.
//!
//! It listens twice on the same certificate: once offering `h2` and `http/1.1` by ALPN (the
//! load client's own rows), once offering `http/1.1` alone (so a proxy in front of it, which
//! the service's URL names, keeps a pool of HTTP/1.1 connections instead of one multiplexed
//! HTTP/2 connection). A third listener serves HTTP/3 too (QUIC on the same port number over
//! UDP, with `Alt-Svc`), for the load client's HTTP/3 rows only, so the other two answer as they
//! did before it. Once listening it writes the three addresses, one a line, to ADDR_FILE
//! (written aside, then renamed); it stops when its standard input closes (the runner holds
//! it open).

use std::path::Path;
use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use tianping_certs::ServerTlsBuilder;
use tianping_net::{Body, HostSet, ResponseBody, ServerOptions, full, serve_tls};
use tokio::io::AsyncReadExt as _;

use crate::Res;

/// The answer's body: 100 bytes.
pub const BODY: &[u8; 100] = b"tianping-bench-0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789ab\n";

/// The response header that says the request carried an assertion.
pub const SAW_ASSERTION: &str = "x-bench-assertion";
/// The response header that names the HTTP version the upstream was asked over.
pub const UPSTREAM_VERSION: &str = "x-bench-upstream-version";
/// The response header that says the request's body was not known to be over on arrival.
pub const BODY_OPEN: &str = "x-bench-body-open";

/// The answer to every request.
pub(crate) async fn answer(req: Request<Body>) -> Response<ResponseBody> {
    let open = !hyper::body::Body::is_end_stream(req.body());
    let (parts, body) = req.into_parts();
    if open {
        let _ = http_body_util::BodyExt::collect(body).await;
    }
    let req = Request::from_parts(parts, ());
    let mut r = Response::new(full(&BODY[..]));
    if open {
        r.headers_mut()
            .insert(BODY_OPEN, HeaderValue::from_static("1"));
    }
    let version = match req.version() {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "other",
    };
    r.headers_mut()
        .insert(UPSTREAM_VERSION, HeaderValue::from_static(version));
    if req.headers().contains_key(tianping_net::ASSERTION_HEADER) {
        r.headers_mut()
            .insert(SAW_ASSERTION, HeaderValue::from_static("1"));
    }
    r
}

/// Runs the upstream; returns when standard input closes.
pub fn main(args: &[String]) -> Res<()> {
    let [cert, key, addr_file, threads] = args else {
        return Err("usage: gateway-bench serve-upstream CERT KEY ADDR_FILE THREADS".into());
    };
    let threads: usize = threads.parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(serve(Path::new(cert), Path::new(key), Path::new(addr_file)))
}

async fn serve(cert: &Path, key: &Path, addr_file: &Path) -> Res<()> {
    let options = |http3: bool| {
        let mut o = ServerOptions::new(HostSet::new(["localhost", "127.0.0.1"]));
        o.http3 = http3;
        // both proxies and the load client come from 127.0.0.1
        o.limits.max_connections_per_addr = 100_000;
        o
    };
    let both = ServerTlsBuilder::new(cert, key).build()?;
    let h1 = ServerTlsBuilder::new(cert, key)
        .alpn(vec![b"http/1.1".to_vec()])
        .build()?;
    let both = Arc::new(both);
    let main = serve_tls(
        ([127, 0, 0, 1], 0).into(),
        both.clone(),
        options(false),
        answer,
    )
    .await?;
    let h1 = serve_tls(
        ([127, 0, 0, 1], 0).into(),
        Arc::new(h1),
        options(false),
        answer,
    )
    .await?;
    let h3 = serve_tls(([127, 0, 0, 1], 0).into(), both, options(true), answer).await?;
    let aside = addr_file.with_extension("tmp");
    std::fs::write(
        &aside,
        format!(
            "{}\n{}\n{}\n",
            main.local_addr(),
            h1.local_addr(),
            h3.local_addr()
        ),
    )?;
    std::fs::rename(&aside, addr_file)?;
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    while stdin.read(&mut sink).await? > 0 {}
    main.shutdown().await;
    h1.shutdown().await;
    h3.shutdown().await;
    Ok(())
}
