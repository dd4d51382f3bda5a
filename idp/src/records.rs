//! The stored forms of the records the [`Store`](crate::Store) keeps, on the core wire codec
//! (each begins with a version byte), so any backend keeps the same bytes.

use std::str::FromStr;

use tianping_core::{CourtCode, Secret, UnixTime, WireError, WireReader, WireWriter};

use crate::IdpError;
use crate::authorize::{ClaimsRequest, RequestedClaim};
use crate::client::{Client, ClientAuthMethod, GrantType};
use crate::client_auth::ClientKeys;
use crate::directory::{Court, RequiredAction, TotpCredential, User, UserStatus};
use crate::grants::{CodeRecord, ROTATED_FILTER_BYTES, RefreshFamily, RotatedTokens};
use crate::password::PasswordRecord;
use crate::pkce::CodeChallenge;
use crate::session::Session;
use crate::tokens::Identity;
use crate::totp::TotpSecret;

const VERSION: u8 = 1;

fn check_version(r: &mut WireReader<'_>) -> Result<(), IdpError> {
    match r.u8("version")? {
        VERSION => Ok(()),
        v => Err(IdpError::Store(format!(
            "a stored record has version `{v}`"
        ))),
    }
}

fn parse<T: FromStr>(s: &str, field: &'static str) -> Result<T, IdpError> {
    s.parse()
        .map_err(|_| IdpError::Store(format!("a stored `{field}` is not valid")))
}

fn put_strs<T: ToString>(w: &mut WireWriter, items: &[T]) -> Result<(), WireError> {
    w.len16(items.len(), "list")?;
    for i in items {
        w.str16(&i.to_string())?;
    }
    Ok(())
}

fn get_strs<T: FromStr>(r: &mut WireReader<'_>, field: &'static str) -> Result<Vec<T>, IdpError> {
    let n = r.count16(field, 2)?;
    (0..n).map(|_| parse(r.str16(field)?, field)).collect()
}

fn put_opt_str(w: &mut WireWriter, s: Option<&str>) -> Result<(), WireError> {
    match s {
        Some(s) => {
            w.u8(1);
            w.str16(s)
        }
        None => {
            w.u8(0);
            Ok(())
        }
    }
}

fn get_opt_str<'a>(
    r: &mut WireReader<'a>,
    field: &'static str,
) -> Result<Option<&'a str>, WireError> {
    match r.u8(field)? {
        0 => Ok(None),
        _ => r.str16(field).map(Some),
    }
}

fn put_identity(w: &mut WireWriter, i: &Identity) -> Result<(), WireError> {
    w.str16(i.sub.as_str())?;
    put_opt_str(w, i.court.as_ref().map(ToString::to_string).as_deref())?;
    put_strs(w, &i.roles)?;
    w.str16(&i.clearance.to_string())?;
    w.str16(&i.acr.to_string())?;
    put_strs(w, &i.amr)?;
    w.str16(i.zone.as_str())?;
    w.u64(i.auth_time.as_millis());
    Ok(())
}

fn get_identity(r: &mut WireReader<'_>) -> Result<Identity, IdpError> {
    Ok(Identity {
        sub: parse(r.str16("sub")?, "sub")?,
        court: get_opt_str(r, "court")?
            .map(|c| parse(c, "court"))
            .transpose()?,
        roles: get_strs(r, "roles")?,
        clearance: parse(r.str16("clearance")?, "clearance")?,
        acr: parse(r.str16("acr")?, "acr")?,
        amr: get_strs(r, "amr")?,
        zone: parse(r.str16("zone")?, "zone")?,
        auth_time: UnixTime::from_millis(r.u64("auth_time")?),
        // kept at the end of the records that carry it, by their versions
        device: None,
    })
}

/// The identity's device, written at the end of a record whose version carries it.
fn put_device(w: &mut WireWriter, i: &Identity) -> Result<(), WireError> {
    put_opt_str(w, i.device.as_deref())
}

/// The identity's device, read at the end of a record whose version carries it.
fn get_device(r: &mut WireReader<'_>) -> Result<Option<String>, IdpError> {
    get_opt_string(r, "device")
}

