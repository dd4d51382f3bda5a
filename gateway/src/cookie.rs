//! The browser session: an AEAD-sealed `__Host-` cookie, a key ring that rotates without signing
//! anyone out, idle and absolute timeouts, and a revocation list fed by logouts.
//!
//! ```text
//! value = base64url( version=1 | key id (4, big-endian) | nonce (12) | AES-256-GCM(session JSON) )
//! aad   = "tianping-session/1" 0x00 cookie name 0x00 zone
//! ```
//!
//! The key id is in the clear so the right key is tried first; the associated data binds the
//! cookie to its name and zone, so a cookie of another zone's gateway (another key ring or not)
//! or one moved to another cookie name does not open. The nonce is random per seal (96 bits; a
//! key seals far fewer than 2³² cookies before it is rotated).

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use tianping_core::{Acr, Amr, Clearance, CourtCode, Role, Secret, SubjectId, UnixTime, ZoneName};

use crate::config::Limits;

/// The session cookie's name: `__Host-` makes browsers insist on `Secure`, `Path=/` and no
/// `Domain`, so no other host (not even a sibling zone's gateway) can set or read it.
pub const SESSION_COOKIE: &str = "__Host-tianping-session";

const VERSION: u8 = 1;
const AAD_LABEL: &[u8] = b"tianping-session/1";
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;

/// One signed-in browser, as sealed in its cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The gateway's own id for this session (random, hex), ended by `/.tianping/logout`.
    pub id: String,
    /// The IdP's session id (`sid` of the ID token), ended by the IdP's back-channel logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The person.
    pub sub: SubjectId,
    /// The person's roles.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// The person's court.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub court: Option<CourtCode>,
    /// The person's clearance.
    pub clearance: Clearance,
    /// How strongly they signed in.
    pub acr: Acr,
    /// The methods used.
    #[serde(default)]
    pub amr: Vec<Amr>,
    /// When they signed in at the IdP (unix seconds): the absolute timeout counts from here.
    pub auth_time: u64,
    /// When the session was last used (unix seconds): the idle timeout counts from here.
    pub last_used: u64,
}

impl Session {
    /// The sign-in time.
    pub fn signed_in_at(&self) -> UnixTime {
        UnixTime::from_secs(self.auth_time)
    }
}

/// Why a session cookie did not open. Each is an ordinary "not signed in": a browser is sent to
/// sign in, and the reason goes to the audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// Too long, not base64url, too short, or an unknown format version.
    #[error("malformed session cookie: {0}")]
    Malformed(&'static str),
    /// Sealed with a key this gateway does not hold (rotated out, or another gateway's).
    #[error("session cookie sealed with unknown key {0}")]
    UnknownKey(u32),
    /// The AEAD tag does not verify: changed, or sealed for another cookie name or zone.
    #[error("session cookie does not open (tampered, or not sealed for this gateway)")]
    Tampered,
    /// Unused for longer than the idle timeout.
    #[error("session idle since {last_used} (unix seconds), past the idle timeout")]
    Idle {
        /// The last use.
        last_used: u64,
    },
    /// Older than the absolute timeout.
    #[error("session signed in at {auth_time} (unix seconds), past the absolute timeout")]
    Expired {
        /// The sign-in.
        auth_time: u64,
    },
    /// Ended by a logout.
    #[error("session ended by a logout")]
    Revoked,
    /// The ring holds no key, two keys share an id, or no randomness was available.
    #[error("cookie keys: {0}")]
    Keys(&'static str),
}

/// One cookie key: 32 random bytes and their id.
pub struct CookieKey {
    id: u32,
    key: LessSafeKey,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieKey")
            .field("id", &self.id)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl CookieKey {
    /// Key `id` with these 32 bytes (AES-256-GCM).
    pub fn new(id: u32, bytes: &Secret<[u8; 32]>) -> Result<Self, CookieError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes.expose())
            .map_err(|_| CookieError::Keys("not an AES-256 key"))?;
        Ok(Self {
            id,
            key: LessSafeKey::new(unbound),
        })
    }

    /// A new random key with `id`.
    pub fn generate(id: u32) -> Result<(Self, Secret<[u8; 32]>), CookieError> {
        let mut bytes = Secret::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.expose_mut())
            .map_err(|_| CookieError::Keys("no randomness"))?;
        Ok((Self::new(id, &bytes)?, bytes))
    }

    /// The key's id.
    pub fn id(&self) -> u32 {
        self.id
    }
}

/// The keys of one zone's gateway: the one with the highest id seals, all open, so a new key can
/// be added (and an old one dropped a session lifetime later) without signing anyone out.
#[derive(Debug)]
pub struct CookieSealer {
    keys: Vec<CookieKey>,
    aad: Vec<u8>,
    limits: Limits,
    rng: SystemRandom,
}

