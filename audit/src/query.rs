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
    /// The transfer id (`<zone>:<sequence>`), exactly.
    pub transfer: Option<String>,
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
            && eq(&self.transfer, &e.transfer_id)
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

/// An inclusion proof as `tianping audit prove --index` prints it; [`verify`](Self::verify)
/// needs nothing but this value (and, to trust `root`, a signed checkpoint of that size).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The entry's index.
    pub index: u64,
    /// The tree size.
    pub size: u64,
    /// The entry's leaf hash.
    #[serde(with = "crate::hexhash")]
    pub leaf: Hash,
    /// The root of the tree of `size` entries.
    #[serde(with = "crate::hexhash")]
    pub root: Hash,
    /// The audit path.
    #[serde(with = "crate::hexhash::list")]
    pub proof: Vec<Hash>,
    /// The signed checkpoint of that size, when the log has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

impl InclusionProof {
    /// Checks the path from the leaf to the root.
    pub fn verify(&self) -> Result<(), crate::ProofError> {
        crate::verify_inclusion(&self.leaf, self.index, self.size, &self.proof, &self.root)
    }
}

/// A consistency proof as `tianping audit prove --from --to` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The older size.
    pub from: u64,
    /// The newer size.
    pub to: u64,
    /// The root at the older size.
    #[serde(with = "crate::hexhash")]
    pub old_root: Hash,
    /// The root at the newer size.
    #[serde(with = "crate::hexhash")]
    pub new_root: Hash,
    /// The proof.
    #[serde(with = "crate::hexhash::list")]
    pub proof: Vec<Hash>,
    /// The signed checkpoint of the older size, when the log has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_checkpoint: Option<String>,
    /// The signed checkpoint of the newer size, when the log has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_checkpoint: Option<String>,
}

impl ConsistencyProof {
    /// Checks that the newer tree extends the older one.
    pub fn verify(&self) -> Result<(), crate::ProofError> {
        crate::verify_consistency(
            self.from,
            self.to,
            &self.old_root,
            &self.new_root,
            &self.proof,
        )
    }
}
