//! Directory updates (DESIGN §5, §8): signed, versioned records of the directory's changes, the
//! way one directory reaches every zone's IdP without any zone reaching another.
//!
//! The directory authority (the IdP of `private`) numbers every change of its directory; an
//! update carries the current records of what changed in the versions `(since, until]`, for one
//! destination zone, filtered by what the policy's directory flow to that zone lets go
//! ([`FlowTerms`]), and is signed with the authority's node key. Public registrations made in
//! `internet` travel the other way as updates of their own ([`UpdateKind::Registration`]),
//! signed by the internet IdP's node key, and carry only `p-` subjects.
//!
//! [`check_update`] is the one validation function (bytes in, verified records or the check that
//! failed out), with no I/O: the signer's certificate chain is checked by a [`SignerCheck`] the
//! caller gives (the binary checks it against the zone's trust bundle), the last version applied
//! from the source is the caller's to read. The exchange's `directory-update` filter runs it
//! without the version (it keeps no state), the receiving IdP with it.
//!
//! Records are state, not deltas: a user record is the account as it is at `until`, with only
//! the attributes and credentials the flow allows; applying one twice changes nothing. The
//! `cert` credential is the account's registered devices (their certificate fingerprints), all
//! of them, so a device missing from it is removed where the record arrives.
//!
//! Encoding (the core wire codec, big-endian): format byte `1`; kind (`1` directory, `2`
//! registration); source and destination zones; `since`, `until` and time (ms); the records
//! (`u32` count; each a version, a tag and the fields); the signer's certificate chain (DER,
//! leaf first, one to four); the signer's key (algorithm code, key); then the signature
//! (algorithm code, bytes) over [`UPDATE_CONTEXT`] and everything before it.

use tianping_core::{
    Algorithm, Clearance, CourtCode, PublicKey, Role, Signature, Signer, SubjectId, UnixTime,
    WireError, WireReader, WireWriter, ZoneName,
};

use crate::device::Device;
use crate::directory::{Court, TotpCredential, User, UserStatus};
use crate::password::PasswordRecord;
use crate::totp::TotpSecret;

/// The format byte of an update.
pub const UPDATE_FORMAT: u8 = 1;
/// The largest update read (the directory flows' `max-size` is 64 MiB).
pub const MAX_UPDATE: usize = 64 << 20;
/// The most certificates in the signer's chain.
pub const MAX_UPDATE_CHAIN: usize = 4;
/// What the signature covers before the update's bytes.
pub const UPDATE_CONTEXT: &[u8] = b"tianping directory-update v1\0";
/// The attributes of a user record, as the policy names them (`sub` is always carried, with the
/// sign-in name).
pub const ATTRIBUTES: &[&str] = &[
    "sub",
    "name",
    "court",
    "roles",
    "clearance",
    "status",
    "email",
    "phone",
];
/// The credentials of a user record, as the policy names them.
pub const CREDENTIALS: &[&str] = &["password-hash", "otp-seed", "cert"];

const MAX_CERT: usize = 16 * 1024;
const TAG_COURT: u8 = 1;
const TAG_USER: u8 = 2;

/// Which way an update goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// From the directory authority in `private` to a zone's IdP.
    Directory,
    /// Public registrations, from the `internet` IdP to the authority.
    Registration,
}

impl UpdateKind {
    fn code(self) -> u8 {
        match self {
            UpdateKind::Directory => 1,
            UpdateKind::Registration => 2,
        }
    }

    /// The name as commands show it.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateKind::Directory => "directory",
            UpdateKind::Registration => "registration",
        }
    }
}

/// A user as an update carries it: the subject id and sign-in name always, then the attributes
/// and credentials the flow lets go, each by its policy name, in name order.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The subject id.
    pub sub: SubjectId,
    /// The sign-in name.
    pub login: String,
    /// `(name, value)`: `name`, `court`, `roles` (comma-separated), `clearance`, `status`,
    /// `email`, `phone`; an empty `court`, `email` or `phone` is none.
    pub attributes: Vec<(String, String)>,
    /// `(name, value)`: `password-hash` (the change time in ms, 8 bytes, then the PHC string),
    /// `otp-seed` (the secret), `cert` (the registered devices); an empty `password-hash` or
    /// `otp-seed` is none.
    pub credentials: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("sub", &self.sub)
            .field("login", &self.login)
            .field("attributes", &self.attributes)
            .field(
                "credentials",
                &self.credentials.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One change of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A court, as it is now.
    Court(Court),
    /// A user, as it is now.
    User(UserRecord),
}

