//! Reconciling the two sides of one-way links (DESIGN §7): every transfer a zone's exchange
//! sender decided, set against what the receivers of the zones it sends to recorded, and what
//! those receivers recorded that the sender never decided. Free of I/O: it takes the logs'
//! events, the time and each link's retention.
//!
//! The sender writes `transfer` (its decision: `allow` spooled on a link, with the `link`,
//! `epoch` and `link_transfer` attributes; `deny` refused with its reason, or held for
//! approvals with `held` = `true`), `transfer.held` and `transfer.resent` (a link transfer
//! `from` sent again as `to_link_transfer`). A receiver writes `transfer.received`,
//! `transfer.refused` and `transfer.delivered` under the transfer id, and `transfer.lost` (and
//! a refusal on the link before the header checked) under the link and the link transfer only:
//! those are matched to a transfer through the sender's `link_transfer` and resends.
//!
//! Each transfer the sender decided ends in one [`TransferState`]: the receiver's delivery wins
//! over its refusal (a replayed copy refused after the first was delivered), a refusal over a
//! reception, a reception over a loss; a loss of a copy that was resent afterwards no longer
//! counts. A transfer spooled and never seen since is in flight while the link still retains
//! it, missing after. A receiver's record of a transfer of the sending zone (by id, or on one of
//! its links) that the sender never spooled is [`TransferState::Unexpected`]: it must never
//! happen.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Serialize, Serializer};
use tianping_core::UnixTime;

use crate::event::Event;

/// Where a transfer stands once both sides' logs are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransferState {
    /// The receiver delivered it to its service.
    Delivered,
    /// The receiving zone refused it (its reason).
    RefusedByReceiver,
    /// The sending zone refused it (its reason); nothing was spooled.
    RefusedBySender,
    /// The sender holds it until its approvals are met; nothing was spooled yet.
    Held,
    /// The receiver reported it lost on the link (its reason).
    Lost,
    /// Received and not yet delivered, or spooled and not yet received while the link still
    /// retains it.
    InFlight,
    /// Spooled, never received, and nothing reported it lost, although the link's retention
    /// has passed.
    Missing,
    /// Recorded by a receiver, never spooled by the sender: this must never happen.
    Unexpected,
}

impl TransferState {
    /// Every state, in the order summaries list them.
    pub const ALL: [Self; 8] = [
        Self::Delivered,
        Self::RefusedByReceiver,
        Self::RefusedBySender,
        Self::Held,
        Self::Lost,
        Self::InFlight,
        Self::Missing,
        Self::Unexpected,
    ];

    /// Its name in JSON (`refused-by-receiver`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::RefusedByReceiver => "refused-by-receiver",
            Self::RefusedBySender => "refused-by-sender",
            Self::Held => "held",
            Self::Lost => "lost",
            Self::InFlight => "in-flight",
            Self::Missing => "missing",
            Self::Unexpected => "unexpected",
        }
    }

    /// Its name for people (`refused by the receiver`).
    pub fn words(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::RefusedByReceiver => "refused by the receiver",
            Self::RefusedBySender => "refused by the sender",
            Self::Held => "held",
            Self::Lost => "lost",
            Self::InFlight => "in flight",
            Self::Missing => "missing",
            Self::Unexpected => "unexpected",
        }
    }

    /// Whether it means the two logs disagree: missing or unexpected.
    pub fn is_discrepancy(self) -> bool {
        matches!(self, Self::Missing | Self::Unexpected)
    }
}

impl std::fmt::Display for TransferState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn ms<S: Serializer>(t: &Option<UnixTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_u64(t.as_millis()),
        None => s.serialize_none(),
    }
}

/// One transfer as the reconciliation reports it (the JSON line of `audit reconcile --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransferLine {
    /// The transfer id `<zone>:<sequence>`; `None` for a refusal before the sender gave one, or
    /// a receiver's record of a link transfer that names none.
    pub transfer: Option<String>,
    /// Where it stands.
    pub state: TransferState,
    /// Its flow.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub flow: String,
    /// Its kind.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The receiving zone.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub to: String,
    /// The link its last copy was sent on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<u32>,
    /// Its last copy's id on that link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_transfer: Option<u64>,
    /// When the sender decided it (milliseconds since the epoch).
    #[serde(serialize_with = "ms", skip_serializing_if = "Option::is_none")]
    pub decided: Option<UnixTime>,
    /// When the event that settled its state was recorded: delivered, refused, lost or
    /// received (the decision, for the sender's refusals and held transfers).
    #[serde(serialize_with = "ms", skip_serializing_if = "Option::is_none")]
    pub time: Option<UnixTime>,
    /// The service it was delivered to.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// Why it was refused, lost, held, missing or unexpected.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The hash of its content.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub content_hash: String,
    /// What else the logs say of it (resent, received twice, a replay refused...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What to reconcile, and the time and retention that tell in flight from missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconcile {
    /// The sending zone; default the zone of the sender's first decision.
    pub zone: Option<String>,
    /// The time the logs are read at.
    pub now: UnixTime,
    /// How long each link's sender retains a sent transfer, by link id.
    pub retain: BTreeMap<u32, Duration>,
    /// The retention of a link `retain` does not name.
    pub default_retain: Duration,
    /// Only transfers of this flow.
    pub flow: Option<String>,
    /// Only transfers decided at or after this time (an unexpected one: first recorded).
    pub since: Option<UnixTime>,
    /// Only transfers decided at or before this time.
    pub until: Option<UnixTime>,
}

