//! Restarts on the I/O-free link: a receiver that first saw a transfer mid-way, then a sender
//! restarted in a new epoch resending it in full; and a sender restarted with an empty spool
//! still naming the transfers it finished before.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::Duration;

use common::{Rng, Wire, outcome, run, start};
use tianping_core::Clock as _;
use tianping_crossdomain::{
    Datagram, LinkConfig, LinkEvent, LostReason, Receiver, ReceiverConfig, Sender, symbol_size_for,
};

const LINK: u32 = 5;
const BLOCK_SYMBOLS: u16 = 16;

fn config() -> LinkConfig {
    LinkConfig {
        repair_percent: 10,
        block_symbols: BLOCK_SYMBOLS,
        ..LinkConfig::new(LINK)
    }
}

/// A restarted receiver: its store says every id below 1 ended.
fn receiver() -> Receiver {
    Receiver::new(
        ReceiverConfig {
            lost_window: 256,
            ..ReceiverConfig::new(LINK)
        },
        Some(1),
    )
}

/// A transfer of `blocks` full blocks.
fn payload(seed: u64, blocks: usize) -> Vec<u8> {
    let symbol = usize::from(symbol_size_for(1500).unwrap());
    Rng::new(seed).bytes(blocks * usize::from(BLOCK_SYMBOLS) * symbol)
}

/// Sends transfer 1 in epoch 1, passing to `rx` only the symbols of the blocks `keep` takes
/// (and no heartbeat).
fn first_epoch(
    p: &[u8],
    rx: &mut Receiver,
    keep: impl Fn(u32) -> bool,
    events: &mut Vec<LinkEvent>,
) {
    let clock = start();
    let mut first = Sender::new(config(), 1).unwrap();
    first.submit(1, Box::new(p.to_vec())).unwrap();
    let mut out = Vec::new();
    while first.next_datagram(&mut out).unwrap().is_some() {
        if let Datagram::Symbol { symbol, .. } = Datagram::decode(&out).unwrap()
            && keep(symbol.block)
        {
            rx.receive(&out, clock.now(), events);
        }
    }
}

#[test]
fn a_transfer_first_seen_mid_way_is_received_when_a_restarted_sender_resends_it() {
    let p = payload(71, 10);
    let mut rx = receiver();
    let mut events = Vec::new();
    // blocks 2 to 6 of epoch 1: more later blocks than the receiver keeps open
    first_epoch(&p, &mut rx, |b| (2..=6).contains(&b), &mut events);
    assert!(outcome(&events).complete.is_empty());
    // the sender restarts and resends everything
    let mut second = Sender::new(config(), 2).unwrap();
    second.submit(1, Box::new(p.clone())).unwrap();
    let clock = start();
    clock.advance(Duration::from_secs(1));
    events.extend(run(&mut second, &mut rx, Wire::default(), 100, &clock));
    assert!(events.contains(&LinkEvent::Restarted {
        previous: 1,
        epoch: 2
    }));
    let o = outcome(&events);
    assert!(o.lost.is_empty(), "lost: {:?}", o.lost);
    assert!(o.complete[&1] == p, "transfer 1 differs");
    assert_eq!(rx.stats().completed, 1);
    assert_eq!(rx.in_flight(), 0);
    assert_eq!(rx.floor(), Some(2));
}

#[test]
fn blocks_handed_on_before_a_restart_are_not_handed_on_again() {
    let p = payload(72, 8);
    let mut rx = receiver();
    let mut events = Vec::new();
    // blocks 0 to 2 decode and are handed on, 5 and 6 wait; 3 and 4 never arrive
    first_epoch(&p, &mut rx, |b| b <= 2 || (5..=6).contains(&b), &mut events);
    let handed = events
        .iter()
        .filter(|e| matches!(e, LinkEvent::Data { .. }))
        .count();
    assert_eq!(handed, 3);
    let mut second = Sender::new(config(), 2).unwrap();
    second.submit(1, Box::new(p.clone())).unwrap();
    let clock = start();
    events.extend(run(&mut second, &mut rx, Wire::default(), 100, &clock));
    // `outcome` checks the data is contiguous, in order, and ends once
    let o = outcome(&events);
    assert!(o.lost.is_empty(), "lost: {:?}", o.lost);
    assert!(o.complete[&1] == p, "transfer 1 differs");
    assert!(rx.stats().late >= 3 * u64::from(BLOCK_SYMBOLS));
}

#[test]
fn without_a_restart_the_needed_block_displaces_a_later_one() {
    // the same epoch: blocks 2 to 6 arrive, then the whole transfer again (a reordering far
    // beyond the usual, or a resend); the block the transfer waits for is never refused
    let p = payload(73, 10);
    let clock = start();
    let mut sender = Sender::new(config(), 1).unwrap();
    sender.submit(1, Box::new(p.clone())).unwrap();
    let mut sent = Vec::new();
    let mut out = Vec::new();
    while sender.next_datagram(&mut out).unwrap().is_some() {
        sent.push(out.clone());
    }
    let mut rx = receiver();
    let mut events = Vec::new();
    for d in &sent {
        if let Ok(Datagram::Symbol { symbol, .. }) = Datagram::decode(d)
            && (2..=6).contains(&symbol.block)
        {
            rx.receive(d, clock.now(), &mut events);
        }
    }
    for d in &sent {
        rx.receive(d, clock.now(), &mut events);
    }
    let o = outcome(&events);
    assert!(o.lost.is_empty(), "lost: {:?}", o.lost);
    assert!(o.complete[&1] == p, "transfer 1 differs");
}

#[test]
fn a_sender_restarted_with_an_empty_spool_names_what_it_finished_before() {
    let clock = start();
    let mut rx = receiver();
    let mut events = Vec::new();
    // transfers 1 and 2 were fully sent while the receiver was down; the spool's counter is at 2
    let mut sender = Sender::new(config(), 2).unwrap();
    sender.resume_after(2);
    assert_eq!(sender.counters().done_below, 3);
    assert_eq!(sender.counters().last_transfer, 2);
    let mut out = Vec::new();
    sender.heartbeat(&mut out).unwrap();
    rx.receive(&out, clock.now(), &mut events);
    clock.advance(Duration::from_secs(2));
    sender.heartbeat(&mut out).unwrap();
    rx.receive(&out, clock.now(), &mut events);
    let o = outcome(&events);
    assert_eq!(o.lost.get(&1), Some(&LostReason::NeverSeen));
    assert_eq!(o.lost.get(&2), Some(&LostReason::NeverSeen));
    assert_eq!(rx.floor(), Some(3));
    // the next id still has to grow past the counter, and then is received
    assert!(sender.submit(2, Box::new(vec![1u8; 10])).is_err());
    sender.submit(3, Box::new(vec![7u8; 3000])).unwrap();
    events.extend(run(&mut sender, &mut rx, Wire::default(), 100, &clock));
    let o = outcome(&events);
    assert_eq!(o.complete.get(&3), Some(&vec![7u8; 3000]));
}

#[test]
fn resuming_after_ids_below_spooled_ones_keeps_those_unfinished() {
    let mut sender = Sender::new(config(), 3).unwrap();
    sender.submit(4, Box::new(vec![1u8; 100])).unwrap();
    // the spool's counter is behind what was submitted: nothing changes
    sender.resume_after(3);
    assert_eq!(sender.counters().done_below, 4);
    assert_eq!(sender.counters().last_transfer, 4);
}