/// A change with the version the source numbered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The source's version of the change.
    pub version: u64,
    /// What changed.
    pub change: Change,
}

/// What an update says, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateBody {
    /// Which way it goes.
    pub kind: UpdateKind,
    /// The zone whose IdP made it.
    pub source: ZoneName,
    /// The zone it is for.
    pub to: ZoneName,
    /// The last version before the update (the receiver must have applied it).
    pub since: u64,
    /// The last version the update brings.
    pub until: u64,
    /// When it was made.
    pub time: UnixTime,
    /// The records, by version.
    pub records: Vec<Record>,
}

/// A signed update, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUpdate {
    /// What it says.
    pub body: UpdateBody,
    /// The signer's certificate chain (DER, leaf first).
    pub chain: Vec<Vec<u8>>,
    /// The key that signed.
    pub signer: PublicKey,
    /// The signature over [`UPDATE_CONTEXT`] and the signed part.
    pub signature: Signature,
}

/// Why an update was refused: each variant is one check, named by [`check`](Self::check).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateRefusal {
    /// Not a directory update in its one encoding.
    #[error("not a directory update: {0}")]
    Malformed(String),
    /// The signature does not verify under the key the update carries.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// The signer is not the IdP node of the zone the update must come from.
    #[error("wrong signer: {0}")]
    WrongSigner(String),
    /// The update is of another kind, from another zone or for another zone.
    #[error("wrong zone: {0}")]
    WrongZone(String),
    /// Versions between the last one applied and the update's first are missing.
    #[error(
        "gap: the last version applied is {last}, the update starts after {since} (versions {} to {since} are missing)",
        last + 1
    )]
    Gap {
        /// The last version applied.
        last: u64,
        /// The update's `since`.
        since: u64,
    },
    /// Every version the update brings was applied already.
    #[error("replay: the update brings versions up to {until}, version {last} is applied already")]
    Replay {
        /// The last version applied.
        last: u64,
        /// The update's `until`.
        until: u64,
    },
    /// A record carries an account, attribute or credential the flow does not let go.
    #[error("not allowed by the flow: {0}")]
    Disallowed(String),
}

impl UpdateRefusal {
    /// The check that failed: `malformed`, `signature`, `signer`, `zone`, `gap`, `replay`,
    /// `disallowed`.
    pub fn check(&self) -> &'static str {
        match self {
            UpdateRefusal::Malformed(_) => "malformed",
            UpdateRefusal::BadSignature(_) => "signature",
            UpdateRefusal::WrongSigner(_) => "signer",
            UpdateRefusal::WrongZone(_) => "zone",
            UpdateRefusal::Gap { .. } => "gap",
            UpdateRefusal::Replay { .. } => "replay",
            UpdateRefusal::Disallowed(_) => "disallowed",
        }
    }
}

impl From<WireError> for UpdateRefusal {
    fn from(e: WireError) -> Self {
        UpdateRefusal::Malformed(e.to_string())
    }
}

/// What a directory flow lets go (the policy's `accounts`, `attributes`, `credentials`), as the
/// binary reads it from the policy: the IdP does not link the policy engine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlowTerms {
    /// The roles whose accounts may go (`any`: every role).
    pub accounts: Vec<Role>,
    /// The attributes that may go.
    pub attributes: Vec<String>,
    /// Each credential that may go, with the roles whose accounts' may.
    pub credentials: Vec<(String, Vec<Role>)>,
}

fn covers(allowed: &[Role], roles: &[Role]) -> bool {
    if roles.is_empty() {
        // an account with no roles goes only where every role's does
        Role::ALL.iter().all(|r| allowed.contains(r))
    } else {
        roles.iter().all(|r| allowed.contains(r))
    }
}

