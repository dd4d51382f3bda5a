//! Reading a court identity out of a certificate: parse only, no chain validation.
//!
//! Every Tianping leaf carries its identity as SAN URIs: `urn:tianping:zone:<zone>` and
//! `urn:tianping:kind:<kind>` always; a person's `urn:tianping:subject:<id>`,
//! `urn:tianping:court:<code>` and any number of `urn:tianping:role:<role>`; and
//! [`HARDWARE_KEY_URI`] on a client certificate whose key the issuer put on a PIN-guarded token.

use std::fmt;
use std::str::FromStr;

use ring::digest;
use tianping_core::{CourtCode, Role, SubjectId, ZoneName};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::CertError;

/// The URN prefix of every Tianping SAN.
pub(crate) const URN: &str = "urn:tianping:";
/// The SAN URI marking a client certificate whose key the issuer put on a hardware token with
/// a PIN (`certs issue --hardware`).
pub const HARDWARE_KEY_URI: &str = "urn:tianping:key:hardware";
/// The largest certificate accepted, in bytes of DER.
pub const MAX_CERT_DER: usize = 64 * 1024;
/// The most subject alternative names a certificate may carry.
pub const MAX_SANS: usize = 64;

/// What a certificate is for; fixes its key usages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CertKind {
    /// A TLS server (`serverAuth`).
    Server,
    /// A person presenting a client certificate (`clientAuth`).
    Client,
    /// A court-issued device (`clientAuth`).
    Device,
    /// An exchange node: signs bundles and checkpoints (`digitalSignature`), and speaks TLS both ways.
    Node,
}

impl CertKind {
    /// Every kind.
    pub const ALL: [CertKind; 4] = [
        CertKind::Server,
        CertKind::Client,
        CertKind::Device,
        CertKind::Node,
    ];

    /// The kind's name (`server`, `client`, `device`, `node`).
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::Server => "server",
            CertKind::Client => "client",
            CertKind::Device => "device",
            CertKind::Node => "node",
        }
    }

    /// Whether certificates of this kind may authenticate a TLS client.
    pub fn is_client(self) -> bool {
        !matches!(self, CertKind::Server)
    }

    /// Whether certificates of this kind may authenticate a TLS server.
    pub fn is_server(self) -> bool {
        matches!(self, CertKind::Server | CertKind::Node)
    }
}

impl fmt::Display for CertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CertKind {
    type Err = CertError;
    fn from_str(s: &str) -> Result<Self, CertError> {
        CertKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                CertError::Invalid(format!(
                    "unknown certificate kind `{s}` (expected server, client, device or node)"
                ))
            })
    }
}

/// Who a leaf certificate names, read from its SAN URIs and subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourtIdentity {
    /// The person, for client certificates.
    pub subject: Option<SubjectId>,
    /// The person's court, for client certificates.
    pub court: Option<CourtCode>,
    /// The person's roles (may be empty).
    pub roles: Vec<Role>,
    /// The zone whose CA issued the certificate.
    pub zone: ZoneName,
    /// What the certificate is for.
    pub kind: CertKind,
    /// The subject's common name.
    pub name: String,
    /// SHA-256 of the leaf's DER (the `x5t#S256` of certificate-bound tokens).
    pub fingerprint: [u8; 32],
    /// Whether the issuer put the key on a hardware token with a PIN ([`HARDWARE_KEY_URI`]).
    ///
    /// Only such a client certificate counts as `acr=cert` on its own: the key cannot be copied
    /// off the token and using it needs the PIN, so the certificate is two factors (something
    /// held, something known). A software key in a file can be copied with the file, so a
    /// certificate without the mark is one factor and needs a second one to reach `acr=cert`.
    pub hardware: bool,
}

impl CourtIdentity {
    /// The fingerprint as lowercase hex.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }
}

/// The SHA-256 of a certificate's DER.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Everything [`identity_of`] and the inspector read out of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject's common name (empty when there is none).
    pub name: String,
    /// The subject as text.
    pub subject_dn: String,
    /// The issuer as text.
    pub issuer_dn: String,
    /// The serial number as lowercase hex.
    pub serial: String,
    /// DNS names.
    pub dns: Vec<String>,
    /// IP addresses.
    pub ips: Vec<std::net::IpAddr>,
    /// URIs (including the Tianping URNs).
    pub uris: Vec<String>,
    /// `notBefore`, unix seconds.
    pub not_before: i64,
    /// `notAfter`, unix seconds.
    pub not_after: i64,
    /// Key usages present (`digitalSignature`, `keyCertSign`, `cRLSign`).
    pub key_usages: Vec<&'static str>,
    /// Extended key usages present (`serverAuth`, `clientAuth`).
    pub extended_key_usages: Vec<&'static str>,
    /// Whether the certificate is a CA.
    pub is_ca: bool,
    /// SHA-256 of the DER.
    pub fingerprint: [u8; 32],
}

/// Parses one DER certificate, refusing trailing bytes.
pub(crate) fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CertError::malformed(format!("not a der certificate ({e})")))?;
    if !rest.is_empty() {
        return Err(CertError::malformed("trailing bytes after the certificate"));
    }
    Ok(cert)
}

