//! Authorization codes and refresh-token families as state machines over a [`Store`].
//!
//! - A code lives 60 seconds and is redeemed once. Its record stays after use (until the tokens
//!   issued from it have expired), so a second redemption is recognised: it fails with
//!   `invalid_grant` and revokes every token issued from the code (RFC 6749 §4.1.2).
//! - A refresh token is rotated at every use. Reusing a rotated one revokes its whole family
//!   (OAuth 2.0 Security BCP §4.14.2). A family is bound to its client.
//!
//! Codes and refresh tokens are 256-bit random values; the store keeps only their SHA-256.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tianping_core::UnixTime;

use crate::IdpError;
use crate::authorize::{AuthorizationRequest, ClaimsRequest};
use crate::pkce::{self, CodeChallenge};
use crate::random::{Random, bytes};
use crate::store::Store;
use crate::tokens::{Identity, IssuedAccessToken};

/// A refresh-token family's id.
pub type FamilyId = [u8; 16];

/// How long codes and refresh tokens live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantPolicy {
    /// An authorization code's life.
    pub code_life: Duration,
    /// A refresh-token family's life from sign-in (no rotation extends it).
    pub refresh_life: Duration,
}

impl Default for GrantPolicy {
    fn default() -> Self {
        Self {
            code_life: Duration::from_secs(60),
            refresh_life: Duration::from_secs(8 * 3600),
        }
    }
}

/// What the store keeps for an authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI it was sent to.
    pub redirect_uri: String,
    /// Whether the authorization request named the redirect URI (the token request must then).
    pub redirect_uri_sent: bool,
    /// The PKCE challenge (always present for codes issued here).
    pub challenge: Option<CodeChallenge>,
    /// Who signed in.
    pub identity: Identity,
    /// The scopes granted.
    pub scope: Vec<String>,
    /// The request's `nonce`.
    pub nonce: Option<String>,
    /// When it stops being redeemable.
    pub expires_at: UnixTime,
    /// Whether it was redeemed.
    pub used: bool,
    /// Whether a redemption came after the first.
    pub reused: bool,
    /// Access tokens issued from it, with their expiry.
    pub access_tokens: Vec<(String, UnixTime)>,
    /// The refresh-token family started from it.
    pub family: Option<FamilyId>,
    /// The request's `claims` parameter: what the ID token and UserInfo release beyond the
    /// scopes' claims.
    pub claims: ClaimsRequest,
    /// The store key (SHA-256 of the id) of the browser session it was issued in: the families
    /// it starts end when that session logs out.
    pub session: Option<[u8; 32]>,
}

/// A chain of refresh tokens from one sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFamily {
    /// Its id (the first 16 bytes of each of its tokens).
    pub id: FamilyId,
    /// The client it is bound to.
    pub client_id: String,
    /// Who signed in.
    pub identity: Identity,
    /// The scopes granted.
    pub scope: Vec<String>,
    /// SHA-256 of the one usable token.
    pub current: [u8; 32],
    /// The tokens rotated out, every one of them, in a fixed size.
    pub rotated: RotatedTokens,
    /// When the family ends.
    pub expires_at: UnixTime,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Access tokens issued from it, with their expiry.
    pub access_tokens: Vec<(String, UnixTime)>,
}

/// How many rotated-out tokens a family's record listed before it kept them in a
/// [`RotatedTokens`] filter (its version 1, still read): the oldest were forgotten beyond it.
pub const MAX_ROTATED: usize = 256;

/// The size in bytes of [`RotatedTokens`]' filter.
pub(crate) const ROTATED_FILTER_BYTES: usize = 256;

/// How many bits of the filter each rotated token sets.
const ROTATED_FILTER_PROBES: usize = 8;