impl FlowTerms {
    /// Whether an account holding `roles` may go.
    pub fn allows_account(&self, roles: &[Role]) -> bool {
        covers(&self.accounts, roles)
    }

    /// Whether attribute `name` may go.
    pub fn allows_attribute(&self, name: &str) -> bool {
        self.attributes.iter().any(|a| a == name)
    }

    /// Whether credential `cred` of an account holding `roles` may go.
    pub fn allows_credential(&self, cred: &str, roles: &[Role]) -> bool {
        self.credentials
            .iter()
            .any(|(c, allowed)| c == cred && covers(allowed, roles))
    }

    /// The record as the flow lets it go: `None` when the account may not go at all (or subject
    /// ids may not), else without what the flow does not allow.
    pub fn filter(&self, record: &UserRecord) -> Option<UserRecord> {
        let roles = record.account_roles().ok()?;
        if !self.allows_account(&roles) || !self.allows_attribute("sub") {
            return None;
        }
        Some(UserRecord {
            sub: record.sub.clone(),
            login: record.login.clone(),
            attributes: record
                .attributes
                .iter()
                .filter(|(n, _)| self.allows_attribute(n))
                .cloned()
                .collect(),
            credentials: record
                .credentials
                .iter()
                .filter(|(n, _)| self.allows_credential(n, &roles))
                .cloned()
                .collect(),
        })
    }

    /// Refuses a record carrying what the flow does not let go, naming it.
    pub fn check(&self, record: &UserRecord) -> Result<(), UpdateRefusal> {
        let no = |what: String| Err(UpdateRefusal::Disallowed(what));
        let roles = record.account_roles()?;
        if !self.allows_attribute("sub") {
            return no(format!("subject ids (user `{}`)", record.sub));
        }
        if !self.allows_account(&roles) {
            return no(format!(
                "the account of user `{}` (roles `{}`)",
                record.sub,
                roles_text(&roles)
            ));
        }
        if let Some((n, _)) = record
            .attributes
            .iter()
            .find(|(n, _)| !self.allows_attribute(n))
        {
            return no(format!("attribute `{n}` of user `{}`", record.sub));
        }
        if let Some((n, _)) = record
            .credentials
            .iter()
            .find(|(n, _)| !self.allows_credential(n, &roles))
        {
            return no(format!("credential `{n}` of user `{}`", record.sub));
        }
        Ok(())
    }
}

fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn bad(why: impl Into<String>) -> UpdateRefusal {
    UpdateRefusal::Malformed(why.into())
}

impl UserRecord {
    /// The attribute `name`, if carried.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The credential `name`, if carried.
    pub fn credential(&self, name: &str) -> Option<&[u8]> {
        self.credentials
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The roles the flow's `accounts` is decided on: the `roles` attribute, or `public` for a
    /// `p-` subject that carries none (a public registration), else none.
    pub fn account_roles(&self) -> Result<Vec<Role>, UpdateRefusal> {
        match self.attribute("roles") {
            Some(text) => parse_roles(text),
            None if self.sub.as_str().starts_with("p-") => Ok(vec![Role::Public]),
            None => Ok(Vec::new()),
        }
    }

    /// The record of `user` with its registered `devices`, every attribute and credential it
    /// has (the flow's [`FlowTerms::filter`] takes away what may not go).
    pub fn from_user(user: &User, devices: &[Device]) -> Self {
        let mut attributes = vec![
            ("name".to_owned(), user.display_name.clone()),
            ("roles".to_owned(), roles_text(&user.roles)),
            ("clearance".to_owned(), user.clearance.to_string()),
            ("status".to_owned(), user.status.as_str().to_owned()),
        ];
        // what the account lacks goes as empty, so that where it arrives it is taken away too
        // (a court left, a TOTP reset, a certificate removed)
        let text = |v: Option<String>| v.unwrap_or_default();
        attributes.push((
            "court".to_owned(),
            text(user.court.as_ref().map(ToString::to_string)),
        ));
        attributes.push(("email".to_owned(), text(user.email.clone())));
        attributes.push(("phone".to_owned(), text(user.phone.clone())));
        attributes.sort();
        let password = user.password.as_ref().map_or_else(Vec::new, |p| {
            let mut v = p.changed_at.as_millis().to_be_bytes().to_vec();
            v.extend_from_slice(p.hash.as_bytes());
            v
        });
        let otp = user
            .totp
            .as_ref()
            .map_or_else(Vec::new, |t| t.secret.expose().to_vec());
        let mine: Vec<&Device> = devices.iter().filter(|d| d.owner == user.sub).collect();
        let mut credentials = vec![
            ("cert".to_owned(), encode_devices(&mine)),
            ("otp-seed".to_owned(), otp),
            ("password-hash".to_owned(), password),
        ];
        credentials.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            sub: user.sub.clone(),
            login: user.login.clone(),
            attributes,
            credentials,
        }
    }

