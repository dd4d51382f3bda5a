//! The loops the exchange daemons run (feature `daemon`): the spool over a [`UdpSender`], and
//! a [`UdpReceiver`] into the store; and the daemons' own loops, [`run_sender`] and
//! [`run_receiver`], which keep a [`SendStatus`] / [`ReceiveStatus`] (their counters on the
//! admin listener's `/metrics`, their state on the control socket's status), stop when told,
//! retain what they sent, and follow a receiver that moves.

mod receive;
mod send;

pub use receive::{
    LinkEnd, RECENT_IDS, ReceiveDetail, ReceiveStatus, receive_into, run_receiver,
    run_receiver_reporting,
};
pub use send::{SendOptions, SendStatus, run_sender, send_spooled};

/// A count as a gauge's value.
pub(crate) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