/// The refresh tokens a family has rotated out, kept in a fixed size whatever the chain's
/// length: the count, and a Bloom filter of their SHA-256 (2,048 bits, 8 set per token, each
/// index 11 bits of the hash, which SHA-256 makes uniform).
///
/// Every token rotated out is recognised ([`contains`](Self::contains) is never wrong for
/// one), so a reuse of any earlier token of the chain revokes the family, however long ago it
/// was rotated. A token never issued is taken for a rotated one with the filter's false
/// positive rate, which grows with the chain: below 2e-4 up to 100 rotations (a family's
/// 8 hours at one refresh every 5 minutes), about 3% at 256; such a token must also carry the
/// family's 128-bit random id, which only its holders know, so a false positive revokes the
/// family (fails closed) and never lets a token through.
#[derive(Clone, PartialEq, Eq)]
pub struct RotatedTokens {
    count: u32,
    bits: [u8; ROTATED_FILTER_BYTES],
}

impl std::fmt::Debug for RotatedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedTokens")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Default for RotatedTokens {
    fn default() -> Self {
        Self {
            count: 0,
            bits: [0; ROTATED_FILTER_BYTES],
        }
    }
}

impl RotatedTokens {
    /// None rotated out yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The filter's bits for a token's hash: byte index and mask.
    fn probes(hash: &[u8; 32]) -> impl Iterator<Item = (usize, u8)> + '_ {
        hash.chunks_exact(2)
            .take(ROTATED_FILTER_PROBES)
            .map(|pair| match pair {
                [a, b] => usize::from(u16::from_be_bytes([*a, *b])) % (ROTATED_FILTER_BYTES * 8),
                _ => 0,
            })
            .map(|bit| (bit / 8, 1u8 << (bit % 8)))
    }

    /// Notes a token (by its SHA-256) as rotated out.
    pub fn insert(&mut self, hash: &[u8; 32]) {
        for (byte, mask) in Self::probes(hash) {
            if let Some(b) = self.bits.get_mut(byte) {
                *b |= mask;
            }
        }
        self.count = self.count.saturating_add(1);
    }

    /// Whether a token (by its SHA-256) was rotated out: always for one that was, for another
    /// with the false positive rate described above.
    pub fn contains(&self, hash: &[u8; 32]) -> bool {
        self.count > 0
            && Self::probes(hash)
                .all(|(byte, mask)| self.bits.get(byte).is_some_and(|b| b & mask != 0))
    }

    /// How many tokens were rotated out.
    pub fn len(&self) -> usize {
        usize::try_from(self.count).unwrap_or(usize::MAX)
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The stored form's parts: the count and the filter.
    #[cfg(feature = "store")]
    pub(crate) fn parts(&self) -> (u32, &[u8; ROTATED_FILTER_BYTES]) {
        (self.count, &self.bits)
    }

    /// From the stored form's parts.
    #[cfg(feature = "store")]
    pub(crate) fn from_parts(count: u32, bits: [u8; ROTATED_FILTER_BYTES]) -> Self {
        Self { count, bits }
    }
}

/// SHA-256 of `b`: the key codes, refresh tokens and session records are kept under.
pub(crate) fn sha256(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, b).as_ref());
    out
}

/// A refresh rotation as its audit event records it, enough to make it again after a crash
/// (see [`Store::journals_rotations`]). Only the server journals and replays them.
#[cfg(feature = "server")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JournalledRotation {
    /// The family.
    pub family: FamilyId,
    /// SHA-256 of the token rotated out (the family's current one before).
    pub from: [u8; 32],
    /// SHA-256 of the token that replaced it.
    pub to: [u8; 32],
    /// The client that presented it.
    pub client_id: String,
    /// When.
    pub time: UnixTime,
    /// The access token issued with it (`jti`, expiry).
    pub access: (String, UnixTime),
}