    /// The user as the record makes it: `before` (the receiver's account, if any) with what the
    /// record carries set, or a new enabled account at `now`. With a `cert` credential, also the
    /// devices the user has now (else `None`: the receiver's stay as they are).
    pub fn to_user(
        &self,
        before: Option<&User>,
        now: UnixTime,
    ) -> Result<(User, Option<Vec<Device>>), UpdateRefusal> {
        let mut u = match before {
            Some(b) => b.clone(),
            None => User::new(self.sub.clone(), &self.login, self.login.clone(), now),
        };
        for (name, value) in &self.attributes {
            match name.as_str() {
                "name" => u.display_name.clone_from(value),
                "court" if value.is_empty() => u.court = None,
                "court" => u.court = Some(parse_text::<CourtCode>(value, "court")?),
                "roles" => u.roles = parse_roles(value)?,
                "clearance" => u.clearance = parse_text::<Clearance>(value, "clearance")?,
                "status" => {
                    u.status = match value.as_str() {
                        "enabled" => UserStatus::Enabled,
                        "disabled" => UserStatus::Disabled,
                        _ => return Err(bad(format!("status `{}`", value.escape_debug()))),
                    }
                }
                "email" => u.email = (!value.is_empty()).then(|| value.clone()),
                "phone" => u.phone = (!value.is_empty()).then(|| value.clone()),
                _ => return Err(bad(format!("attribute `{}`", name.escape_debug()))),
            }
        }
        let mut devices = None;
        for (name, value) in &self.credentials {
            match name.as_str() {
                "password-hash" if value.is_empty() => u.password = None,
                "otp-seed" if value.is_empty() => {
                    u.totp = None;
                    u.totp_pending = None;
                }
                "password-hash" => {
                    let (at, hash) = value
                        .split_first_chunk::<8>()
                        .ok_or_else(|| bad("a password-hash credential is short"))?;
                    let hash = std::str::from_utf8(hash)
                        .map_err(|_| bad("a password hash is not UTF-8"))?;
                    let changed_at = UnixTime::from_millis(u64::from_be_bytes(*at));
                    let same = u.password.as_ref().is_some_and(|p| p.hash == hash);
                    if !same {
                        u.password = Some(PasswordRecord {
                            hash: hash.to_owned(),
                            history: Vec::new(),
                            changed_at,
                        });
                    }
                }
                "otp-seed" => {
                    let same = u.totp.as_ref().is_some_and(|t| t.secret.expose() == value);
                    if !same {
                        u.totp = Some(TotpCredential {
                            secret: TotpSecret::from_bytes(value.clone()),
                            last_step: None,
                        });
                    }
                }
                "cert" => devices = Some(decode_devices(value, &self.sub)?),
                _ => return Err(bad(format!("credential `{}`", name.escape_debug()))),
            }
        }
        Ok((u, devices))
    }
}

fn parse_text<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, UpdateRefusal> {
    s.parse()
        .map_err(|_| bad(format!("{what} `{}` is not valid", s.escape_debug())))
}

fn parse_roles(text: &str) -> Result<Vec<Role>, UpdateRefusal> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',').map(|r| parse_text(r, "role")).collect()
}