/// Parses one DER certificate into a [`CertSummary`]; refuses oversized or malformed input.
pub fn summarize(der: &[u8]) -> Result<CertSummary, CertError> {
    if der.len() > MAX_CERT_DER {
        return Err(CertError::malformed(format!(
            "the certificate is {} bytes, more than the {MAX_CERT_DER} allowed",
            der.len()
        )));
    }
    let cert = parse_cert(der)?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .map(|cn| {
            cn.as_str()
                .map(str::to_owned)
                .map_err(|_| CertError::malformed("the common name is not text"))
        })
        .transpose()?
        .unwrap_or_default();
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    let mut uris = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| CertError::malformed(format!("bad subject alternative names ({e})")))?;
    if let Some(san) = san {
        let names = &san.value.general_names;
        if names.len() > MAX_SANS {
            return Err(CertError::malformed(format!(
                "{} subject alternative names, more than the {MAX_SANS} allowed",
                names.len()
            )));
        }
        for n in names {
            match n {
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                GeneralName::URI(u) => uris.push((*u).to_owned()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => {
                        let mut a = [0u8; 4];
                        a.copy_from_slice(b);
                        ips.push(std::net::IpAddr::from(a));
                    }
                    16 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(b);
                        ips.push(std::net::IpAddr::from(a));
                    }
                    _ => return Err(CertError::malformed("an ip address of a bad length")),
                },
                _ => {}
            }
        }
    }
    let mut key_usages = Vec::new();
    if let Some(ku) = cert
        .key_usage()
        .map_err(|e| CertError::malformed(format!("bad key usage ({e})")))?
    {
        if ku.value.digital_signature() {
            key_usages.push("digitalSignature");
        }
        if ku.value.key_encipherment() {
            key_usages.push("keyEncipherment");
        }
        if ku.value.key_cert_sign() {
            key_usages.push("keyCertSign");
        }
        if ku.value.crl_sign() {
            key_usages.push("cRLSign");
        }
    }
    let mut extended_key_usages = Vec::new();
    if let Some(eku) = cert
        .extended_key_usage()
        .map_err(|e| CertError::malformed(format!("bad extended key usage ({e})")))?
    {
        if eku.value.server_auth {
            extended_key_usages.push("serverAuth");
        }
        if eku.value.client_auth {
            extended_key_usages.push("clientAuth");
        }
    }
    Ok(CertSummary {
        name,
        subject_dn: cert.subject().to_string(),
        issuer_dn: cert.issuer().to_string(),
        serial: hex::encode(cert.raw_serial()),
        dns,
        ips,
        uris,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        key_usages,
        extended_key_usages,
        is_ca: cert.is_ca(),
        fingerprint: fingerprint(der),
    })
}

/// The Tianping URN values of one field (`zone`, `kind`, `subject`, `court`, `role`).
fn urn_values<'a>(uris: &'a [String], field: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    uris.iter().filter_map(move |u| {
        u.strip_prefix(URN)
            .and_then(|r| r.strip_prefix(field))
            .and_then(|r| r.strip_prefix(':'))
    })
}

fn at_most_one<'a>(
    mut values: impl Iterator<Item = &'a str>,
    field: &str,
) -> Result<Option<&'a str>, CertError> {
    let first = values.next();
    if values.next().is_some() {
        return Err(CertError::MissingIdentity(format!(
            "more than one `{URN}{field}` name"
        )));
    }
    Ok(first)
}

fn parse_field<T: FromStr>(value: &str, field: &str) -> Result<T, CertError> {
    value
        .parse()
        .map_err(|_| CertError::MissingIdentity(format!("`{URN}{field}:{value}` is not valid")))
}

/// The zone named by a certificate's `urn:tianping:zone:` SAN, if it has exactly one.
pub(crate) fn zone_of(summary: &CertSummary) -> Result<Option<ZoneName>, CertError> {
    at_most_one(urn_values(&summary.uris, "zone"), "zone")?
        .map(|z| parse_field(z, "zone"))
        .transpose()
}

/// Reads the court identity of a leaf certificate (DER). Parses only; it does not validate the
/// chain, the time or revocation (see [`crate::verify_client`]).
pub fn identity_of(leaf_der: &[u8]) -> Result<CourtIdentity, CertError> {
    let s = summarize(leaf_der)?;
    identity_from_summary(&s)
}

pub(crate) fn identity_from_summary(s: &CertSummary) -> Result<CourtIdentity, CertError> {
    if s.is_ca {
        return Err(CertError::WrongUsage(
            "an end entity (it is a CA)".to_owned(),
        ));
    }
    let zone =
        zone_of(s)?.ok_or_else(|| CertError::MissingIdentity(format!("no `{URN}zone:` name")))?;
    let kind: CertKind = at_most_one(urn_values(&s.uris, "kind"), "kind")?
        .ok_or_else(|| CertError::MissingIdentity(format!("no `{URN}kind:` name")))?
        .parse()
        .map_err(|_| CertError::MissingIdentity("an unknown certificate kind".to_owned()))?;
    let subject: Option<SubjectId> = at_most_one(urn_values(&s.uris, "subject"), "subject")?
        .map(|v| parse_field(v, "subject"))
        .transpose()?;
    let court: Option<CourtCode> = at_most_one(urn_values(&s.uris, "court"), "court")?
        .map(|v| parse_field(v, "court"))
        .transpose()?;
    let roles = urn_values(&s.uris, "role")
        .map(|v| parse_field(v, "role"))
        .collect::<Result<Vec<Role>, _>>()?;
    let hardware = match at_most_one(urn_values(&s.uris, "key"), "key")? {
        None => false,
        Some("hardware") if kind == CertKind::Client => true,
        Some(v) => {
            return Err(CertError::MissingIdentity(format!(
                "`{URN}key:{v}` is not valid on a {kind} certificate"
            )));
        }
    };
    if kind == CertKind::Client && (subject.is_none() || court.is_none()) {
        return Err(CertError::MissingIdentity(
            "a client certificate must name its subject and court".to_owned(),
        ));
    }
    Ok(CourtIdentity {
        subject,
        court,
        roles,
        zone,
        kind,
        name: s.name.clone(),
        fingerprint: s.fingerprint,
        hardware,
    })
}
