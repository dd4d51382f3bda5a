//! The link over real UDP sockets (feature `io`): thin loops around [`Sender`] and
//! [`Assembler`].
//!
//! The sender sends from an unconnected socket with `send_to` and never reads from it: an
//! unconnected Linux UDP socket is not told of ICMP errors (no `IP_RECVERR`), and any send error
//! (a full buffer, no route) is counted and the datagram dropped like any other loss, so nothing
//! the far side does can stop or steer the sender. The receiver only reads; it never sends a
//! packet toward the sender.
//!
//! Buffer sizes are set with `socket2`, because `std::net::UdpSocket` cannot set `SO_RCVBUF` or
//! `SO_SNDBUF`: a receiver needs a large buffer to ride out the moments it falls behind (the
//! lidi measurements in `shared/reference/peers-measured.md`). The kernel clamps `SO_RCVBUF` to
//! `net.core.rmem_max` (208 KiB on a stock kernel), so [`bind_udp`] first asks with
//! `SO_RCVBUFFORCE`, which a process with `CAP_NET_ADMIN` (the daemons run as root) may set past
//! it, and [`recv_buffer`] says what the kernel gave, for the receiver to warn when it is short.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::sync::mpsc::{Receiver as Inbox, TryRecvError};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tianping_core::Clock;

use crate::{Arrival, Assembler, LinkError, Pacer, Sender, TransferSource};

/// A UDP socket bound to `addr`, asking for `recv_buffer` and `send_buffer` bytes of kernel
/// buffer (0 leaves the system default). The receive buffer is forced past `net.core.rmem_max`
/// where the process may (`CAP_NET_ADMIN`), else asked for and clamped by the kernel.
pub fn bind_udp(addr: SocketAddr, recv_buffer: usize, send_buffer: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if recv_buffer > 0
        && rustix::net::sockopt::set_socket_recv_buffer_size_force(&socket, recv_buffer).is_err()
    {
        socket.set_recv_buffer_size(recv_buffer)?;
    }
    if send_buffer > 0 {
        socket.set_send_buffer_size(send_buffer)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The receive buffer the kernel gave `socket`, in bytes (Linux reports twice what was set: the
/// half it keeps for its own bookkeeping is counted).
pub fn recv_buffer(socket: &UdpSocket) -> io::Result<usize> {
    socket2::SockRef::from(socket).recv_buffer_size()
}

/// What a [`UdpSender`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendStats {
    /// Datagrams handed to the kernel.
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Datagrams the kernel refused (dropped, like a loss on the wire).
    pub errors: u64,
}

/// A transfer for the sending loop: its id and where its bytes are read.
pub type Submission = (u64, Box<dyn TransferSource>);

/// Sends a [`Sender`]'s datagrams to one address, paced, with heartbeats on a timer.
#[derive(Debug)]
pub struct UdpSender {
    socket: UdpSocket,
    peer: SocketAddr,
    beat_every: Duration,
    stats: SendStats,
}

impl UdpSender {
    /// Sends from `socket` (unconnected) to `peer`, a heartbeat every `beat_every`.
    pub fn new(socket: UdpSocket, peer: SocketAddr, beat_every: Duration) -> Self {
        Self {
            socket,
            peer,
            beat_every,
            stats: SendStats::default(),
        }
    }

    fn send(&mut self, datagram: &[u8]) {
        match self.socket.send_to(datagram, self.peer) {
            Ok(n) => {
                self.stats.datagrams += 1;
                self.stats.bytes += n as u64;
            }
            Err(_) => self.stats.errors += 1,
        }
    }

    /// Sends until `inbox` is closed and every transfer is sent, taking new transfers from it
    /// as they come; waits for the pacer by sleeping.
    pub fn run(
        &mut self,
        sender: &mut Sender,
        pacer: &mut Pacer,
        clock: &dyn Clock,
        inbox: &Inbox<Submission>,
    ) -> Result<SendStats, LinkError> {
        self.run_with(sender, pacer, clock, inbox, |_| Ok(()))
    }

    /// [`run`](Self::run), telling `on_sent` the id of each transfer whose last datagram was
    /// sent (a spool drops it then); an error from it stops the loop.
    pub fn run_with(
        &mut self,
        sender: &mut Sender,
        pacer: &mut Pacer,
        clock: &dyn Clock,
        inbox: &Inbox<Submission>,
        mut on_sent: impl FnMut(u64) -> Result<(), LinkError>,
    ) -> Result<SendStats, LinkError> {
        let mut out = Vec::new();
        let mut last_beat = clock.now();
        let mut open = true;
        loop {
            while open {
                match inbox.try_recv() {
                    Ok((id, source)) => sender.submit(id, source)?,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            let now = clock.now();
            if now.saturating_since(last_beat) >= self.beat_every {
                last_beat = now;
                sender.heartbeat(&mut out)?;
                self.paced(pacer, clock, &out);
            }
            if let Some(sent) = sender.next_datagram(&mut out)? {
                self.paced(pacer, clock, &out);
                if sent.finished {
                    on_sent(sent.transfer)?;
                }
            } else if !open {
                break;
            } else if let Ok((id, source)) = inbox.recv_timeout(self.beat_every) {
                sender.submit(id, source)?;
            }
        }
        sender.heartbeat(&mut out)?;
        self.paced(pacer, clock, &out);
        Ok(self.stats)
    }

    fn paced(&mut self, pacer: &mut Pacer, clock: &dyn Clock, datagram: &[u8]) {
        while let Err(wait) = pacer.try_send(clock, datagram.len()) {
            std::thread::sleep(wait);
        }
        self.send(datagram);
    }
}

/// Reads datagrams from a socket into an [`Assembler`], polling it for losses and silence.
#[derive(Debug)]
pub struct UdpReceiver {
    socket: UdpSocket,
    poll_every: Duration,
}

impl UdpReceiver {
    /// Reads from `socket`, waking at least every `poll_every` to report losses and silence.
    pub fn new(socket: UdpSocket, poll_every: Duration) -> io::Result<Self> {
        socket.set_read_timeout(Some(poll_every.max(Duration::from_millis(1))))?;
        Ok(Self { socket, poll_every })
    }

    /// Hands every arrival to `on` until it says stop.
    pub fn run(
        &mut self,
        asm: &mut Assembler,
        clock: &dyn Clock,
        mut on: impl FnMut(Arrival) -> ControlFlow<()>,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; 65_536];
        let mut arrivals = Vec::new();
        let mut last_poll = clock.now();
        loop {
            match self.socket.recv_from(&mut buf) {
                Ok((n, _)) => {
                    asm.receive(buf.get(..n).unwrap_or_default(), clock.now(), &mut arrivals);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            let now = clock.now();
            if now.saturating_since(last_poll) >= self.poll_every {
                last_poll = now;
                asm.poll(now, &mut arrivals);
            }
            for a in arrivals.drain(..) {
                if on(a).is_break() {
                    return Ok(());
                }
            }
        }
    }
}