fn encode_devices(devices: &[&Device]) -> Vec<u8> {
    let mut w = WireWriter::new();
    let mut sorted: Vec<&&Device> = devices.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    // lengths are bounded by the device's own checks; a longer one writes nothing usable
    let _ = w.len16(sorted.len(), "devices");
    for d in sorted {
        let _ = w.str16(&d.id);
        w.raw(&d.fingerprint);
        let _ = w.str16(&d.name);
        w.u64(d.added.as_millis());
    }
    w.into_bytes()
}

fn decode_devices(b: &[u8], owner: &SubjectId) -> Result<Vec<Device>, UpdateRefusal> {
    let mut r = WireReader::new(b);
    let n = r.count16("devices", 44)?;
    let mut out: Vec<Device> = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.str16("device id")?.to_owned();
        if !Device::valid_id(&id) {
            return Err(bad(format!("device id `{}`", id.escape_debug())));
        }
        let fingerprint = r.array::<32>("fingerprint")?;
        let name = r.str16("device name")?.to_owned();
        let added = UnixTime::from_millis(r.u64("added")?);
        if out.last().is_some_and(|d| d.id >= id) {
            return Err(bad("devices are not in id order"));
        }
        out.push(Device {
            id,
            owner: owner.clone(),
            fingerprint,
            name,
            added,
        });
    }
    r.finish()?;
    Ok(out)
}

// ---- encoding

fn put_user(w: &mut WireWriter, u: &UserRecord) -> Result<(), WireError> {
    w.str16(u.sub.as_str())?;
    w.str16(&u.login)?;
    w.len16(u.attributes.len(), "attributes")?;
    for (n, v) in &u.attributes {
        w.str16(n)?;
        w.str16(v)?;
    }
    w.len16(u.credentials.len(), "credentials")?;
    for (n, v) in &u.credentials {
        w.str16(n)?;
        w.bytes32(v, "credential")?;
    }
    Ok(())
}

fn get_user(r: &mut WireReader<'_>) -> Result<UserRecord, UpdateRefusal> {
    let sub = parse_text(r.str16("sub")?, "subject id")?;
    let login = r.str16("login")?.to_owned();
    crate::directory::check_login(&login).map_err(|e| bad(e.to_string()))?;
    let n = r.count16("attributes", 4)?;
    let mut attributes: Vec<(String, String)> = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str16("attribute")?;
        if !ATTRIBUTES.contains(&name) || name == "sub" {
            return Err(bad(format!("attribute `{}`", name.escape_debug())));
        }
        let value = r.str16("attribute value")?;
        if attributes.last().is_some_and(|(l, _)| l.as_str() >= name) {
            return Err(bad("attributes are not in name order, once each"));
        }
        attributes.push((name.to_owned(), value.to_owned()));
    }
    let n = r.count16("credentials", 6)?;
    let mut credentials: Vec<(String, Vec<u8>)> = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str16("credential")?;
        if !CREDENTIALS.contains(&name) {
            return Err(bad(format!("credential `{}`", name.escape_debug())));
        }
        let value = r.bytes32("credential value")?;
        if credentials.last().is_some_and(|(l, _)| l.as_str() >= name) {
            return Err(bad("credentials are not in name order, once each"));
        }
        credentials.push((name.to_owned(), value.to_vec()));
    }
    let record = UserRecord {
        sub,
        login,
        attributes,
        credentials,
    };
    // every value must be one the receiver can apply
    record.to_user(None, UnixTime::from_millis(0))?;
    Ok(record)
}

fn put_body(w: &mut WireWriter, b: &UpdateBody) -> Result<(), WireError> {
    w.u8(UPDATE_FORMAT);
    w.u8(b.kind.code());
    w.str16(b.source.as_str())?;
    w.str16(b.to.as_str())?;
    w.u64(b.since);
    w.u64(b.until);
    w.u64(b.time.as_millis());
    w.len32(b.records.len(), "records")?;
    for rec in &b.records {
        w.u64(rec.version);
        match &rec.change {
            Change::Court(c) => {
                w.u8(TAG_COURT);
                w.str16(c.code.as_str())?;
                w.str16(&c.name)?;
            }
            Change::User(u) => {
                w.u8(TAG_USER);
                put_user(w, u)?;
            }
        }
    }
    Ok(())
}