/// The outcome of presenting a refresh token to a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rotation {
    Rotated,
    Reused,
    Refused(RefreshRefusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshRefusal {
    Invalid,
    WrongClient,
}

fn rotation(f: &RefreshFamily, presented: &[u8; 32], client_id: &str, now: UnixTime) -> Rotation {
    if f.revoked || now >= f.expires_at {
        Rotation::Refused(RefreshRefusal::Invalid)
    } else if f.client_id != client_id {
        Rotation::Refused(RefreshRefusal::WrongClient)
    } else if &f.current == presented {
        Rotation::Rotated
    } else if f.rotated.contains(presented) {
        Rotation::Reused
    } else {
        Rotation::Refused(RefreshRefusal::Invalid)
    }
}

/// The family after `presented` is shown to it with the access token issued for the rotation:
/// rotated, the token recorded and expired access tokens dropped; revoked on reuse; else
/// unchanged (also when there is no token: the read before found the token not current).
fn apply_issued(
    f: &RefreshFamily,
    presented: &[u8; 32],
    client_id: &str,
    now: UnixTime,
    next_hash: [u8; 32],
    issued: Option<&(String, UnixTime)>,
) -> RefreshFamily {
    match (rotation(f, presented, client_id, now), issued) {
        (Rotation::Rotated, Some(entry)) => {
            let mut n = apply(f, presented, client_id, now, next_hash);
            n.access_tokens.retain(|(_, until)| *until > now);
            n.access_tokens.push(entry.clone());
            n
        }
        (Rotation::Rotated, None) => f.clone(),
        _ => apply(f, presented, client_id, now, next_hash),
    }
}

/// The family after `presented` is shown to it: rotated, revoked on reuse, else unchanged.
fn apply(
    f: &RefreshFamily,
    presented: &[u8; 32],
    client_id: &str,
    now: UnixTime,
    next_hash: [u8; 32],
) -> RefreshFamily {
    let mut n = f.clone();
    match rotation(f, presented, client_id, now) {
        Rotation::Rotated => {
            n.rotated.insert(&f.current);
            n.current = next_hash;
        }
        Rotation::Reused => n.revoked = true,
        Rotation::Refused(_) => {}
    }
    n
}

/// Codes and refresh tokens over a store.
#[derive(Clone, Copy)]
pub struct Grants<'a> {
    store: &'a dyn Store,
    policy: GrantPolicy,
}

impl std::fmt::Debug for Grants<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<'a> Grants<'a> {
    /// Grants kept in `store`.
    pub fn new(store: &'a dyn Store, policy: GrantPolicy) -> Self {
        Self { store, policy }
    }

    /// A new code for a checked authorization request and the identity that signed in.
    pub fn issue_code(
        &self,
        request: &AuthorizationRequest,
        identity: Identity,
        now: UnixTime,
        rng: &dyn Random,
    ) -> Result<String, IdpError> {
        self.issue_code_in_session(request, identity, None, now, rng)
    }

    /// [`Self::issue_code`] in the browser session whose id is `session_id`: the refresh
    /// families the code starts are noted on the session, and its logout revokes them.
    pub fn issue_code_in_session(
        &self,
        request: &AuthorizationRequest,
        identity: Identity,
        session_id: Option<&str>,
        now: UnixTime,
        rng: &dyn Random,
    ) -> Result<String, IdpError> {
        let code = URL_SAFE_NO_PAD.encode(bytes::<32>(rng)?);
        self.store.put_code(
            sha256(code.as_bytes()),
            CodeRecord {
                client_id: request.client_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                redirect_uri_sent: request.redirect_uri_sent,
                challenge: Some(request.code_challenge.clone()),
                identity,
                scope: request.scope.clone(),
                nonce: request.nonce.clone(),
                expires_at: now.saturating_add(self.policy.code_life),
                used: false,
                reused: false,
                access_tokens: Vec::new(),
                family: None,
                claims: request.claims.clone(),
                session: session_id.map(|id| sha256(id.as_bytes())),
            },
        )?;
        Ok(code)
    }

