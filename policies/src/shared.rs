//! A policy that can be replaced while readers decide: readers see the old or the new, never a mix.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tianping_core::PolicyHash;

use crate::check::{Checked, check};
use crate::model::Policy;

/// Why a new policy was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The new text has errors; the old policy stays in force.
    #[error("policy `{file}` has {count} error(s); the policy in force is unchanged")]
    Invalid {
        /// The file name.
        file: String,
        /// How many errors.
        count: usize,
        /// Everything the verifier found.
        checked: Box<Checked>,
    },
}

/// The policy in force, swapped atomically.
#[derive(Debug)]
pub struct SharedPolicy {
    current: ArcSwap<Policy>,
}

impl SharedPolicy {
    /// Starts with `policy` in force.
    pub fn new(policy: Policy) -> Self {
        Self {
            current: ArcSwap::from_pointee(policy),
        }
    }

    /// The policy in force; decide with it, it stays whole even if a new one is stored meanwhile.
    pub fn load(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Puts `policy` in force.
    pub fn store(&self, policy: Policy) {
        self.current.store(Arc::new(policy));
    }

    /// Checks `source` and, only if it has no error, puts it in force; returns the new hash.
    pub fn reload(&self, file: &str, source: &str) -> Result<PolicyHash, LoadError> {
        let checked = check(file, source);
        let count = checked.errors().count();
        if count > 0 {
            return Err(LoadError::Invalid {
                file: file.to_owned(),
                count,
                checked: Box::new(checked),
            });
        }
        let Some(p) = checked.into_policy() else {
            return Err(LoadError::Invalid {
                file: file.to_owned(),
                count: 0,
                checked: Box::new(check(file, source)),
            });
        };
        let hash = p.hash();
        self.store(p);
        Ok(hash)
    }
}