impl CookieSealer {
    /// A sealer for `zone`'s session cookie with `keys` (at least one, distinct ids).
    pub fn new(zone: &ZoneName, keys: Vec<CookieKey>, limits: Limits) -> Result<Self, CookieError> {
        let mut keys = keys;
        keys.sort_by_key(|k| std::cmp::Reverse(k.id));
        if keys.is_empty() {
            return Err(CookieError::Keys("no cookie key"));
        }
        if keys.windows(2).any(|w| matches!(w, [a, b] if a.id == b.id)) {
            return Err(CookieError::Keys("two cookie keys share an id"));
        }
        let mut aad = AAD_LABEL.to_vec();
        aad.push(0);
        aad.extend_from_slice(SESSION_COOKIE.as_bytes());
        aad.push(0);
        aad.extend_from_slice(zone.as_str().as_bytes());
        Ok(Self {
            keys,
            aad,
            limits,
            rng: SystemRandom::new(),
        })
    }

    /// The id of the key that seals.
    pub fn sealing_key(&self) -> Option<u32> {
        self.keys.first().map(|k| k.id)
    }

    /// The limits it checks.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// `session` sealed into a cookie value with the newest key.
    pub fn seal(&self, session: &Session) -> Result<String, CookieError> {
        let key = self
            .keys
            .first()
            .ok_or(CookieError::Keys("no cookie key"))?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| CookieError::Keys("no randomness"))?;
        let mut body =
            serde_json::to_vec(session).map_err(|_| CookieError::Malformed("session"))?;
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&self.aad),
                &mut body,
            )
            .map_err(|_| CookieError::Keys("sealing failed"))?;
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.push(VERSION);
        out.extend_from_slice(&key.id.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        let value = URL_SAFE_NO_PAD.encode(out);
        if value.len() > self.limits.max_cookie_bytes {
            return Err(CookieError::Malformed("session too large for a cookie"));
        }
        Ok(value)
    }

    /// Opens a cookie value: the session it holds, if it is ours, intact, and neither idle nor
    /// past its absolute timeout at `now`. Revocation is checked by the caller's
    /// [`Revocations`] (see [`CookieSealer::open_checked`]).
    pub fn open(&self, value: &[u8], now: UnixTime) -> Result<Session, CookieError> {
        if value.len() > self.limits.max_cookie_bytes {
            return Err(CookieError::Malformed("too long"));
        }
        let raw = URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| CookieError::Malformed("not base64url"))?;
        let (header, sealed) = raw
            .split_at_checked(HEADER_LEN)
            .ok_or(CookieError::Malformed("too short"))?;
        let [version, i0, i1, i2, i3, nonce @ ..] = header else {
            return Err(CookieError::Malformed("too short"));
        };
        if *version != VERSION {
            return Err(CookieError::Malformed("unknown version"));
        }
        let id = u32::from_be_bytes([*i0, *i1, *i2, *i3]);
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(CookieError::UnknownKey(id))?;
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| CookieError::Malformed("nonce"))?;
        let mut buf = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(&self.aad), &mut buf)
            .map_err(|_| CookieError::Tampered)?;
        // sealed by us, so well-formed unless our own format changed
        let session: Session =
            serde_json::from_slice(plain).map_err(|_| CookieError::Malformed("session"))?;
        let now_s = now.as_secs();
        if now_s
            >= session
                .auth_time
                .saturating_add(self.limits.session_absolute.as_secs())
        {
            return Err(CookieError::Expired {
                auth_time: session.auth_time,
            });
        }
        if now_s
            >= session
                .last_used
                .saturating_add(self.limits.session_idle.as_secs())
        {
            return Err(CookieError::Idle {
                last_used: session.last_used,
            });
        }
        Ok(session)
    }

    /// [`CookieSealer::open`], then refused if `revocations` ends the session.
    pub fn open_checked(
        &self,
        value: &[u8],
        now: UnixTime,
        revocations: &Revocations,
    ) -> Result<Session, CookieError> {
        let session = self.open(value, now)?;
        if revocations.ends(&session) {
            return Err(CookieError::Revoked);
        }
        Ok(session)
    }

    /// Whether `session`, used at `now`, should get a resealed cookie with a new last-use time.
    pub fn needs_refresh(&self, session: &Session, now: UnixTime) -> bool {
        now.as_secs()
            >= session
                .last_used
                .saturating_add(self.limits.session_refresh.as_secs())
    }

    /// The `Set-Cookie` value for a sealed session: `Secure`, `HttpOnly`, `Path=/`,
    /// `SameSite=Lax` (the sign-in callback is a top-level cross-site navigation back from the
    /// IdP), living as long as the absolute timeout.
    pub fn set_cookie(&self, sealed: &str) -> String {
        format!(
            "{SESSION_COOKIE}={sealed}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
            self.limits.session_absolute.as_secs()
        )
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie() -> String {
        format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
    }
}