fn put_tokens(w: &mut WireWriter, t: &[(String, UnixTime)]) -> Result<(), WireError> {
    w.len32(t.len(), "access_tokens")?;
    for (jti, exp) in t {
        w.str16(jti)?;
        w.u64(exp.as_millis());
    }
    Ok(())
}

fn get_tokens(r: &mut WireReader<'_>) -> Result<Vec<(String, UnixTime)>, IdpError> {
    let n = r.count32("access_tokens", 10)?;
    (0..n)
        .map(|_| {
            let jti = r.str16("jti")?.to_owned();
            Ok::<_, WireError>((jti, UnixTime::from_millis(r.u64("expiry")?)))
        })
        .collect::<Result<_, _>>()
        .map_err(IdpError::from)
}

/// A code record's version: 2 adds the `claims` request and the session (a version 1 record has
/// neither), 3 the identity's device at the end.
const CODE_VERSION: u8 = 3;

/// The code record version that added the `claims` request and the session.
const CODE_VERSION_CLAIMS: u8 = 2;

fn put_claims(w: &mut WireWriter, list: &[RequestedClaim]) -> Result<(), WireError> {
    w.len16(list.len(), "claims")?;
    for c in list {
        w.str16(&c.name)?;
        w.u8(u8::from(c.essential));
    }
    Ok(())
}

fn get_claims(r: &mut WireReader<'_>) -> Result<Vec<RequestedClaim>, IdpError> {
    let n = r.count16("claims", 3)?;
    (0..n)
        .map(|_| {
            let name = r.str16("claim")?.to_owned();
            Ok::<_, WireError>(RequestedClaim {
                name,
                essential: r.u8("essential")? != 0,
            })
        })
        .collect::<Result<_, _>>()
        .map_err(IdpError::from)
}

/// The stored form of a code record.
pub(crate) fn encode_code(c: &CodeRecord) -> Result<Vec<u8>, IdpError> {
    let mut w = WireWriter::new();
    w.u8(CODE_VERSION);
    w.str16(&c.client_id)?;
    w.str16(&c.redirect_uri)?;
    w.u8(u8::from(c.redirect_uri_sent));
    put_opt_str(&mut w, c.challenge.as_ref().map(CodeChallenge::as_str))?;
    put_identity(&mut w, &c.identity)?;
    put_strs(&mut w, &c.scope)?;
    put_opt_str(&mut w, c.nonce.as_deref())?;
    w.u64(c.expires_at.as_millis());
    w.u8(u8::from(c.used) | (u8::from(c.reused) << 1));
    put_tokens(&mut w, &c.access_tokens)?;
    match &c.family {
        Some(f) => {
            w.u8(1);
            w.raw(f);
        }
        None => w.u8(0),
    }
    put_claims(&mut w, &c.claims.id_token)?;
    put_claims(&mut w, &c.claims.userinfo)?;
    match &c.session {
        Some(k) => {
            w.u8(1);
            w.raw(k);
        }
        None => w.u8(0),
    }
    put_device(&mut w, &c.identity)?;
    Ok(w.into_bytes())
}