/// The reconciliation of one sender's log with its receivers' logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    /// The sending zone (`None` when neither the options nor the sender's log named one).
    pub zone: Option<String>,
    /// Every transfer, the sender's in the order it decided them, then the unexpected ones in
    /// the order the receivers recorded them.
    pub lines: Vec<TransferLine>,
}

impl Reconciliation {
    /// How many transfers are in `state`.
    pub fn count(&self, state: TransferState) -> usize {
        self.lines.iter().filter(|l| l.state == state).count()
    }

    /// Whether nothing is missing or unexpected.
    pub fn is_clean(&self) -> bool {
        !self.lines.iter().any(|l| l.state.is_discrepancy())
    }

    /// The summary line: how many transfers and how many in each state.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = TransferState::ALL
            .iter()
            .map(|s| format!("{} {}", self.count(*s), s.words()))
            .collect();
        let mut line = format!("{} transfers: {}", self.lines.len(), parts.join(", "));
        if self.count(TransferState::Unexpected) > 0 {
            line.push_str(
                "; a receiver recorded transfers the sender never spooled: this must never happen",
            );
        }
        if self.count(TransferState::Missing) > 0 {
            line.push_str(
                "; missing transfers were spooled, never received and never reported lost",
            );
        }
        line
    }
}

/// One copy of a transfer on a link: the first send or a resend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    link: u32,
    epoch: Option<u64>,
    link_transfer: u64,
    time: UnixTime,
}

/// What the sender decided.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Spooled,
    Held(String),
    Refused(String),
    /// Only a receiver recorded it.
    None,
}

/// What a receiver recorded of one transfer.
#[derive(Debug, Clone, Default)]
struct Seen {
    received: Vec<UnixTime>,
    delivered: Vec<(UnixTime, String)>,
    refused: Vec<(UnixTime, String)>,
    /// The link transfer lost (when the event names it), when, why.
    lost: Vec<(Option<u64>, UnixTime, String)>,
    first: Option<UnixTime>,
}

#[derive(Debug, Clone)]
struct Entry {
    transfer: Option<String>,
    decision: Decision,
    flow: String,
    kind: String,
    to: String,
    content_hash: String,
    decided: Option<UnixTime>,
    copies: Vec<Sent>,
    seen: Seen,
    notes: Vec<String>,
}

impl Entry {
    fn new(transfer: Option<String>, decision: Decision) -> Self {
        Self {
            transfer,
            decision,
            flow: String::new(),
            kind: String::new(),
            to: String::new(),
            content_hash: String::new(),
            decided: None,
            copies: Vec::new(),
            seen: Seen::default(),
            notes: Vec::new(),
        }
    }

    fn fill_from(&mut self, e: &Event) {
        fn set(field: &mut String, value: &str) {
            if field.is_empty() {
                value.clone_into(field);
            }
        }
        set(&mut self.flow, &e.flow);
        set(&mut self.kind, &e.kind);
        set(&mut self.content_hash, &e.content_hash);
        if let Some(to) = e.attributes.get("to") {
            set(&mut self.to, to);
        }
    }
}

fn attr<T: std::str::FromStr>(e: &Event, key: &str) -> Option<T> {
    e.attributes.get(key).and_then(|v| v.parse().ok())
}

/// The zone part of a transfer id `<zone>:<sequence>`.
fn zone_of(transfer_id: &str) -> Option<&str> {
    transfer_id.rsplit_once(':').map(|(zone, _)| zone)
}

/// A duration for people: `90s`, `12m`, `36h`, `3d`.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A copy's epoch (when the sender's log names it) and the entry it is a copy of.
type CopyOf = (Option<u64>, usize);

/// The entries, by key, in the order they were first seen.
#[derive(Debug, Default)]
struct Book {
    entries: Vec<Entry>,
    by_id: BTreeMap<String, usize>,
    /// (link, link transfer) → (epoch, entry) of every copy the sender sent.
    copies: BTreeMap<(u32, u64), Vec<CopyOf>>,
    /// (link, link transfer) → the unexpected entry of a receiver's record naming no id.
    strays: BTreeMap<(u32, u64), usize>,
}

