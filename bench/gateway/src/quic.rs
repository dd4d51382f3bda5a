//! The HTTP/3 load client: quinn (rustls with ring, the same trust roots as over TCP, ALPN `h3`,
//! no 0-RTT) and h3, one client endpoint (its own UDP socket) per connection, S streams per
//! connection each one `GET` at a time, counted as over HTTP/2 (`crate::load`). The servers
//! answer a first Initial with a Retry (address validation, `tianping-net`'s default); quinn
//! follows it, once per connection.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf as _, Bytes};
use http::HeaderValue;
use quinn::crypto::rustls::{HandshakeData, QuicClientConfig};

use crate::Res;
use crate::load::{
    CONNECTION_LOST, Check, Exchange, Proto, Target, Window, Worker, request, streams_of, verdict,
};

/// h3's request sender over quinn.
type Sender = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// One HTTP/3 connection: its endpoint, its request sender and the task driving it.
struct H3Conn {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: Sender,
    drive: tokio::task::JoinHandle<()>,
}

impl H3Conn {
    /// Ends the connection (`H3_NO_ERROR`) and waits, bounded by quinn's drain, for its
    /// endpoint to be idle.
    async fn close(self) {
        drop(self.send);
        self.conn.close(quinn::VarInt::from_u32(0x100), b"done");
        self.drive.abort();
        self.endpoint.wait_idle().await;
    }
}

/// A QUIC connection to `t` with HTTP/3 set up on it.
async fn connect(t: &Target) -> Res<H3Conn> {
    connect_with(t, None).await
}

/// [`connect`], with the client's own idle timeout if given (else quinn's, 30 s: on a busy
/// machine loopback UDP drops datagrams when a socket's receive buffer is full, and a
/// connection rides out the losses as a real client's would).
async fn connect_with(t: &Target, idle: Option<quinn::IdleTimeout>) -> Res<H3Conn> {
    let mut tls = (*t.tls).clone();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls.enable_early_data = false;
    let crypto = QuicClientConfig::try_from(tls)?;
    let local: SocketAddr = if t.addr.is_ipv4() {
        ([127, 0, 0, 1], 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(local)?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    if let Some(idle) = idle {
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(idle));
        client.transport_config(Arc::new(transport));
    }
    endpoint.set_default_client_config(client);
    let conn = endpoint.connect(t.addr, &t.host)?.await?;
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone())).await?;
    let drive = tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    Ok(H3Conn {
        endpoint,
        conn,
        send,
        drive,
    })
}

impl Exchange for Sender {
    async fn exchange(
        &mut self,
        t: &Target,
        token: Option<&HeaderValue>,
        check: Check,
    ) -> Result<String, String> {
        let req = request(t, Proto::H3, token, ()).map_err(|e| format!("request: {e}"))?;
        let mut stream = self
            .send_request(req)
            .await
            .map_err(|e| lost_or("send", &e))?;
        stream.finish().await.map_err(|e| lost_or("finish", &e))?;
        let resp = stream
            .recv_response()
            .await
            .map_err(|e| lost_or("response", &e))?;
        let mut body = Vec::with_capacity(128);
        while let Some(mut chunk) = stream.recv_data().await.map_err(|e| lost_or("body", &e))? {
            body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
        }
        verdict(resp.status(), resp.headers(), &body, check)
    }
}

/// An h3 stream error as text: one that ended the whole connection begins with
/// [`CONNECTION_LOST`].
fn lost_or(what: &str, e: &h3::error::StreamError) -> String {
    if matches!(e, h3::error::StreamError::ConnectionError { .. }) {
        format!("{CONNECTION_LOST}{what}: {e}")
    } else {
        format!("{what}: {e}")
    }
}

/// Connection `c` of `conns` with `streams` workers, for the window.
pub(crate) async fn connection(
    t: Arc<Target>,
    c: usize,
    conns: usize,
    streams: usize,
    window: Arc<Window>,
    check: Check,
) -> Vec<Worker> {
    let h3 = match connect(&t).await {
        Ok(h) => h,
        Err(e) => {
            let mut w = Worker::new();
            w.fail(format!("connect over QUIC: {e}"));
            return vec![w];
        }
    };
    let out = streams_of(t, h3.send.clone(), c, conns, streams, window, check).await;
    h3.close().await;
    out
}

