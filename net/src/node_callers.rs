//! The control socket's verifier for the zone's own components: `node` tokens (ES256 with the
//! signer's chain in `x5c`, checked against the zone's trust bundle by `tianping-certs`) become
//! the signing node's identity; any other credential goes to the owner's verifier of people,
//! when it has one.

use std::sync::Arc;

use tianping_certs::{CourtIdentity, TokenKind, TokenVerifier};
use tianping_core::UnixTime;

use crate::caller::{CallerRefusal, CallerVerifier, Credential};

/// Verifies node tokens of one zone for one audience, and hands other credentials on.
///
/// A `Bearer` credential that is a node token is the calling component; a `Bearer` credential
/// that is not one (a person's token, from `tianping login`) and every `Tianping-Assertion` go to
/// the verifier given with [`NodeCallers::or`], and are refused without one.
pub struct NodeCallers {
    nodes: TokenVerifier,
    others: Option<Arc<dyn CallerVerifier>>,
}

impl std::fmt::Debug for NodeCallers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCallers")
            .field("nodes", &self.nodes)
            .field("others", &self.others.is_some())
            .finish()
    }
}

impl NodeCallers {
    /// Node tokens checked by `nodes`, which must take [`TokenKind::Node`] tokens.
    pub fn new(nodes: TokenVerifier) -> Result<Self, CallerRefusal> {
        if nodes.kind() != TokenKind::Node {
            return Err(CallerRefusal::Refused(format!(
                "a verifier of `{}` tokens cannot check node tokens",
                nodes.kind().as_str()
            )));
        }
        Ok(Self {
            nodes,
            others: None,
        })
    }

    /// Credentials that are not node tokens go to `others` (people, asserted users).
    pub fn or(mut self, others: Arc<dyn CallerVerifier>) -> Self {
        self.others = Some(others);
        self
    }
}

impl CallerVerifier for NodeCallers {
    fn verify(
        &self,
        credential: &Credential,
        now: UnixTime,
    ) -> Result<CourtIdentity, CallerRefusal> {
        let Credential::Bearer(token) = credential else {
            return self.hand_on(credential, now);
        };
        // The kind is read from the unverified header only to choose the verifier; the node
        // verifier then checks it again with everything else, so a token that says `node` gets
        // no second chance elsewhere.
        if typ_of(token.expose()).as_deref() != Some(TokenKind::Node.as_str()) {
            return self.hand_on(credential, now);
        }
        self.nodes
            .verify_at(token.expose().as_bytes(), now)
            .map(|verified| verified.signer)
            .map_err(|e| CallerRefusal::Refused(e.to_string()))
    }
}

/// The `typ` of a compact JWS's protected header, if it has one.
fn typ_of(token: &str) -> Option<String> {
    use base64::Engine as _;
    let header = token.split('.').next()?;
    // Headers are small; a long one is not a token of ours.
    if header.len() > 4096 {
        return None;
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&json).ok()?;
    value.get("typ")?.as_str().map(str::to_owned)
}

impl NodeCallers {
    fn hand_on(
        &self,
        credential: &Credential,
        now: UnixTime,
    ) -> Result<CourtIdentity, CallerRefusal> {
        match &self.others {
            Some(others) => others.verify(credential, now),
            None => Err(CallerRefusal::Refused(
                "not a node token of this zone".into(),
            )),
        }
    }
}