/// Reads a stored code record (version 1, 2 or 3).
pub(crate) fn decode_code(b: &[u8]) -> Result<CodeRecord, IdpError> {
    let mut r = WireReader::new(b);
    let version = r.u8("version")?;
    if !(VERSION..=CODE_VERSION).contains(&version) {
        return Err(IdpError::Store(format!(
            "a stored record has version `{version}`"
        )));
    }
    let client_id = r.str16("client_id")?.to_owned();
    let redirect_uri = r.str16("redirect_uri")?.to_owned();
    let redirect_uri_sent = r.u8("redirect_uri_sent")? != 0;
    let challenge = get_opt_str(&mut r, "challenge")?.map(CodeChallenge::from_stored);
    let mut identity = get_identity(&mut r)?;
    let scope = get_strs(&mut r, "scope")?;
    let nonce = get_opt_str(&mut r, "nonce")?.map(str::to_owned);
    let expires_at = UnixTime::from_millis(r.u64("expires_at")?);
    let flags = r.u8("flags")?;
    let access_tokens = get_tokens(&mut r)?;
    let family = match r.u8("family")? {
        0 => None,
        _ => Some(r.array::<16>("family")?),
    };
    let (claims, session) = if version >= CODE_VERSION_CLAIMS {
        let claims = ClaimsRequest {
            id_token: get_claims(&mut r)?,
            userinfo: get_claims(&mut r)?,
        };
        let session = match r.u8("session")? {
            0 => None,
            _ => Some(r.array::<32>("session")?),
        };
        (claims, session)
    } else {
        (ClaimsRequest::default(), None)
    };
    if version == CODE_VERSION {
        identity.device = get_device(&mut r)?;
    }
    r.finish()?;
    Ok(CodeRecord {
        client_id,
        redirect_uri,
        redirect_uri_sent,
        challenge,
        identity,
        scope,
        nonce,
        expires_at,
        used: flags & 1 != 0,
        reused: flags & 2 != 0,
        access_tokens,
        family,
        claims,
        session,
    })
}

/// A family record's version: 2 keeps the rotated-out tokens as a count and a fixed-size
/// filter (version 1 listed up to 256 of their hashes, read into the filter), 3 adds the
/// identity's device at the end.
const FAMILY_VERSION: u8 = 3;

/// The family record version that brought the filter.
const FAMILY_VERSION_FILTER: u8 = 2;

/// The stored form of a refresh-token family: its size does not grow with its chain (only its
/// live access tokens are listed).
pub(crate) fn encode_family(f: &RefreshFamily) -> Result<Vec<u8>, IdpError> {
    let mut w = WireWriter::new();
    w.u8(FAMILY_VERSION);
    w.raw(&f.id);
    w.str16(&f.client_id)?;
    put_identity(&mut w, &f.identity)?;
    put_strs(&mut w, &f.scope)?;
    w.raw(&f.current);
    let (count, bits) = f.rotated.parts();
    w.u32(count);
    w.raw(bits);
    w.u64(f.expires_at.as_millis());
    w.u8(u8::from(f.revoked));
    put_tokens(&mut w, &f.access_tokens)?;
    put_device(&mut w, &f.identity)?;
    Ok(w.into_bytes())
}

/// Reads a stored refresh-token family (version 1, 2 or 3).
pub(crate) fn decode_family(b: &[u8]) -> Result<RefreshFamily, IdpError> {
    let mut r = WireReader::new(b);
    let version = r.u8("version")?;
    if !(VERSION..=FAMILY_VERSION).contains(&version) {
        return Err(IdpError::Store(format!(
            "a stored record has version `{version}`"
        )));
    }
    let id = r.array::<16>("id")?;
    let client_id = r.str16("client_id")?.to_owned();
    let mut identity = get_identity(&mut r)?;
    let scope = get_strs(&mut r, "scope")?;
    let current = r.array::<32>("current")?;
    let rotated = if version >= FAMILY_VERSION_FILTER {
        let count = r.u32("rotated")?;
        RotatedTokens::from_parts(count, r.array::<ROTATED_FILTER_BYTES>("rotated")?)
    } else {
        let n = r.count16("rotated", 32)?;
        let mut rotated = RotatedTokens::new();
        for _ in 0..n {
            rotated.insert(&r.array::<32>("rotated")?);
        }
        rotated
    };
    let expires_at = UnixTime::from_millis(r.u64("expires_at")?);
    let revoked = r.u8("revoked")? != 0;
    let access_tokens = get_tokens(&mut r)?;
    if version == FAMILY_VERSION {
        identity.device = get_device(&mut r)?;
    }
    r.finish()?;
    Ok(RefreshFamily {
        id,
        client_id,
        identity,
        scope,
        current,
        rotated,
        expires_at,
        revoked,
        access_tokens,
    })
}

/// A session record's version: 2 adds the identity's device at the end.
const SESSION_VERSION: u8 = 2;