    /// Redeems a code once. A second redemption revokes every token issued from it and fails
    /// with [`IdpError::CodeReused`]; a wrong client, redirect URI or PKCE verifier fails without
    /// using the code up.
    pub fn redeem_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        now: UnixTime,
    ) -> Result<CodeRecord, IdpError> {
        let key = sha256(code.as_bytes());
        let check = |r: &CodeRecord| -> Result<(), IdpError> {
            if r.client_id != client_id {
                return Err(IdpError::CodeMismatch);
            }
            match redirect_uri {
                Some(u) if u != r.redirect_uri => return Err(IdpError::CodeMismatch),
                None if r.redirect_uri_sent => {
                    return Err(IdpError::MissingParameter("redirect_uri"));
                }
                _ => {}
            }
            pkce::verify(r.challenge.as_ref(), verifier)
        };
        let ok = |r: &CodeRecord| !r.used && now < r.expires_at && check(r).is_ok();
        let before = self
            .store
            .update_code(&key, &mut |r| {
                let mut next = r.clone();
                next.reused |= r.used;
                next.used |= ok(r);
                next
            })?
            .ok_or(IdpError::CodeInvalid)?;
        if before.used {
            self.revoke_issued(&before.access_tokens, before.family)?;
            return Err(IdpError::CodeReused);
        }
        if now >= before.expires_at {
            return Err(IdpError::CodeInvalid);
        }
        check(&before)?;
        Ok(before)
    }

    /// Notes the tokens issued from a redeemed code, so that a reuse of the code revokes them.
    pub fn record_code_tokens(
        &self,
        code: &str,
        access: &IssuedAccessToken,
        family: Option<FamilyId>,
    ) -> Result<(), IdpError> {
        let key = sha256(code.as_bytes());
        let entry = (access.jti.clone(), access.expires_at);
        let before = self.store.update_code(&key, &mut |r| {
            let mut next = r.clone();
            if !next.access_tokens.contains(&entry) {
                next.access_tokens.push(entry.clone());
            }
            next.family = family.or(r.family);
            next
        })?;
        // A reuse that landed between redemption and now found nothing to revoke: revoke here.
        if before.is_some_and(|b| b.reused) {
            self.revoke_issued(&[entry], family)?;
        }
        Ok(())
    }

    fn revoke_issued(
        &self,
        access: &[(String, UnixTime)],
        family: Option<FamilyId>,
    ) -> Result<(), IdpError> {
        for (jti, until) in access {
            self.store.revoke_token(jti, *until)?;
        }
        if let Some(id) = family {
            self.revoke_family(&id)?;
        }
        Ok(())
    }

    /// Starts a refresh-token family; returns its first token and its id.
    pub fn start_family(
        &self,
        client_id: &str,
        identity: Identity,
        scope: Vec<String>,
        now: UnixTime,
        rng: &dyn Random,
    ) -> Result<(String, FamilyId), IdpError> {
        let id = bytes::<16>(rng)?;
        let (token, hash) = refresh_token(&id, rng)?;
        self.store.put_family(RefreshFamily {
            id,
            client_id: client_id.to_owned(),
            identity,
            scope,
            current: hash,
            rotated: RotatedTokens::new(),
            expires_at: now.saturating_add(self.policy.refresh_life),
            revoked: false,
            access_tokens: Vec::new(),
        })?;
        Ok((token, id))
    }

    /// Uses a refresh token: returns the family and the token that replaces it. Reusing a rotated
    /// token revokes the family; a token of another client is refused.
    pub fn use_refresh(
        &self,
        token: &str,
        client_id: &str,
        now: UnixTime,
        rng: &dyn Random,
    ) -> Result<(RefreshFamily, String), IdpError> {
        let raw = URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .filter(|r| r.len() == 48)
            .ok_or(IdpError::RefreshInvalid)?;
        let (id, _) = raw.split_at(16);
        let id: FamilyId = id.try_into().map_err(|_| IdpError::RefreshInvalid)?;
        let presented = sha256(token.as_bytes());
        let (next, next_hash) = refresh_token(&id, rng)?;
        let before = self
            .store
            .update_family(&id, &mut |f| {
                apply(f, &presented, client_id, now, next_hash)
            })?
            .ok_or(IdpError::RefreshInvalid)?;
        match rotation(&before, &presented, client_id, now) {
            Rotation::Rotated => {
                let after = apply(&before, &presented, client_id, now, next_hash);
                Ok((after, next))
            }
            Rotation::Reused => {
                for (jti, until) in &before.access_tokens {
                    self.store.revoke_token(jti, *until)?;
                }
                Err(IdpError::RefreshReused)
            }
            Rotation::Refused(RefreshRefusal::WrongClient) => Err(IdpError::RefreshWrongClient),
            Rotation::Refused(RefreshRefusal::Invalid) => Err(IdpError::RefreshInvalid),
        }
    }

    /// Uses a refresh token in one atomic store update: reads the family, and when the token is
    /// its current one calls `issue` with it (the caller checks the account and signs the
    /// access token there; an error leaves the family unchanged), then rotates the family and
    /// records the access token together. Returns the family after rotation, the token that
    /// replaces the one presented, and the access token. Reusing a rotated token (also one
    /// rotated by a concurrent request meanwhile) revokes the family and its access tokens; a
    /// token of another client is refused. Access tokens of the family that have expired are
    /// dropped from it. The rotation is durable when this returns; see
    /// [`rotate_refresh_deferred`](Self::rotate_refresh_deferred) for async callers.
    pub fn rotate_refresh(
        &self,
        token: &str,
        client_id: &str,
        now: UnixTime,
        rng: &dyn Random,
        issue: &mut dyn FnMut(&RefreshFamily) -> Result<IssuedAccessToken, IdpError>,
    ) -> Result<(RefreshFamily, String, IssuedAccessToken), IdpError> {
        self.rotate(token, client_id, now, rng, issue, false)
    }

    /// [`rotate_refresh`](Self::rotate_refresh) whose rotation is durable only once
    /// [`Store::flushed`] (called after this returns) completes: the caller awaits it before
    /// answering, and concurrent rotations share one flush. A reuse's revocation is durable
    /// when this returns.
    pub fn rotate_refresh_deferred(
        &self,
        token: &str,
        client_id: &str,
        now: UnixTime,
        rng: &dyn Random,
        issue: &mut dyn FnMut(&RefreshFamily) -> Result<IssuedAccessToken, IdpError>,
    ) -> Result<(RefreshFamily, String, IssuedAccessToken), IdpError> {
        self.rotate(token, client_id, now, rng, issue, true)
    }

    fn rotate(
        &self,
        token: &str,
        client_id: &str,
        now: UnixTime,
        rng: &dyn Random,
        issue: &mut dyn FnMut(&RefreshFamily) -> Result<IssuedAccessToken, IdpError>,
        deferred: bool,
    ) -> Result<(RefreshFamily, String, IssuedAccessToken), IdpError> {
        let raw = URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .filter(|r| r.len() == 48)
            .ok_or(IdpError::RefreshInvalid)?;
        let (id, _) = raw.split_at(16);
        let id: FamilyId = id.try_into().map_err(|_| IdpError::RefreshInvalid)?;
        let presented = sha256(token.as_bytes());
        if deferred {
            return self.rotate_deferred(id, &presented, client_id, now, rng, issue);
        }
        let read = self.store.family(&id)?.ok_or(IdpError::RefreshInvalid)?;
        let at = match rotation(&read, &presented, client_id, now) {
            Rotation::Rotated => Some(issue(&read)?),
            _ => None,
        };
        let entry = at.as_ref().map(|a| (a.jti.clone(), a.expires_at));
        let (next, next_hash) = refresh_token(&id, rng)?;
        let mut change = |f: &RefreshFamily| {
            apply_issued(f, &presented, client_id, now, next_hash, entry.as_ref())
        };
        let before = if deferred {
            self.store.update_family_deferred(&id, &mut change)?
        } else {
            self.store.update_family(&id, &mut change)?
        }
        .ok_or(IdpError::RefreshInvalid)?;
        match (rotation(&before, &presented, client_id, now), at) {
            (Rotation::Rotated, Some(at)) => {
                let after = apply_issued(
                    &before,
                    &presented,
                    client_id,
                    now,
                    next_hash,
                    entry.as_ref(),
                );
                Ok((after, next, at))
            }
            // Not current when read, current when updated: cannot happen (a token never
            // becomes current again); nothing was changed.
            (Rotation::Rotated, None) => Err(IdpError::RefreshInvalid),
            (Rotation::Reused, _) if deferred => {
                // The revocation is made durable here, not left to the caller's flush: again
                // through a flushed update, with the family's access tokens.
                self.revoke_family(&id)?;
                Err(IdpError::RefreshReused)
            }
            (Rotation::Reused, _) => {
                for (jti, until) in &before.access_tokens {
                    self.store.revoke_token(jti, *until)?;
                }
                Err(IdpError::RefreshReused)
            }
            (Rotation::Refused(RefreshRefusal::WrongClient), _) => {
                Err(IdpError::RefreshWrongClient)
            }
            (Rotation::Refused(RefreshRefusal::Invalid), _) => Err(IdpError::RefreshInvalid),
        }
    }

    /// The deferred rotation in one store update that reads the family once: `issue` runs
    /// inside it when the token is current (its error changes nothing), the rotation and the
    /// access token are written together by compare-and-swap.
    fn rotate_deferred(
        &self,
        id: FamilyId,
        presented: &[u8; 32],
        client_id: &str,
        now: UnixTime,
        rng: &dyn Random,
        issue: &mut dyn FnMut(&RefreshFamily) -> Result<IssuedAccessToken, IdpError>,
    ) -> Result<(RefreshFamily, String, IssuedAccessToken), IdpError> {
        let (next, next_hash) = refresh_token(&id, rng)?;
        let mut at: Option<IssuedAccessToken> = None;
        let mut change = |f: &RefreshFamily| -> Result<RefreshFamily, IdpError> {
            // issued once: a retry after a concurrent writer finds the token rotated (a reuse)
            if at.is_none() && rotation(f, presented, client_id, now) == Rotation::Rotated {
                at = Some(issue(f)?);
            }
            let entry = at.as_ref().map(|a| (a.jti.clone(), a.expires_at));
            Ok(apply_issued(
                f,
                presented,
                client_id,
                now,
                next_hash,
                entry.as_ref(),
            ))
        };
        let before = self
            .store
            .try_update_family_deferred(&id, &mut change)?
            .ok_or(IdpError::RefreshInvalid)?;
        match (rotation(&before, presented, client_id, now), at) {
            (Rotation::Rotated, Some(at)) => {
                let entry = (at.jti.clone(), at.expires_at);
                let after =
                    apply_issued(&before, presented, client_id, now, next_hash, Some(&entry));
                Ok((after, next, at))
            }
            (Rotation::Rotated, None) => Err(IdpError::RefreshInvalid),
            (Rotation::Reused, _) => {
                // The revocation is made durable here, not left to the caller's flush: again
                // through a flushed update, with the family's access tokens.
                self.revoke_family(&id)?;
                Err(IdpError::RefreshReused)
            }
            (Rotation::Refused(RefreshRefusal::WrongClient), _) => {
                Err(IdpError::RefreshWrongClient)
            }
            (Rotation::Refused(RefreshRefusal::Invalid), _) => Err(IdpError::RefreshInvalid),
        }
    }

    /// Makes a rotation again from what its audit event recorded, when the family still stands
    /// where the rotation found it (not revoked, its current token the one rotated out):
    /// exactly the change the grant made. Otherwise (the rotation is already in the store, or
    /// a later change) nothing changes. Whether it changed the family; not flushed.
    #[cfg(feature = "server")]
    pub(crate) fn replay_rotation(&self, r: &JournalledRotation) -> Result<bool, IdpError> {
        let stands = |f: &RefreshFamily| {
            f.current == r.from && rotation(f, &r.from, &r.client_id, r.time) == Rotation::Rotated
        };
        match self.store.family(&r.family)? {
            Some(f) if stands(&f) => {}
            _ => return Ok(false),
        }
        let mut changed = false;
        self.store.update_family_deferred(&r.family, &mut |f| {
            changed = stands(f);
            if changed {
                apply_issued(f, &r.from, &r.client_id, r.time, r.to, Some(&r.access))
            } else {
                f.clone()
            }
        })?;
        Ok(changed)
    }

    /// Notes an access token issued from a family, so revoking the family revokes it.
    pub fn record_family_token(
        &self,
        id: &FamilyId,
        access: &IssuedAccessToken,
    ) -> Result<(), IdpError> {
        let entry = (access.jti.clone(), access.expires_at);
        self.store.update_family(id, &mut |f| {
            let mut n = f.clone();
            if !n.access_tokens.contains(&entry) {
                n.access_tokens.push(entry.clone());
            }
            n
        })?;
        Ok(())
    }

    /// Revokes a family and the access tokens issued from it (RFC 7009, logout, reuse).
    pub fn revoke_family(&self, id: &FamilyId) -> Result<(), IdpError> {
        let before = self.store.update_family(id, &mut |f| {
            let mut n = f.clone();
            n.revoked = true;
            n
        })?;
        for (jti, until) in before.map(|f| f.access_tokens).unwrap_or_default() {
            self.store.revoke_token(&jti, until)?;
        }
        Ok(())
    }
}