fn message(signed: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(UPDATE_CONTEXT.len() + signed.len());
    m.extend_from_slice(UPDATE_CONTEXT);
    m.extend_from_slice(signed);
    m
}

fn algorithm(r: &mut WireReader<'_>, field: &'static str) -> Result<Algorithm, UpdateRefusal> {
    let code = r.u8(field)?;
    Algorithm::from_code(code).ok_or_else(|| bad(format!("algorithm code {code}")))
}

impl UpdateBody {
    /// Checks what the body can check alone: versions in `(since, until]`, increasing.
    fn check(&self) -> Result<(), UpdateRefusal> {
        if self.since > self.until {
            return Err(bad("`since` is after `until`"));
        }
        let mut last = self.since;
        for rec in &self.records {
            if rec.version <= last || rec.version > self.until {
                return Err(bad(format!(
                    "record version {} is not in increasing order within {}..={}",
                    rec.version,
                    self.since.saturating_add(1),
                    self.until
                )));
            }
            last = rec.version;
        }
        Ok(())
    }

    /// Signs the update with a node's key; `chain` is that node's certificate chain (DER, leaf
    /// first). Returns its encoding.
    pub fn sign(&self, chain: &[Vec<u8>], signer: &dyn Signer) -> Result<Vec<u8>, UpdateRefusal> {
        self.check()?;
        if chain.is_empty() || chain.len() > MAX_UPDATE_CHAIN {
            return Err(bad("the signer's chain has one to four certificates"));
        }
        let mut w = WireWriter::new();
        put_body(&mut w, self)?;
        w.len16(chain.len(), "certificates")?;
        for c in chain {
            w.bytes32(c, "certificate")?;
        }
        let key = signer.public_key();
        w.u8(key.algorithm().code());
        w.bytes16(key.as_bytes(), "public key")?;
        let signature = signer
            .sign(&message(w.as_bytes()))
            .map_err(|e| UpdateRefusal::BadSignature(e.to_string()))?;
        w.u8(signature.algorithm().code());
        w.bytes16(signature.as_bytes(), "signature")?;
        let out = w.into_bytes();
        if out.len() > MAX_UPDATE {
            return Err(bad(format!(
                "{} bytes, over the {MAX_UPDATE} an update may have",
                out.len()
            )));
        }
        Ok(out)
    }
}

impl DirectoryUpdate {
    /// Reads an update and checks its signature under the key it carries (whether that key
    /// may sign it is [`check_update`]'s question), refusing anything
    /// [`UpdateBody::sign`] would not write.
    pub fn decode(bytes: &[u8]) -> Result<Self, UpdateRefusal> {
        if bytes.len() > MAX_UPDATE {
            return Err(bad(format!(
                "{} bytes, over the {MAX_UPDATE} an update may have",
                bytes.len()
            )));
        }
        let mut r = WireReader::new(bytes);
        let format = r.u8("format")?;
        if format != UPDATE_FORMAT {
            return Err(bad(format!("format {format}")));
        }
        let kind = match r.u8("kind")? {
            1 => UpdateKind::Directory,
            2 => UpdateKind::Registration,
            k => return Err(bad(format!("kind {k}"))),
        };
        let source = parse_text(r.str16("source")?, "zone")?;
        let to = parse_text(r.str16("to")?, "zone")?;
        let since = r.u64("since")?;
        let until = r.u64("until")?;
        let time = UnixTime::from_millis(r.u64("time")?);
        let n = r.count32("records", 9)?;
        let mut records = Vec::with_capacity(n);
        for _ in 0..n {
            let version = r.u64("version")?;
            let change = match r.u8("record tag")? {
                TAG_COURT => {
                    let code = parse_text(r.str16("court")?, "court")?;
                    let name = r.str16("court name")?.to_owned();
                    Change::Court(Court { code, name })
                }
                TAG_USER => Change::User(get_user(&mut r)?),
                t => return Err(bad(format!("record tag {t}"))),
            };
            records.push(Record { version, change });
        }
        let body = UpdateBody {
            kind,
            source,
            to,
            since,
            until,
            time,
            records,
        };
        body.check()?;
        let n = r.count16("certificates", 4)?;
        if n == 0 || n > MAX_UPDATE_CHAIN {
            return Err(bad("the signer's chain has one to four certificates"));
        }
        let mut chain = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.len32("certificate", MAX_CERT)?;
            let der = r.take(len, "certificate")?;
            if der.is_empty() {
                return Err(bad("an empty certificate"));
            }
            chain.push(der.to_vec());
        }
        let key_alg = algorithm(&mut r, "key algorithm")?;
        let signer = PublicKey::new(key_alg, r.bytes16("public key")?.to_vec())
            .map_err(|e| bad(e.to_string()))?;
        let signed_len = bytes.len() - r.remaining();
        let sig_alg = algorithm(&mut r, "signature algorithm")?;
        let signature = Signature::new(sig_alg, r.bytes16("signature")?.to_vec())
            .map_err(|e| bad(e.to_string()))?;
        r.finish()?;
        signer
            .verify(
                &message(bytes.get(..signed_len).unwrap_or_default()),
                &signature,
            )
            .map_err(|e| UpdateRefusal::BadSignature(e.to_string()))?;
        Ok(Self {
            body,
            chain,
            signer,
            signature,
        })
    }
}