/// The stored form of a session.
pub(crate) fn encode_session(s: &Session) -> Result<Vec<u8>, IdpError> {
    let mut w = WireWriter::new();
    w.u8(SESSION_VERSION);
    match &s.identity {
        Some(i) => {
            w.u8(1);
            put_identity(&mut w, i)?;
        }
        None => w.u8(0),
    }
    w.u64(s.created_at.as_millis());
    w.u64(s.last_seen.as_millis());
    w.bytes16(s.csrf_key().expose(), "csrf_key")?;
    if let Some(i) = &s.identity {
        put_device(&mut w, i)?;
    }
    Ok(w.into_bytes())
}

/// Reads a stored session.
pub(crate) fn decode_session(b: &[u8]) -> Result<Session, IdpError> {
    let mut r = WireReader::new(b);
    let version = r.u8("version")?;
    if !(VERSION..=SESSION_VERSION).contains(&version) {
        return Err(IdpError::Store(format!(
            "a stored record has version `{version}`"
        )));
    }
    let mut identity = match r.u8("identity")? {
        0 => None,
        _ => Some(get_identity(&mut r)?),
    };
    let created_at = UnixTime::from_millis(r.u64("created_at")?);
    let last_seen = UnixTime::from_millis(r.u64("last_seen")?);
    let key = Secret::new(r.bytes16("csrf_key")?.to_vec());
    if version == SESSION_VERSION
        && let Some(i) = identity.as_mut()
    {
        i.device = get_device(&mut r)?;
    }
    r.finish()?;
    Ok(Session::from_parts(identity, created_at, last_seen, key))
}

fn put_opt_u64(w: &mut WireWriter, v: Option<u64>) {
    match v {
        Some(v) => {
            w.u8(1);
            w.u64(v);
        }
        None => w.u8(0),
    }
}

fn get_opt_u64(r: &mut WireReader<'_>, field: &'static str) -> Result<Option<u64>, WireError> {
    match r.u8(field)? {
        0 => Ok(None),
        _ => r.u64(field).map(Some),
    }
}

fn get_opt_string(r: &mut WireReader<'_>, field: &'static str) -> Result<Option<String>, IdpError> {
    Ok(get_opt_str(r, field)?.map(str::to_owned))
}

/// The stored form of a court.
pub(crate) fn encode_court(c: &Court) -> Result<Vec<u8>, IdpError> {
    let mut w = WireWriter::new();
    w.u8(VERSION);
    w.str16(c.code.as_str())?;
    w.str16(&c.name)?;
    Ok(w.into_bytes())
}

/// Reads a stored court.
pub(crate) fn decode_court(b: &[u8]) -> Result<Court, IdpError> {
    let mut r = WireReader::new(b);
    check_version(&mut r)?;
    let code = parse(r.str16("code")?, "code")?;
    let name = r.str16("name")?.to_owned();
    r.finish()?;
    Ok(Court { code, name })
}

/// The stored form of a user.
pub(crate) fn encode_user(u: &User) -> Result<Vec<u8>, IdpError> {
    let mut w = WireWriter::new();
    w.u8(VERSION);
    w.str16(u.sub.as_str())?;
    w.str16(&u.login)?;
    w.str16(&u.display_name)?;
    put_opt_str(&mut w, u.given_name.as_deref())?;
    put_opt_str(&mut w, u.family_name.as_deref())?;
    put_opt_str(&mut w, u.email.as_deref())?;
    put_opt_str(&mut w, u.phone.as_deref())?;
    put_opt_str(&mut w, u.court.as_ref().map(CourtCode::as_str))?;
    put_strs(&mut w, &u.roles)?;
    w.str16(u.clearance.as_str())?;
    w.u8(match u.status {
        UserStatus::Enabled => 0,
        UserStatus::Disabled => 1,
    });
    match &u.password {
        Some(p) => {
            w.u8(1);
            w.str16(&p.hash)?;
            put_strs(&mut w, &p.history)?;
            w.u64(p.changed_at.as_millis());
        }
        None => w.u8(0),
    }
    match &u.totp {
        Some(t) => {
            w.u8(1);
            w.bytes16(t.secret.expose(), "totp")?;
            put_opt_u64(&mut w, t.last_step);
        }
        None => w.u8(0),
    }
    match &u.totp_pending {
        Some(t) => {
            w.u8(1);
            w.bytes16(t.expose(), "totp_pending")?;
        }
        None => w.u8(0),
    }
    let actions: Vec<&str> = u.required_actions.iter().map(|a| a.as_str()).collect();
    put_strs(&mut w, &actions)?;
    w.u64(u.created_at.as_millis());
    Ok(w.into_bytes())
}

