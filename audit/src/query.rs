//! Searching events and the JSON lines of `search` and `export`. Free of I/O.

use serde::{Deserialize, Serialize};
use tianping_core::UnixTime;

use crate::event::Event;
use crate::merkle::Hash;

/// What to look for; every field that is set must match (times are inclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// The actor, exactly.
    pub actor: Option<String>,
    /// The action, exactly.
    pub action: Option<String>,
    /// The outcome, exactly.
    pub outcome: Option<String>,
    /// The object, exactly.
    pub object: Option<String>,
    /// The flow, exactly.
    pub flow: Option<String>,
    /// Not before this time.
    pub since: Option<UnixTime>,
    /// Not after this time.
    pub until: Option<UnixTime>,
}

impl Query {
    /// Whether `e` matches every set field.
    pub fn matches(&self, e: &Event) -> bool {
        fn eq(want: &Option<String>, got: &str) -> bool {
            want.as_deref().is_none_or(|w| w == got)
        }
        eq(&self.actor, &e.actor)
            && eq(&self.action, &e.action)
            && eq(&self.outcome, &e.outcome)
            && eq(&self.object, &e.object)
            && eq(&self.flow, &e.flow)
            && self.since.is_none_or(|t| e.time >= t)
            && self.until.is_none_or(|t| e.time <= t)
    }
}

/// One entry of the log as `search` and `export` print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Its index.
    pub index: u64,
    /// Its leaf hash.
    #[serde(with = "crate::hexhash")]
    pub leaf: Hash,
    /// The event.
    pub event: Event,
}

/// What `append` returns: where the event is, once it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The event's index in the log.
    pub index: u64,
    /// Its leaf hash.
    #[serde(with = "crate::hexhash")]
    pub leaf: Hash,
}