/// Whether a certificate chain may sign for a zone's IdP: the binary checks it against the
/// zone's trust bundle (a `node` certificate of `zone`, valid at `time`, unrevoked, the IdP's,
/// whose key is `key`).
pub trait SignerCheck {
    /// `Ok` when it may; else why not.
    fn check(
        &self,
        chain: &[Vec<u8>],
        key: &PublicKey,
        zone: &ZoneName,
        time: UnixTime,
    ) -> Result<(), String>;
}

/// What the receiver expects of an update.
#[derive(Clone, Copy)]
pub struct Expect<'a> {
    /// Which way it must go.
    pub kind: UpdateKind,
    /// The zone it must come from (`private` for directory updates, `internet` for
    /// registrations): its IdP must have signed it.
    pub source: &'a ZoneName,
    /// The receiving zone.
    pub to: &'a ZoneName,
    /// What the flow lets go.
    pub terms: &'a FlowTerms,
    /// Who may sign for the source zone's IdP.
    pub signers: &'a dyn SignerCheck,
    /// The last version applied from the source (`None`: not checked, as the exchange's
    /// filter, which keeps no state, has it).
    pub last_applied: Option<u64>,
}

impl std::fmt::Debug for Expect<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expect")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .field("to", &self.to)
            .field("last_applied", &self.last_applied)
            .finish_non_exhaustive()
    }
}