/// One request, checked, on a connection of its own.
pub(crate) async fn once(t: &Target, check: Check) -> Res<String> {
    let mut h3 = connect(t).await?;
    let r = h3.send.exchange(t, t.tokens.first(), check).await;
    h3.close().await;
    Ok(r?)
}

/// What one connection negotiated, to print.
pub(crate) async fn probe(t: &Target) -> Res<String> {
    let h3 = connect(t).await?;
    let alpn = h3
        .conn
        .handshake_data()
        .and_then(|h| h.downcast::<HandshakeData>().ok())
        .and_then(|h| h.protocol)
        .map(|p| String::from_utf8_lossy(&p).into_owned())
        .unwrap_or_else(|| "none".into());
    let rtt = h3.conn.rtt();
    h3.close().await;
    Ok(format!(
        "QUIC v1, TLS 1.3, alpn {alpn}, rtt {} µs",
        rtt.as_micros()
    ))
}

/// Datagrams the kernel dropped so far because a socket's receive buffer was full, every UDP
/// socket of the machine (`RcvbufErrors` of `/proc/net/snmp`).
pub fn udp_rcvbuf_errors() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let mut udp = text.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Datagrams dropped so far at the UDP socket bound to 127.0.0.1:`port` (the `drops` column of
/// `/proc/net/udp`); 0 if there is none.
pub fn udp_drops_at(port: u16) -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/net/udp") else {
        return 0;
    };
    drops_in(&text, port)
}

fn drops_in(table: &str, port: u16) -> u64 {
    let want = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&want.as_str()))
                .then(|| f.last().and_then(|d| d.parse::<u64>().ok()))
                .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http3_requests_are_answered_and_counted() {
        let (server, t, _dir) = crate::handshake::tests::upstream("h3", true).await;
        let seen = once(&t, Check::default()).await.unwrap();
        // a `GET` over HTTP/3 reaches the handler with its body known to be over (tianping-net
        // reads the stream's end first since 72b7d2c), so the upstream has nothing to read
        assert_eq!(seen, "the upstream was asked over HTTP/3");
        let h1 = crate::load::once(&t, Proto::H1, Check::default())
            .await
            .unwrap();
        assert_eq!(h1, "the upstream was asked over HTTP/1.1");
        assert!(probe(&t).await.unwrap().contains("alpn h3"));
        let out = crate::load::run(
            Arc::new(t),
            Proto::H3,
            2,
            3,
            Duration::from_millis(100),
            Duration::from_millis(500),
            Check::default(),
        )
        .await;
        assert_eq!(out.errors, 0, "{:?}", out.first_error);
        assert!(out.requests > 0);
        assert!(out.p99_us >= out.p50_us);
        server.shutdown().await;
    }

    #[test]
    fn udp_drops_are_read_per_local_port() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n  191: 0100007F:92B2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 889023 2 000000008ff321f4 17\n  300: 0100007F:931F 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 891466 2 00000000cb86e110 0\n";
        assert_eq!(drops_in(table, 0x92B2), 17);
        assert_eq!(drops_in(table, 0x931F), 0);
        assert_eq!(drops_in(table, 1), 0);
        // the kernel's own table reads (the machine has UDP)
        let _ = udp_rcvbuf_errors();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_without_http3_is_an_error_not_a_hang() {
        let (server, t, _dir) = crate::handshake::tests::upstream("noh3", false).await;
        // nothing listens on the UDP port: the handshake ends with the client's idle timeout
        let idle = quinn::IdleTimeout::from(quinn::VarInt::from_u32(2_000));
        let r = tokio::time::timeout(Duration::from_secs(60), connect_with(&t, Some(idle))).await;
        assert!(matches!(r, Ok(Err(_))), "{:?}", r.map(|c| c.is_ok()));
        server.shutdown().await;
    }
}