/// The session cookie's value among a `Cookie` header's pairs, if present. A header over
/// `max` bytes is not scanned.
pub fn session_cookie(header: &[u8], max: usize) -> Option<&[u8]> {
    if header.len() > max {
        return None;
    }
    header
        .split(|b| *b == b';')
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            let (name, value) = pair.split_at_checked(eq)?;
            (name == SESSION_COOKIE.as_bytes()).then(|| value.get(1..).unwrap_or_default())
        })
        .next()
}

/// Why a revocation was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the revocation list is full of live revocations; retry later")]
pub struct RevocationsFull;

/// Sessions ended before their timeouts: by the gateway's own session id (its logout), by the
/// IdP's session id and by subject (back-channel logout, RFC 8475 §2.4: `sid`, `sub` or both).
/// Each entry is kept for [`Limits::revocation_keep`], after which the sessions it could end
/// have timed out anyway.
#[derive(Debug, Default)]
pub struct Revocations {
    // key -> until when it is kept (unix seconds)
    sessions: HashMap<String, u64>,
    // IdP sid -> until
    sids: HashMap<String, u64>,
    // sub -> (sessions signed in at or before this time end, until)
    subjects: HashMap<SubjectId, (u64, u64)>,
    keep: Duration,
    max: usize,
}

impl Revocations {
    /// An empty list with the limits' keep time and size.
    pub fn new(limits: &Limits) -> Self {
        Self {
            keep: limits.revocation_keep,
            max: limits.max_revocations,
            ..Self::default()
        }
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.sessions.len() + self.sids.len() + self.subjects.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn room(&mut self, now: UnixTime) -> Result<u64, RevocationsFull> {
        let now_s = now.as_secs();
        if self.len() >= self.max {
            self.sessions.retain(|_, until| *until > now_s);
            self.sids.retain(|_, until| *until > now_s);
            self.subjects.retain(|_, (_, until)| *until > now_s);
        }
        if self.len() >= self.max {
            return Err(RevocationsFull);
        }
        Ok(now_s.saturating_add(self.keep.as_secs()))
    }

    /// Ends the gateway session `id`.
    pub fn revoke_session(&mut self, id: &str, now: UnixTime) -> Result<(), RevocationsFull> {
        let until = self.room(now)?;
        self.sessions.insert(id.to_owned(), until);
        Ok(())
    }

    /// Ends every session of the IdP session `sid`.
    pub fn revoke_sid(&mut self, sid: &str, now: UnixTime) -> Result<(), RevocationsFull> {
        let until = self.room(now)?;
        self.sids.insert(sid.to_owned(), until);
        Ok(())
    }

    /// Ends every session of `sub` signed in at or before `now`.
    pub fn revoke_subject(
        &mut self,
        sub: &SubjectId,
        now: UnixTime,
    ) -> Result<(), RevocationsFull> {
        let until = self.room(now)?;
        self.subjects.insert(sub.clone(), (now.as_secs(), until));
        Ok(())
    }

    /// Whether a logout ended `session`.
    pub fn ends(&self, session: &Session) -> bool {
        self.sessions.contains_key(&session.id)
            || session
                .sid
                .as_ref()
                .is_some_and(|s| self.sids.contains_key(s))
            || self
                .subjects
                .get(&session.sub)
                .is_some_and(|(before, _)| session.auth_time <= *before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = Result<(), Box<dyn std::error::Error>>;

    fn session(now: u64) -> Result<Session, Box<dyn std::error::Error>> {
        Ok(Session {
            id: "0123456789abcdef".into(),
            sid: Some("idp-sid-1".into()),
            sub: "u-1001".parse()?,
            roles: vec![Role::Judge],
            court: Some("bj.01".parse()?),
            clearance: Clearance::None,
            acr: Acr::Otp,
            amr: vec![],
            auth_time: now,
            last_used: now,
        })
    }

    fn sealer(zone: &str, ids: &[u32]) -> Result<CookieSealer, Box<dyn std::error::Error>> {
        let keys = ids
            .iter()
            .map(|id| {
                Ok(CookieKey::new(
                    *id,
                    &Secret::new([u8::try_from(*id % 256)?; 32]),
                )?)
            })
            .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
        Ok(CookieSealer::new(&zone.parse()?, keys, Limits::default())?)
    }

    #[test]
    fn a_sealed_session_opens_and_rotation_keeps_old_cookies() -> R {
        let now = UnixTime::from_secs(1_800_000_000);
        let s = session(now.as_secs())?;
        let old = sealer("private", &[1])?;
        let cookie = old.seal(&s)?;
        assert_eq!(old.open(cookie.as_bytes(), now)?, s);
        let rotated = sealer("private", &[1, 2])?;
        assert_eq!(rotated.sealing_key(), Some(2));
        assert_eq!(rotated.open(cookie.as_bytes(), now)?, s);
        let new_cookie = rotated.seal(&s)?;
        assert_ne!(new_cookie, cookie);
        assert_eq!(
            old.open(new_cookie.as_bytes(), now),
            Err(CookieError::UnknownKey(2))
        );
        Ok(())
    }

    #[test]
    fn tampered_other_zone_and_garbage_are_refused() -> R {
        let now = UnixTime::from_secs(1_800_000_000);
        let s = sealer("private", &[7])?;
        let cookie = s.seal(&session(now.as_secs())?)?;
        let mut raw = URL_SAFE_NO_PAD.decode(&cookie)?;
        if let Some(b) = raw.last_mut() {
            *b ^= 1;
        }
        let bad = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(s.open(bad.as_bytes(), now), Err(CookieError::Tampered));
        let other = sealer("internet", &[7])?;
        assert_eq!(
            other.open(cookie.as_bytes(), now),
            Err(CookieError::Tampered)
        );
        assert!(matches!(
            s.open(b"!!!", now),
            Err(CookieError::Malformed(_))
        ));
        assert!(matches!(s.open(b"AQ", now), Err(CookieError::Malformed(_))));
        let long = vec![b'A'; 4000];
        assert_eq!(s.open(&long, now), Err(CookieError::Malformed("too long")));
        Ok(())
    }

    #[test]
    fn idle_and_absolute_timeouts_end_a_session() -> R {
        let t0 = 1_800_000_000;
        let s = sealer("private", &[1])?;
        let mut sess = session(t0)?;
        let cookie = s.seal(&sess)?;
        let limits = Limits::default();
        let idle = limits.session_idle.as_secs();
        assert!(
            s.open(cookie.as_bytes(), UnixTime::from_secs(t0 + idle - 1))
                .is_ok()
        );
        assert_eq!(
            s.open(cookie.as_bytes(), UnixTime::from_secs(t0 + idle)),
            Err(CookieError::Idle { last_used: t0 })
        );
        let abs = limits.session_absolute.as_secs();
        sess.last_used = t0 + abs - 10;
        let kept_alive = s.seal(&sess)?;
        assert_eq!(
            s.open(kept_alive.as_bytes(), UnixTime::from_secs(t0 + abs)),
            Err(CookieError::Expired { auth_time: t0 })
        );
        Ok(())
    }

    #[test]
    fn logouts_end_sessions_by_id_sid_and_subject() -> R {
        let now = UnixTime::from_secs(1_800_000_000);
        let s = sealer("private", &[1])?;
        let sess = session(now.as_secs())?;
        let cookie = s.seal(&sess)?;
        let limits = Limits::default();
        let mut r = Revocations::new(&limits);
        assert!(s.open_checked(cookie.as_bytes(), now, &r).is_ok());
        r.revoke_sid("idp-sid-1", now)?;
        assert_eq!(
            s.open_checked(cookie.as_bytes(), now, &r),
            Err(CookieError::Revoked)
        );
        let mut r = Revocations::new(&limits);
        r.revoke_session(&sess.id, now)?;
        assert!(r.ends(&sess));
        let mut r = Revocations::new(&limits);
        r.revoke_subject(&sess.sub, now)?;
        assert!(r.ends(&sess));
        let mut later = sess.clone();
        later.auth_time = now.as_secs() + 1;
        assert!(!r.ends(&later), "a sign-in after the logout stands");
        Ok(())
    }

    #[test]
    fn a_full_revocation_list_refuses_until_entries_age_out() -> R {
        let limits = Limits {
            max_revocations: 2,
            revocation_keep: Duration::from_secs(10),
            ..Limits::default()
        };
        let mut r = Revocations::new(&limits);
        let t = UnixTime::from_secs(100);
        r.revoke_sid("a", t)?;
        r.revoke_sid("b", t)?;
        assert_eq!(r.revoke_sid("c", t), Err(RevocationsFull));
        r.revoke_sid("c", UnixTime::from_secs(110))?;
        assert_eq!(r.len(), 1);
        Ok(())
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = b"a=1; __Host-tianping-session=abc; b=2";
        assert_eq!(session_cookie(h, 8192), Some(&b"abc"[..]));
        assert_eq!(session_cookie(b"x__Host-tianping-session=abc", 8192), None);
        assert_eq!(session_cookie(h, 4), None);
    }
}