/// Reads a stored user.
pub(crate) fn decode_user(b: &[u8]) -> Result<User, IdpError> {
    let mut r = WireReader::new(b);
    check_version(&mut r)?;
    let sub = parse(r.str16("sub")?, "sub")?;
    let login = r.str16("login")?.to_owned();
    let display_name = r.str16("display_name")?.to_owned();
    let given_name = get_opt_string(&mut r, "given_name")?;
    let family_name = get_opt_string(&mut r, "family_name")?;
    let email = get_opt_string(&mut r, "email")?;
    let phone = get_opt_string(&mut r, "phone")?;
    let court = get_opt_str(&mut r, "court")?
        .map(|c| parse(c, "court"))
        .transpose()?;
    let roles = get_strs(&mut r, "roles")?;
    let clearance = parse(r.str16("clearance")?, "clearance")?;
    let status = match r.u8("status")? {
        0 => UserStatus::Enabled,
        1 => UserStatus::Disabled,
        _ => return Err(IdpError::Store("a stored `status` is not valid".into())),
    };
    let password = match r.u8("password")? {
        0 => None,
        _ => Some(PasswordRecord {
            hash: r.str16("hash")?.to_owned(),
            history: get_strs(&mut r, "history")?,
            changed_at: UnixTime::from_millis(r.u64("changed_at")?),
        }),
    };
    let totp = match r.u8("totp")? {
        0 => None,
        _ => Some(TotpCredential {
            secret: TotpSecret::from_bytes(r.bytes16("totp")?.to_vec()),
            last_step: get_opt_u64(&mut r, "last_step")?,
        }),
    };
    let totp_pending = match r.u8("totp_pending")? {
        0 => None,
        _ => Some(TotpSecret::from_bytes(r.bytes16("totp_pending")?.to_vec())),
    };
    let actions: Vec<String> = get_strs(&mut r, "required_actions")?;
    let required_actions = actions
        .iter()
        .map(|a| {
            RequiredAction::parse(a)
                .ok_or_else(|| IdpError::Store("a stored required action is not valid".into()))
        })
        .collect::<Result<_, _>>()?;
    let created_at = UnixTime::from_millis(r.u64("created_at")?);
    r.finish()?;
    Ok(User {
        sub,
        login,
        display_name,
        given_name,
        family_name,
        email,
        phone,
        court,
        roles,
        clearance,
        status,
        password,
        totp,
        totp_pending,
        required_actions,
        created_at,
    })
}

/// The stored form of a registered client.
pub(crate) fn encode_client(c: &Client) -> Result<Vec<u8>, IdpError> {
    let mut w = WireWriter::new();
    w.u8(VERSION);
    w.str16(&c.id)?;
    match &c.secret_sha256 {
        Some(h) => {
            w.u8(1);
            w.raw(h);
        }
        None => w.u8(0),
    }
    w.str16(c.auth_method.as_str())?;
    put_strs(&mut w, &c.redirect_uris)?;
    put_strs(&mut w, &c.post_logout_redirect_uris)?;
    let grants: Vec<&str> = c.grants.iter().map(|g| g.as_str()).collect();
    put_strs(&mut w, &grants)?;
    w.u8(u8::from(c.native_loopback));
    put_strs(&mut w, &c.extra_scopes)?;
    Ok(w.into_bytes())
}