impl Book {
    fn push(&mut self, entry: Entry) -> usize {
        let at = self.entries.len();
        if let Some(id) = &entry.transfer {
            self.by_id.insert(id.clone(), at);
        }
        self.entries.push(entry);
        at
    }

    /// The entry of transfer `id`, made with `decision` if there is none.
    fn by_id(&mut self, id: &str, decision: Decision) -> usize {
        match self.by_id.get(id) {
            Some(at) => *at,
            None => self.push(Entry::new(Some(id.to_owned()), decision)),
        }
    }

    fn entry(&mut self, at: usize) -> Option<&mut Entry> {
        self.entries.get_mut(at)
    }

    fn add_copy(&mut self, at: usize, copy: Sent) {
        self.copies
            .entry((copy.link, copy.link_transfer))
            .or_default()
            .push((copy.epoch, at));
        if let Some(entry) = self.entry(at) {
            entry.copies.push(copy);
        }
    }

    /// The entry whose copy was `link_transfer` on `link` (in `epoch`, when known; else the
    /// latest copy of that number).
    fn by_copy(&self, link: u32, link_transfer: u64, epoch: Option<u64>) -> Option<usize> {
        let candidates = self.copies.get(&(link, link_transfer))?;
        candidates
            .iter()
            .rev()
            .find(|(e, _)| epoch.is_none() || e.is_none() || *e == epoch)
            .map(|(_, at)| *at)
    }

    fn sender(&mut self, e: &Event) {
        let id = (!e.transfer_id.is_empty()).then(|| e.transfer_id.clone());
        match e.action.as_str() {
            "transfer" => self.decision(e, id),
            "transfer.held" => {
                if let Some(id) = id {
                    let at = self.by_id(&id, Decision::Held(String::new()));
                    if let Some(entry) = self.entry(at) {
                        if entry.decided.is_none() {
                            entry.decided = Some(e.time);
                        }
                        entry.fill_from(e);
                    }
                }
            }
            "transfer.resent" => self.resent(e),
            _ => {}
        }
    }

    fn decision(&mut self, e: &Event, id: Option<String>) {
        let spooled = matches!(e.outcome.as_str(), "allow" | "ok");
        let held = !spooled && e.attributes.get("held").is_some_and(|v| v == "true");
        let at = match &id {
            Some(id) => self.by_id(id, Decision::None),
            // a refusal before admission has no id: a line of its own
            None => self.push(Entry::new(None, Decision::None)),
        };
        let Some(entry) = self.entry(at) else { return };
        entry.fill_from(e);
        let before = std::mem::replace(&mut entry.decision, Decision::None);
        entry.decision = match (before, spooled, held) {
            (Decision::None, true, _) => Decision::Spooled,
            (Decision::None, false, true) => Decision::Held(e.reason.clone()),
            (Decision::None, false, false) => Decision::Refused(e.reason.clone()),
            (Decision::Held(_), true, _) => {
                entry.notes.push("held for approval, then released".into());
                Decision::Spooled
            }
            (Decision::Held(r), false, _) => Decision::Held(r),
            (Decision::Spooled, true, _) => {
                entry.notes.push(format!(
                    "the sender decided it again at {} ms",
                    e.time.as_millis()
                ));
                Decision::Spooled
            }
            (Decision::Spooled, false, _) => {
                entry
                    .notes
                    .push(format!("the sender also refused it: {}", e.reason));
                Decision::Spooled
            }
            (d @ Decision::Refused(_), _, _) => {
                entry.notes.push("the sender decided it again".into());
                d
            }
        };
        if entry.decided.is_none() {
            entry.decided = Some(e.time);
        }
        if spooled
            && let (Some(link), Some(link_transfer)) = (attr(e, "link"), attr(e, "link_transfer"))
        {
            let copy = Sent {
                link,
                epoch: attr(e, "epoch"),
                link_transfer,
                time: e.time,
            };
            self.add_copy(at, copy);
        }
    }

    fn resent(&mut self, e: &Event) {
        let (Some(link), Some(from), Some(to)) = (
            attr::<u32>(e, "link"),
            attr::<u64>(e, "from"),
            attr::<u64>(e, "to_link_transfer"),
        ) else {
            return;
        };
        let epoch = attr(e, "epoch");
        let Some(at) = self.by_copy(link, from, epoch) else {
            return;
        };
        self.add_copy(
            at,
            Sent {
                link,
                epoch,
                link_transfer: to,
                time: e.time,
            },
        );
        if let Some(entry) = self.entry(at) {
            entry
                .notes
                .push(format!("link transfer {from} resent as {to}"));
        }
    }