/// Where the families started in a session are kept (beside the sign-in states, under a key
/// no session id hashes to: a hash of the session's key with a label).
fn session_families_key(session: &[u8; 32]) -> [u8; 32] {
    let mut b = b"tianping-idp session families\0".to_vec();
    b.extend_from_slice(session);
    sha256(&b)
}

fn decode_families(b: &[u8]) -> Result<Vec<FamilyId>, IdpError> {
    let chunks = b.chunks_exact(16);
    if !chunks.remainder().is_empty() {
        return Err(IdpError::Store("a session's families are not whole".into()));
    }
    chunks
        .map(|c| {
            FamilyId::try_from(c)
                .map_err(|_| IdpError::Store("a session's families are not whole".into()))
        })
        .collect()
}

impl Grants<'_> {
    /// Notes `family` as started in the session whose store key is `session`.
    pub fn note_session_family(
        &self,
        session: &[u8; 32],
        family: &FamilyId,
    ) -> Result<(), IdpError> {
        // one atomic append: two codes of the session redeemed at once both land
        self.store
            .append_sign_in(session_families_key(session), family)
    }

    /// Revokes every family started in the session whose id is `session_id` (its logout) and
    /// forgets them; the families revoked.
    pub fn end_session_families(&self, session_id: &str) -> Result<Vec<FamilyId>, IdpError> {
        self.end_families_of_session(&sha256(session_id.as_bytes()))
    }

    /// [`end_session_families`](Self::end_session_families) by the session's store key (the
    /// SHA-256 of its id). The list is taken from the store in one step, so a family noted while
    /// this runs is either revoked here or kept for the next call, never dropped.
    pub fn end_families_of_session(&self, session: &[u8; 32]) -> Result<Vec<FamilyId>, IdpError> {
        let key = session_families_key(session);
        let Some(list) = self.store.take_sign_in(&key)? else {
            return Ok(Vec::new());
        };
        let families = decode_families(&list)?;
        for f in &families {
            self.revoke_family(f)?;
        }
        Ok(families)
    }
}