/// Reads a stored client.
pub(crate) fn decode_client(b: &[u8]) -> Result<Client, IdpError> {
    let mut r = WireReader::new(b);
    check_version(&mut r)?;
    let id = r.str16("id")?.to_owned();
    let secret_sha256 = match r.u8("secret")? {
        0 => None,
        _ => Some(r.array::<32>("secret")?),
    };
    let auth_method = ClientAuthMethod::parse(r.str16("auth_method")?)
        .ok_or_else(|| IdpError::Store("a stored `auth_method` is not valid".into()))?;
    let redirect_uris = get_strs(&mut r, "redirect_uris")?;
    let post_logout_redirect_uris = get_strs(&mut r, "post_logout_redirect_uris")?;
    let grant_names: Vec<String> = get_strs(&mut r, "grants")?;
    let grants = grant_names
        .iter()
        .map(|g| {
            GrantType::parse(g).ok_or_else(|| IdpError::Store("a stored grant is not valid".into()))
        })
        .collect::<Result<_, _>>()?;
    let native_loopback = r.u8("native_loopback")? != 0;
    let extra_scopes = get_strs(&mut r, "extra_scopes")?;
    r.finish()?;
    Ok(Client {
        id,
        secret_sha256,
        auth_method,
        redirect_uris,
        post_logout_redirect_uris,
        grants,
        native_loopback,
        extra_scopes,
    })
}

/// The stored form of what a client authenticates with beyond a secret.
pub(crate) fn encode_client_keys(k: &ClientKeys) -> Result<Vec<u8>, IdpError> {
    let mut w = WireWriter::new();
    w.u8(VERSION);
    let (tag, text) = match k {
        ClientKeys::Jwks(t) => (1, t),
        ClientKeys::JwksUri(u) => (2, u),
        ClientKeys::TlsSubject(s) => (3, s),
    };
    w.u8(tag);
    w.str32(text)?;
    Ok(w.into_bytes())
}