    /// Whether the sender's log shows a copy on `link`.
    fn sends_on(&self, link: u32) -> bool {
        self.copies
            .range((link, 0)..=(link, u64::MAX))
            .next()
            .is_some()
    }

    fn receiver(&mut self, zone: Option<&str>, e: &Event) {
        let action = e.action.as_str();
        if !matches!(
            action,
            "transfer.received" | "transfer.refused" | "transfer.delivered" | "transfer.lost"
        ) {
            return;
        }
        let link = attr::<u32>(e, "link");
        let link_transfer = attr::<u64>(e, "link_transfer");
        let at = if e.transfer_id.is_empty() {
            let (Some(link), Some(lt)) = (link, link_transfer) else {
                return;
            };
            match self.by_copy(link, lt, attr(e, "epoch")) {
                Some(at) => at,
                None if self.sends_on(link) => match self.strays.get(&(link, lt)) {
                    Some(at) => *at,
                    None => {
                        let at = self.push(Entry::new(None, Decision::None));
                        self.strays.insert((link, lt), at);
                        at
                    }
                },
                // another zone's link
                None => return,
            }
        } else {
            if zone.is_some_and(|z| zone_of(&e.transfer_id) != Some(z)) {
                return; // another zone's transfer
            }
            self.by_id(&e.transfer_id, Decision::None)
        };
        let Some(entry) = self.entry(at) else { return };
        if matches!(entry.decision, Decision::None) {
            entry.fill_from(e);
            if entry.to.is_empty() {
                e.zone.clone_into(&mut entry.to);
            }
            if entry.copies.is_empty()
                && let (Some(link), Some(lt)) = (link, link_transfer)
            {
                entry.copies.push(Sent {
                    link,
                    epoch: None,
                    link_transfer: lt,
                    time: e.time,
                });
            }
        }
        let seen = &mut entry.seen;
        seen.first.get_or_insert(e.time);
        match action {
            "transfer.received" => seen.received.push(e.time),
            "transfer.delivered" => {
                let service = e.attributes.get("service").cloned().unwrap_or_default();
                seen.delivered.push((e.time, service));
            }
            "transfer.refused" => seen.refused.push((e.time, e.reason.clone())),
            _ => seen.lost.push((link_transfer, e.time, e.reason.clone())),
        }
    }
}

/// The line of one entry.
fn settle(entry: Entry, options: &Reconcile) -> TransferLine {
    let last = entry.copies.last().copied();
    let mut line = TransferLine {
        transfer: entry.transfer,
        state: TransferState::Missing,
        flow: entry.flow,
        kind: entry.kind,
        to: entry.to,
        link: last.map(|c| c.link),
        link_transfer: last.map(|c| c.link_transfer),
        decided: entry.decided,
        time: None,
        service: String::new(),
        reason: String::new(),
        content_hash: entry.content_hash,
        notes: entry.notes,
    };
    let seen = entry.seen;
    let received = seen.received.len();
    if received > 1 {
        line.notes.push(format!("received {received} times"));
    }
    if seen.delivered.len() > 1 {
        line.notes
            .push(format!("delivered {} times", seen.delivered.len()));
    }
    let first_delivered = seen.delivered.first().cloned();
    let first_refused = seen.refused.first().cloned();
    // a loss counts only for the copy sent last: a copy lost and resent is sent again
    let lost = seen
        .lost
        .iter()
        .rev()
        .find(|(lt, _, _)| lt.is_none() || *lt == line.link_transfer || last.is_none())
        .cloned();
    for (lt, _, why) in &seen.lost {
        if let Some(n) = lt
            && *lt != line.link_transfer
            && last.is_some()
        {
            line.notes
                .push(format!("link transfer {n} lost on the link ({why})"));
        }
    }
    match &entry.decision {
        Decision::Refused(reason) | Decision::Held(reason) if seen.first.is_some() => {
            line.state = TransferState::Unexpected;
            line.time = seen.first;
            let what = match entry.decision {
                Decision::Held(_) => "holds it for approval",
                _ => "refused it",
            };
            line.reason = format!("the sender {what} ({reason}), yet a receiver recorded it");
            return line;
        }
        Decision::Refused(reason) => {
            line.state = TransferState::RefusedBySender;
            line.time = line.decided;
            reason.clone_into(&mut line.reason);
            return line;
        }
        Decision::Held(reason) => {
            line.state = TransferState::Held;
            line.time = line.decided;
            reason.clone_into(&mut line.reason);
            return line;
        }
        Decision::None => {
            line.state = TransferState::Unexpected;
            line.time = seen.first;
            line.reason = "the sender's log has no decision of it".into();
            if let Some((_, service)) = &first_delivered {
                line.notes.push(format!("delivered to {service}"));
                line.service.clone_from(service);
            } else if let Some((_, why)) = &first_refused {
                line.notes.push(format!("refused by the receiver: {why}"));
            } else if let Some((_, _, why)) = &lost {
                line.notes.push(format!("lost on the link ({why})"));
            }
            return line;
        }
        Decision::Spooled => {}
    }
    if let Some((time, service)) = first_delivered {
        line.state = TransferState::Delivered;
        line.time = Some(time);
        line.service = service;
        for (_, why) in &seen.refused {
            line.notes.push(format!("a copy also refused: {why}"));
        }
    } else if let Some((time, reason)) = first_refused {
        line.state = TransferState::RefusedByReceiver;
        line.time = Some(time);
        line.reason = reason;
    } else if let Some(time) = seen.received.last() {
        line.state = TransferState::InFlight;
        line.time = Some(*time);
        line.reason = "received, not yet delivered".into();
    } else if let Some((_, time, why)) = lost {
        line.state = TransferState::Lost;
        line.time = Some(time);
        line.reason = why;
    } else {
        let since = last.map(|c| c.time).or(line.decided).unwrap_or(options.now);
        let retain = last
            .and_then(|c| options.retain.get(&c.link).copied())
            .unwrap_or(options.default_retain);
        let age = options.now.saturating_since(since);
        if age < retain {
            line.state = TransferState::InFlight;
            line.reason = format!("spooled {} ago, not yet received", span(age));
        } else {
            line.state = TransferState::Missing;
            line.reason = format!(
                "spooled {} ago, never received and never reported lost (the link retains {})",
                span(age),
                span(retain)
            );
        }
    }
    line
}

