//! The stored forms of the records the [`Store`](crate::Store) keeps, on the core wire codec
//! (each begins with a version byte), so any backend keeps the same bytes.

use std::str::FromStr;

use tianping_core::{Secret, UnixTime, WireError, WireReader, WireWriter};

use crate::IdpError;
use crate::grants::{CodeRecord, RefreshFamily};
use crate::pkce::CodeChallenge;
use crate::session::Session;
use crate::tokens::Identity;

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
    })
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

/// The stored form of a code record.
pub(crate) fn encode_code(c: &CodeRecord) -> Result<Vec<u8>, IdpError> {
    let mut w = WireWriter::new();
    w.u8(VERSION);
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
    Ok(w.into_bytes())
}

/// Reads a stored code record.
pub(crate) fn decode_code(b: &[u8]) -> Result<CodeRecord, IdpError> {
    let mut r = WireReader::new(b);
    check_version(&mut r)?;
    let client_id = r.str16("client_id")?.to_owned();
    let redirect_uri = r.str16("redirect_uri")?.to_owned();
    let redirect_uri_sent = r.u8("redirect_uri_sent")? != 0;
    let challenge = get_opt_str(&mut r, "challenge")?.map(CodeChallenge::from_stored);
    let identity = get_identity(&mut r)?;
    let scope = get_strs(&mut r, "scope")?;
    let nonce = get_opt_str(&mut r, "nonce")?.map(str::to_owned);
    let expires_at = UnixTime::from_millis(r.u64("expires_at")?);
    let flags = r.u8("flags")?;
    let access_tokens = get_tokens(&mut r)?;
    let family = match r.u8("family")? {
        0 => None,
        _ => Some(r.array::<16>("family")?),
    };
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
    })
}

/// The stored form of a refresh-token family.
pub(crate) fn encode_family(f: &RefreshFamily) -> Result<Vec<u8>, IdpError> {
    let mut w = WireWriter::new();
    w.u8(VERSION);
    w.raw(&f.id);
    w.str16(&f.client_id)?;
    put_identity(&mut w, &f.identity)?;
    put_strs(&mut w, &f.scope)?;
    w.raw(&f.current);
    w.len16(f.rotated.len(), "rotated")?;
    for h in &f.rotated {
        w.raw(h);
    }
    w.u64(f.expires_at.as_millis());
    w.u8(u8::from(f.revoked));
    put_tokens(&mut w, &f.access_tokens)?;
    Ok(w.into_bytes())
}

/// Reads a stored refresh-token family.
pub(crate) fn decode_family(b: &[u8]) -> Result<RefreshFamily, IdpError> {
    let mut r = WireReader::new(b);
    check_version(&mut r)?;
    let id = r.array::<16>("id")?;
    let client_id = r.str16("client_id")?.to_owned();
    let identity = get_identity(&mut r)?;
    let scope = get_strs(&mut r, "scope")?;
    let current = r.array::<32>("current")?;
    let n = r.count16("rotated", 32)?;
    let rotated = (0..n)
        .map(|_| r.array::<32>("rotated"))
        .collect::<Result<_, WireError>>()?;
    let expires_at = UnixTime::from_millis(r.u64("expires_at")?);
    let revoked = r.u8("revoked")? != 0;
    let access_tokens = get_tokens(&mut r)?;
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

/// The stored form of a session.
pub(crate) fn encode_session(s: &Session) -> Result<Vec<u8>, IdpError> {
    let mut w = WireWriter::new();
    w.u8(VERSION);
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
    Ok(w.into_bytes())
}

/// Reads a stored session.
pub(crate) fn decode_session(b: &[u8]) -> Result<Session, IdpError> {
    let mut r = WireReader::new(b);
    check_version(&mut r)?;
    let identity = match r.u8("identity")? {
        0 => None,
        _ => Some(get_identity(&mut r)?),
    };
    let created_at = UnixTime::from_millis(r.u64("created_at")?);
    let last_seen = UnixTime::from_millis(r.u64("last_seen")?);
    let key = Secret::new(r.bytes16("csrf_key")?.to_vec());
    r.finish()?;
    Ok(Session::from_parts(identity, created_at, last_seen, key))
}