/// The validation of a `directory-update`: decoded in its one encoding, the signature good, the
/// signer the source zone's IdP, of the kind and zones expected, following the last version
/// applied (when given), and every record one the flow allows (for registrations: only `p-`
/// subjects, no courts). Returns the verified update, or the check that failed.
pub fn check_update(bytes: &[u8], expect: &Expect<'_>) -> Result<DirectoryUpdate, UpdateRefusal> {
    let update = DirectoryUpdate::decode(bytes)?;
    let b = &update.body;
    if b.kind != expect.kind {
        return Err(UpdateRefusal::WrongZone(format!(
            "a {} update where a {} update was expected",
            b.kind.as_str(),
            expect.kind.as_str()
        )));
    }
    if &b.source != expect.source || &b.to != expect.to {
        return Err(UpdateRefusal::WrongZone(format!(
            "an update from `{}` to `{}`, where one from `{}` to `{}` was expected",
            b.source, b.to, expect.source, expect.to
        )));
    }
    expect
        .signers
        .check(&update.chain, &update.signer, expect.source, b.time)
        .map_err(|why| {
            UpdateRefusal::WrongSigner(format!(
                "not signed by the identity provider of `{}`: {why}",
                expect.source
            ))
        })?;
    for rec in &b.records {
        match &rec.change {
            Change::Court(c) => {
                if expect.kind == UpdateKind::Registration {
                    return Err(UpdateRefusal::Disallowed(format!(
                        "court `{}` in a registration",
                        c.code
                    )));
                }
                if !expect.terms.allows_attribute("court") {
                    return Err(UpdateRefusal::Disallowed(format!(
                        "court `{}` (the flow does not let `court` go)",
                        c.code
                    )));
                }
            }
            Change::User(u) => {
                if expect.kind == UpdateKind::Registration && !u.sub.as_str().starts_with("p-") {
                    return Err(UpdateRefusal::Disallowed(format!(
                        "user `{}` in a registration: only `p-` subjects register",
                        u.sub
                    )));
                }
                expect.terms.check(u)?;
            }
        }
    }
    if let Some(last) = expect.last_applied {
        if b.since > last {
            return Err(UpdateRefusal::Gap {
                last,
                since: b.since,
            });
        }
        if b.until <= last {
            return Err(UpdateRefusal::Replay {
                last,
                until: b.until,
            });
        }
    }
    Ok(update)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tianping_core::RingSigner;

    struct Any;
    impl SignerCheck for Any {
        fn check(
            &self,
            _: &[Vec<u8>],
            _: &PublicKey,
            _: &ZoneName,
            _: UnixTime,
        ) -> Result<(), String> {
            Ok(())
        }
    }

    fn zone(z: &str) -> ZoneName {
        z.parse().unwrap()
    }

    fn judge() -> User {
        let mut u = User::new(
            "u-judge-1".parse().unwrap(),
            "li.ming",
            "李明",
            UnixTime::from_secs(1),
        );
        u.roles = vec![Role::Judge];
        u.court = Some("bj.01".parse().unwrap());
        u.password = Some(PasswordRecord {
            hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
            history: vec![],
            changed_at: UnixTime::from_secs(2),
        });
        u
    }

    fn internet_terms() -> FlowTerms {
        FlowTerms {
            accounts: Role::ALL.to_vec(),
            attributes: ["sub", "name", "court", "roles", "status"]
                .map(String::from)
                .to_vec(),
            credentials: vec![
                (
                    "password-hash".into(),
                    vec![Role::Public, Role::Lawyer, Role::Litigant],
                ),
                ("otp-seed".into(), Role::ALL.to_vec()),
            ],
        }
    }

    #[test]
    fn a_signed_update_reads_back_and_checks() {
        let (signer, _) = RingSigner::generate(Algorithm::Es256).unwrap();
        let terms = internet_terms();
        let rec = terms.filter(&UserRecord::from_user(&judge(), &[])).unwrap();
        assert!(
            rec.credential("password-hash").is_none(),
            "a judge's hash stays"
        );
        let body = UpdateBody {
            kind: UpdateKind::Directory,
            source: zone("private"),
            to: zone("internet"),
            since: 0,
            until: 3,
            time: UnixTime::from_secs(5),
            records: vec![Record {
                version: 3,
                change: Change::User(rec),
            }],
        };
        let bytes = body.sign(&[vec![1, 2, 3]], &signer).unwrap();
        let expect = Expect {
            kind: UpdateKind::Directory,
            source: &zone("private"),
            to: &zone("internet"),
            terms: &terms,
            signers: &Any,
            last_applied: Some(0),
        };
        let got = check_update(&bytes, &expect).unwrap();
        assert_eq!(got.body, body);
        let gap = Expect {
            last_applied: None,
            ..expect
        };
        assert!(check_update(&bytes, &gap).is_ok());
        let replay = Expect {
            last_applied: Some(3),
            ..expect
        };
        assert_eq!(check_update(&bytes, &replay).unwrap_err().check(), "replay");
        let mut forged = bytes.clone();
        let at = forged.len() / 2;
        *forged.get_mut(at).unwrap() ^= 1;
        assert!(check_update(&forged, &expect).is_err());
        let strict = FlowTerms {
            attributes: vec!["sub".into()],
            ..terms.clone()
        };
        let e = check_update(
            &bytes,
            &Expect {
                terms: &strict,
                ..expect
            },
        )
        .unwrap_err();
        assert_eq!(e.check(), "disallowed");
        assert!(e.to_string().contains("attribute `court`"), "{e}");
    }
}