impl Reconcile {
    /// Options for reconciling everything at `now`, every link retaining `default_retain`.
    pub fn new(now: UnixTime, default_retain: Duration) -> Self {
        Self {
            zone: None,
            now,
            retain: BTreeMap::new(),
            default_retain,
            flow: None,
            since: None,
            until: None,
        }
    }

    /// Reconciles the sender's events with the receivers' (the logs of every zone it sends
    /// to, in any order, one after the other).
    ///
    /// The options' flow and times select lines after everything is matched, so a transfer
    /// decided before `since` and delivered after it is neither reported nor unexpected.
    pub fn run(
        &self,
        sender: impl IntoIterator<Item = Event>,
        receivers: impl IntoIterator<Item = Event>,
    ) -> Reconciliation {
        let mut book = Book::default();
        let mut zone = self.zone.clone();
        for e in sender {
            if zone.is_none() && e.action == "transfer" && !e.zone.is_empty() {
                zone = Some(e.zone.clone());
            }
            book.sender(&e);
        }
        for e in receivers {
            book.receiver(zone.as_deref(), &e);
        }
        let lines = book
            .entries
            .into_iter()
            .map(|entry| settle(entry, self))
            .filter(|l| self.selects(l))
            .collect();
        Reconciliation { zone, lines }
    }