fn refresh_token(id: &FamilyId, rng: &dyn Random) -> Result<(String, [u8; 32]), IdpError> {
    let mut raw = Vec::with_capacity(48);
    raw.extend_from_slice(id);
    raw.extend_from_slice(&bytes::<32>(rng)?);
    let token = URL_SAFE_NO_PAD.encode(&raw);
    let hash = sha256(token.as_bytes());
    Ok((token, hash))
}

// the record codec these tests read is the store's
#[cfg(test)]
#[cfg(feature = "store")]
mod tests {
    use super::*;
    use crate::random::SeededRandom;
    use crate::records::{decode_family, encode_family};
    use crate::store::MemoryStore;

    /// Rotates `token` once through [`Grants::rotate_refresh`], with an access token that
    /// expires a second later.
    fn rotate(g: &Grants<'_>, token: &str, now: UnixTime, rng: &SeededRandom) -> String {
        let mut issue = |f: &RefreshFamily| {
            Ok(IssuedAccessToken {
                token: String::new(),
                jti: format!("jti-{:03}", f.rotated.len()),
                expires_at: now.saturating_add(Duration::from_secs(1)),
            })
        };
        let (_, next, _) = g
            .rotate_refresh(token, "case-app", now, rng, &mut issue)
            .unwrap();
        next
    }