/// Reads what a client authenticates with beyond a secret.
pub(crate) fn decode_client_keys(b: &[u8]) -> Result<ClientKeys, IdpError> {
    let mut r = WireReader::new(b);
    check_version(&mut r)?;
    let tag = r.u8("keys")?;
    let text = r.str32("keys")?.to_owned();
    r.finish()?;
    match tag {
        1 => Ok(ClientKeys::Jwks(text)),
        2 => Ok(ClientKeys::JwksUri(text)),
        3 => Ok(ClientKeys::TlsSubject(text)),
        _ => Err(IdpError::Store("stored client keys are not valid".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize::RequestedClaim;

    fn code() -> CodeRecord {
        CodeRecord {
            client_id: "case-app".into(),
            redirect_uri: "https://case.example/cb".into(),
            redirect_uri_sent: true,
            challenge: None,
            identity: crate::tokens::tests::judge(),
            scope: vec!["openid".into()],
            nonce: Some("n-1".into()),
            expires_at: UnixTime::from_secs(1_800_000_060),
            used: false,
            reused: false,
            access_tokens: vec![("jti-1".into(), UnixTime::from_secs(1_800_000_300))],
            family: Some([7; 16]),
            claims: ClaimsRequest {
                id_token: vec![RequestedClaim {
                    name: "email".into(),
                    essential: true,
                }],
                userinfo: vec![RequestedClaim {
                    name: "phone_number".into(),
                    essential: false,
                }],
            },
            session: Some([9; 32]),
        }
    }

    #[test]
    fn code_records_keep_their_claims_request() {
        let c = code();
        let b = encode_code(&c).unwrap();
        assert_eq!(b.first(), Some(&CODE_VERSION));
        assert_eq!(decode_code(&b).unwrap(), c);
    }

    #[test]
    fn version_1_code_records_still_read_with_no_claims_request() {
        let mut c = code();
        c.claims = ClaimsRequest::default();
        c.session = None;
        let mut b = encode_code(&c).unwrap();
        // version 1 ended after the family: no claims lists (two empty ones are 4 bytes), no
        // session (1 byte), no device (1 byte)
        b.truncate(b.len() - 6);
        *b.first_mut().unwrap() = 1;
        assert_eq!(decode_code(&b).unwrap(), c);
        *b.first_mut().unwrap() = 4;
        assert!(decode_code(&b).is_err());
    }

    #[test]
    fn version_1_families_read_their_rotated_tokens_into_the_filter() {
        let h = |i: u8| crate::grants::sha256(&[i]);
        let mut w = WireWriter::new();
        w.u8(1);
        w.raw(&[3; 16]);
        w.str16("case-app").unwrap();
        put_identity(&mut w, &crate::tokens::tests::judge()).unwrap();
        put_strs(&mut w, &["openid"]).unwrap();
        w.raw(&h(9));
        w.len16(3, "rotated").unwrap();
        for i in 0..3 {
            w.raw(&h(i));
        }
        w.u64(1_800_028_800_000);
        w.u8(0);
        put_tokens(
            &mut w,
            &[("jti-1".into(), UnixTime::from_secs(1_800_000_300))],
        )
        .unwrap();
        let f = decode_family(&w.into_bytes()).unwrap();
        assert_eq!(f.rotated.len(), 3);
        assert!((0..3).all(|i| f.rotated.contains(&h(i))));
        assert!(!f.rotated.contains(&h(9)));
        assert_eq!(f.current, h(9));
        assert_eq!(f.access_tokens.len(), 1);
        // written again, it is a version 2 record that reads back the same
        let b = encode_family(&f).unwrap();
        assert_eq!(b.first(), Some(&FAMILY_VERSION));
        assert_eq!(decode_family(&b).unwrap(), f);
        let mut bad = b.clone();
        *bad.first_mut().unwrap() = 4;
        assert!(decode_family(&bad).is_err());
        assert!(decode_family(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn the_identity_s_device_round_trips_in_codes_families_and_sessions() {
        let mut c = code();
        c.identity.device = Some("tablet-07".into());
        assert_eq!(decode_code(&encode_code(&c).unwrap()).unwrap(), c);
        let mut rotated = RotatedTokens::new();
        rotated.insert(&[1; 32]);
        let f = RefreshFamily {
            id: [3; 16],
            client_id: "case-app".into(),
            identity: c.identity.clone(),
            scope: vec!["openid".into()],
            current: [2; 32],
            rotated,
            expires_at: UnixTime::from_secs(1_800_028_800),
            revoked: false,
            access_tokens: vec![("jti-1".into(), UnixTime::from_secs(1_800_000_300))],
        };
        assert_eq!(decode_family(&encode_family(&f).unwrap()).unwrap(), f);
        let s = Session::from_parts(
            Some(c.identity.clone()),
            UnixTime::from_secs(1_800_000_000),
            UnixTime::from_secs(1_800_000_010),
            Secret::new(vec![4; 32]),
        );
        let back = decode_session(&encode_session(&s).unwrap()).unwrap();
        assert_eq!(back.identity, s.identity);
        // a version 1 session (no device at its end) still reads, with none
        let mut none = c.identity.clone();
        none.device = None;
        let s1 = Session::from_parts(
            Some(none.clone()),
            UnixTime::from_secs(1_800_000_000),
            UnixTime::from_secs(1_800_000_010),
            Secret::new(vec![4; 32]),
        );
        let mut b = encode_session(&s1).unwrap();
        b.pop();
        *b.first_mut().unwrap() = 1;
        assert_eq!(decode_session(&b).unwrap().identity, Some(none));
    }

    #[test]
    fn client_keys_round_trip() {
        for k in [
            ClientKeys::Jwks(r#"{"keys":[]}"#.into()),
            ClientKeys::JwksUri("https://rp.example/jwks".into()),
            ClientKeys::TlsSubject("exchange-n1".into()),
        ] {
            let b = encode_client_keys(&k).unwrap();
            assert_eq!(decode_client_keys(&b).unwrap(), k);
        }
        assert!(decode_client_keys(&[VERSION, 9, 0, 0, 0, 0]).is_err());
        let mut c = crate::client::tests::web_client();
        c.auth_method = ClientAuthMethod::PrivateKeyJwt;
        c.secret_sha256 = None;
        assert_eq!(decode_client(&encode_client(&c).unwrap()).unwrap(), c);
    }
}