    fn selects(&self, l: &TransferLine) -> bool {
        let at = match l.state {
            TransferState::Unexpected => l.decided.or(l.time),
            _ => l.decided,
        };
        self.flow.as_deref().is_none_or(|f| f == l.flow)
            && self.since.is_none_or(|s| at.is_some_and(|t| t >= s))
            && self.until.is_none_or(|u| at.is_some_and(|t| t <= u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const T0: u64 = 1_764_000_000_000;

    fn at(s: u64) -> UnixTime {
        UnixTime::from_millis(T0 + s * 1000)
    }

    fn ev(s: u64, zone: &str, action: &str, outcome: &str, id: &str) -> Event {
        let mut e = Event::new(at(s), action);
        e.zone = zone.into();
        e.outcome = outcome.into();
        e.transfer_id = id.into();
        e.flow = "filing".into();
        e.kind = "text".into();
        e
    }

    fn with(mut e: Event, attrs: &[(&str, &str)]) -> Event {
        for (k, v) in attrs {
            e.attributes.insert((*k).into(), (*v).into());
        }
        e
    }

    /// The sender's `transfer` allow of `id` as link transfer `lt` on link 7, epoch 1.
    fn spooled(s: u64, id: &str, lt: u64) -> Event {
        let lt = lt.to_string();
        with(
            ev(s, "internet", "transfer", "allow", id),
            &[
                ("link", "7"),
                ("epoch", "1"),
                ("link_transfer", &lt),
                ("to", "private"),
            ],
        )
    }

    fn refused_by_sender(s: u64, reason: &str) -> Event {
        let mut e = ev(s, "internet", "transfer", "deny", "");
        e.reason = reason.into();
        e
    }

    fn rx(s: u64, action: &str, id: &str, lt: u64) -> Event {
        let outcome = if action == "transfer.refused" || action == "transfer.lost" {
            "fail"
        } else {
            "ok"
        };
        let lt = lt.to_string();
        with(
            ev(s, "private", action, outcome, id),
            &[("link", "7"), ("link_transfer", &lt)],
        )
    }

    fn delivered(s: u64, id: &str, lt: u64) -> Event {
        with(
            rx(s, "transfer.delivered", id, lt),
            &[("service", "filing-intake")],
        )
    }

    fn refused(s: u64, id: &str, lt: u64, reason: &str) -> Event {
        let mut e = rx(s, "transfer.refused", id, lt);
        e.reason = reason.into();
        e
    }

    fn lost(s: u64, lt: u64, reason: &str) -> Event {
        let mut e = with(rx(s, "transfer.lost", "", lt), &[("epoch", "1")]);
        e.flow.clear();
        e.kind.clear();
        e.reason = reason.into();
        e
    }

    fn options(now_s: u64) -> Reconcile {
        Reconcile::new(at(now_s), 24 * HOUR)
    }

    fn line<'a>(r: &'a Reconciliation, id: &str) -> &'a TransferLine {
        r.lines
            .iter()
            .find(|l| l.transfer.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no line of {id}: {:#?}", r.lines))
    }

    #[test]
    fn every_state_from_both_logs() {
        let mut held = with(
            ev(9, "internet", "transfer", "deny", "internet:6"),
            &[("held", "true")],
        );
        held.reason = "held: 2 more approvals needed".into();
        let sender = vec![
            spooled(1, "internet:1", 1),
            spooled(2, "internet:2", 2),
            refused_by_sender(3, "flow `filing` denies kind `pdf`"),
            spooled(4, "internet:3", 3),
            spooled(5, "internet:4", 4),
            spooled(6, "internet:5", 5),
            held,
            spooled(10, "internet:7", 6),
        ];
        let receiver = vec![
            rx(20, "transfer.received", "internet:1", 1),
            delivered(21, "internet:1", 1),
            rx(22, "transfer.received", "internet:2", 2),
            refused(
                23,
                "internet:2",
                2,
                "no flow `filing` in this zone's policy",
            ),
            lost(24, 3, "never-seen"),
            rx(25, "transfer.received", "internet:4", 4),
            // a transfer of the sending zone the sender never decided, and one on its link
            rx(26, "transfer.received", "internet:99", 9),
            delivered(27, "internet:99", 9),
            lost(28, 12, "incomplete"),
            // another zone's transfer and another link's loss are not this sender's
            rx(29, "transfer.received", "mobile:1", 1),
            with(lost(30, 1, "timeout"), &[("link", "8")]),
        ];
        // at `now`, internet:5 and internet:7 were spooled about an hour ago
        let mut o = options(10 + 3600);
        o.retain.insert(7, 2 * HOUR);
        let r = o.run(sender.clone(), receiver.clone());
        assert_eq!(r.zone.as_deref(), Some("internet"));

        let l = line(&r, "internet:1");
        assert_eq!(l.state, TransferState::Delivered);
        assert_eq!(
            (l.service.as_str(), l.time, l.decided),
            ("filing-intake", Some(at(21)), Some(at(1)))
        );
        assert_eq!((l.link, l.link_transfer), (Some(7), Some(1)));
        let l = line(&r, "internet:2");
        assert_eq!(l.state, TransferState::RefusedByReceiver);
        assert_eq!(l.reason, "no flow `filing` in this zone's policy");
        let by_sender: Vec<_> = r
            .lines
            .iter()
            .filter(|l| l.state == TransferState::RefusedBySender)
            .collect();
        assert_eq!(by_sender.len(), 1);
        assert_eq!(by_sender[0].transfer, None);
        assert_eq!(by_sender[0].reason, "flow `filing` denies kind `pdf`");
        let l = line(&r, "internet:3");
        assert_eq!(l.state, TransferState::Lost, "matched by its link transfer");
        assert_eq!((l.reason.as_str(), l.time), ("never-seen", Some(at(24))));
        assert_eq!(l.flow, "filing", "the sender's flow");
        let l = line(&r, "internet:4");
        assert_eq!(l.state, TransferState::InFlight);
        assert_eq!(l.reason, "received, not yet delivered");
        let l = line(&r, "internet:5");
        assert_eq!(l.state, TransferState::InFlight, "{l:?}");
        assert!(l.reason.starts_with("spooled 60m ago"), "{}", l.reason);
        assert_eq!(line(&r, "internet:6").state, TransferState::Held);
        let l = line(&r, "internet:7");
        assert_eq!(
            l.state,
            TransferState::InFlight,
            "an hour, under 2h retained"
        );
        // later, past the link's retention: missing
        let late = Reconcile {
            now: at(10 + 3 * 3600),
            ..o.clone()
        }
        .run(sender.clone(), receiver.clone());
        let l = line(&late, "internet:7");
        assert_eq!(l.state, TransferState::Missing);
        assert!(l.reason.contains("the link retains 2h"), "{}", l.reason);
        assert!(!late.is_clean());

        let u = line(&r, "internet:99");
        assert_eq!(u.state, TransferState::Unexpected);
        assert_eq!(
            (u.service.as_str(), u.time),
            ("filing-intake", Some(at(26)))
        );
        let stray: Vec<_> = r
            .lines
            .iter()
            .filter(|l| l.transfer.is_none() && l.state == TransferState::Unexpected)
            .collect();
        assert_eq!(stray.len(), 1, "{:#?}", r.lines);
        assert_eq!((stray[0].link, stray[0].link_transfer), (Some(7), Some(12)));
        assert!(
            r.lines
                .iter()
                .all(|l| l.transfer.as_deref() != Some("mobile:1"))
        );
        assert_eq!(r.lines.len(), 10, "{:#?}", r.lines);
        assert!(!r.is_clean(), "unexpected ones");
        assert_eq!(r.count(TransferState::Unexpected), 2);
        assert_eq!(
            r.summary(),
            "10 transfers: 1 delivered, 1 refused by the receiver, 1 refused by the sender, \
             1 held, 1 lost, 3 in flight, 0 missing, 2 unexpected; a receiver recorded \
             transfers the sender never spooled: this must never happen"
        );
        // the JSON line
        let json = serde_json::to_value(line(&r, "internet:1")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "transfer": "internet:1", "state": "delivered", "flow": "filing", "kind": "text",
                "to": "private", "link": 7, "link_transfer": 1, "decided": T0 + 1000,
                "time": T0 + 21_000, "service": "filing-intake",
            })
        );
        let json = serde_json::to_value(by_sender[0]).unwrap();
        assert_eq!(json["state"], "refused-by-sender");
        assert_eq!(json["transfer"], serde_json::Value::Null);

        // only the receivers' records of what was decided: clean, once nothing is missing
        let clean = o.run(sender, receiver.into_iter().take(6));
        assert!(clean.is_clean(), "{:#?}", clean.lines);
    }

    #[test]
    fn a_transfer_id_seen_twice_settles_once() {
        let mut held = with(
            ev(1, "internet", "transfer", "deny", "internet:1"),
            &[("held", "true")],
        );
        held.reason = "held: 1 more approvals needed".into();
        let sender = vec![
            held,
            spooled(2, "internet:1", 1), // released
            spooled(3, "internet:2", 2),
            with(
                ev(4, "internet", "transfer.resent", "ok", ""),
                &[
                    ("link", "7"),
                    ("epoch", "1"),
                    ("from", "2"),
                    ("to_link_transfer", "3"),
                ],
            ),
            spooled(5, "internet:3", 4),
            with(
                ev(6, "internet", "transfer.resent", "ok", ""),
                &[
                    ("link", "7"),
                    ("epoch", "1"),
                    ("from", "4"),
                    ("to_link_transfer", "5"),
                ],
            ),
        ];
        let receiver = vec![
            // delivered, then the same bundle replayed and refused
            rx(10, "transfer.received", "internet:1", 1),
            delivered(11, "internet:1", 1),
            rx(12, "transfer.received", "internet:1", 1),
            refused(13, "internet:1", 1, "replayed"),
            // lost on the link, resent, delivered under its new link transfer
            lost(14, 2, "never-seen"),
            rx(15, "transfer.received", "internet:2", 3),
            delivered(16, "internet:2", 3),
            // lost, resent, and the new copy not heard of yet
            lost(17, 4, "timeout"),
        ];
        let r = options(20).run(sender.clone(), receiver.clone());
        assert_eq!(r.lines.len(), 3, "{:#?}", r.lines);
        let l = line(&r, "internet:1");
        assert_eq!(l.state, TransferState::Delivered);
        assert_eq!(l.time, Some(at(11)), "the first delivery");
        assert_eq!(l.decided, Some(at(1)), "decided when it was held");
        assert!(l.notes.iter().any(|n| n == "received 2 times"), "{l:?}");
        assert!(l.notes.iter().any(|n| n.contains("replayed")), "{l:?}");
        assert!(l.notes.iter().any(|n| n.contains("released")), "{l:?}");
        let l = line(&r, "internet:2");
        assert_eq!(l.state, TransferState::Delivered);
        assert_eq!(l.link_transfer, Some(3), "its last copy");
        assert!(
            l.notes.iter().any(|n| n.contains("link transfer 2 lost")),
            "{l:?}"
        );
        let l = line(&r, "internet:3");
        assert_eq!(
            l.state,
            TransferState::InFlight,
            "resent after the loss: {l:?}"
        );
        assert_eq!(l.link_transfer, Some(5));
        assert!(r.is_clean());
        // the resent copy unheard of past the retention: missing, not lost
        let late = Reconcile::new(at(6 + 2 * 3600), HOUR).run(sender.clone(), receiver.clone());
        assert_eq!(line(&late, "internet:3").state, TransferState::Missing);
        // the same receiver's log read twice changes no state
        let twice = options(20).run(sender, receiver.iter().chain(&receiver).cloned());
        let states = |r: &Reconciliation| -> Vec<_> { r.lines.iter().map(|l| l.state).collect() };
        assert_eq!(states(&twice), states(&r));
        // a transfer the sender refused (or holds) that a receiver recorded is unexpected
        let mut held = with(
            ev(1, "internet", "transfer", "deny", "internet:8"),
            &[("held", "true")],
        );
        held.reason = "held".into();
        let r = options(20).run([held], [rx(10, "transfer.received", "internet:8", 1)]);
        assert_eq!(line(&r, "internet:8").state, TransferState::Unexpected);
    }

    #[test]
    fn flow_and_times_select_after_matching() {
        let mut other = spooled(50, "internet:2", 2);
        other.flow = "evidence".into();
        let sender = vec![spooled(1, "internet:1", 1), other];
        let receiver = vec![
            rx(100, "transfer.received", "internet:1", 1),
            delivered(101, "internet:1", 1),
            rx(102, "transfer.received", "internet:2", 2),
            delivered(103, "internet:2", 2),
        ];
        let mut o = options(200);
        o.since = Some(at(10));
        let r = o.run(sender.clone(), receiver.clone());
        // internet:1 was decided before `since`: neither reported nor unexpected
        assert_eq!(r.lines.len(), 1, "{:#?}", r.lines);
        assert_eq!(line(&r, "internet:2").state, TransferState::Delivered);
        let mut o = options(200);
        o.flow = Some("filing".into());
        o.until = Some(at(10));
        let r = o.run(sender.clone(), receiver.clone());
        assert_eq!(r.lines.len(), 1);
        assert_eq!(line(&r, "internet:1").state, TransferState::Delivered);
        // the zone named: the receivers' transfers of another zone are not unexpected
        let mut o = options(200);
        o.zone = Some("mobile".into());
        let r = o.run(sender, receiver);
        assert!(r.lines.iter().all(|l| l.state != TransferState::Unexpected));
        // an empty sender's log: nothing to say of anyone's transfers but its zone's
        let r = options(200).run([], [rx(1, "transfer.received", "internet:1", 1)]);
        assert_eq!(r.zone, None);
        assert_eq!(r.lines.len(), 1);
        assert_eq!(r.lines[0].state, TransferState::Unexpected);
    }

    #[test]
    fn several_receivers_each_on_its_link() {
        // internet sends to private on link 7 and to mobile on link 8
        let to_mobile = |s: u64, id: &str, lt: u64| {
            let mut e = spooled(s, id, lt);
            e.attributes.insert("link".into(), "8".into());
            e.attributes.insert("to".into(), "mobile".into());
            e
        };
        let on_8 = |mut e: Event| {
            e.zone = "mobile".into();
            e.attributes.insert("link".into(), "8".into());
            e
        };
        let sender = vec![
            spooled(1, "internet:1", 1),
            to_mobile(2, "internet:2", 1),
            to_mobile(3, "internet:3", 2),
            spooled(4, "internet:4", 2),
        ];
        let private = vec![
            rx(10, "transfer.received", "internet:1", 1),
            delivered(11, "internet:1", 1),
            // refused on the link before its header checked: no id, its link transfer only
            refused(12, "", 2, "bundle header: bad signature"),
        ];
        let mobile = vec![
            on_8(rx(10, "transfer.received", "internet:2", 1)),
            on_8(delivered(11, "internet:2", 1)),
            on_8(lost(12, 2, "incomplete")),
        ];
        let r = options(20).run(sender, private.into_iter().chain(mobile));
        assert_eq!(r.lines.len(), 4, "{:#?}", r.lines);
        assert_eq!(line(&r, "internet:1").state, TransferState::Delivered);
        let l = line(&r, "internet:2");
        assert_eq!(l.state, TransferState::Delivered);
        assert_eq!((l.link, l.to.as_str()), (Some(8), "mobile"));
        let l = line(&r, "internet:3");
        assert_eq!(l.state, TransferState::Lost, "link 8's transfer 2: {l:?}");
        assert_eq!(l.reason, "incomplete");
        let l = line(&r, "internet:4");
        assert_eq!(
            l.state,
            TransferState::RefusedByReceiver,
            "link 7's transfer 2"
        );
        assert_eq!(l.reason, "bundle header: bad signature");
        assert!(r.is_clean());
    }
}