    #[test]
    fn a_token_rotated_100_uses_ago_revokes_the_family_whose_record_stays_one_size() {
        let store = MemoryStore::default();
        let g = Grants::new(&store, GrantPolicy::default());
        let rng = SeededRandom::new(11);
        let mut now = UnixTime::from_secs(1_800_000_000);
        let (first, id) = g
            .start_family(
                "case-app",
                crate::tokens::tests::judge(),
                vec!["cases.read".into()],
                now,
                &rng,
            )
            .unwrap();
        let size = |store: &MemoryStore| {
            encode_family(&store.family(&id).unwrap().unwrap())
                .unwrap()
                .len()
        };
        let mut chain = vec![first];
        let mut sizes = Vec::new();
        for _ in 0..100 {
            now = now.saturating_add(Duration::from_secs(2));
            let next = rotate(&g, chain.last().unwrap(), now, &rng);
            chain.push(next);
            sizes.push(size(&store));
        }
        // one live access token, every rotated-out token in the filter: one size all along
        assert!(sizes.iter().all(|s| *s == sizes[0]), "{sizes:?}");
        let f = store.family(&id).unwrap().unwrap();
        assert_eq!(f.rotated.len(), 100);
        assert_eq!(f.access_tokens.len(), 1);
        assert_eq!(decode_family(&encode_family(&f).unwrap()).unwrap(), f);
        // every token of the chain but the last is known as rotated out, the last is not
        for t in &chain[..100] {
            assert!(f.rotated.contains(&sha256(t.as_bytes())));
        }
        assert!(!f.rotated.contains(&f.current));
        // a token never issued, with the family's id, is invalid and revokes nothing
        let mut forged = chain[0].clone();
        forged.replace_range(30.., &"A".repeat(forged.len() - 30));
        let e = g.use_refresh(&forged, "case-app", now, &rng).unwrap_err();
        assert_eq!(e, IdpError::RefreshInvalid);
        assert!(!store.family(&id).unwrap().unwrap().revoked);
        // the first token, rotated out 100 uses ago: the family is revoked with its access token
        let e = g.use_refresh(&chain[0], "case-app", now, &rng).unwrap_err();
        assert_eq!(e, IdpError::RefreshReused);
        assert!(store.family(&id).unwrap().unwrap().revoked);
        assert!(store.is_token_revoked("jti-099").unwrap());
        let e = g
            .use_refresh(&chain[100], "case-app", now, &rng)
            .unwrap_err();
        assert_eq!(e, IdpError::RefreshInvalid);
    }

    #[test]
    fn the_filter_knows_what_it_was_given_and_little_else() {
        let mut r = RotatedTokens::new();
        assert!(r.is_empty());
        let hashes: Vec<[u8; 32]> = (0u32..100).map(|i| sha256(&i.to_be_bytes())).collect();
        for h in &hashes {
            r.insert(h);
        }
        assert_eq!(r.len(), 100);
        assert!(hashes.iter().all(|h| r.contains(h)));
        // 10,000 others: the false positive rate at 100 is about 1.2e-4
        let false_positives = (100u32..10_100)
            .filter(|i| r.contains(&sha256(&i.to_be_bytes())))
            .count();
        assert!(false_positives <= 10, "{false_positives}");
        assert!(!RotatedTokens::new().contains(&hashes[0]));
    }
}
