//! Making certificates: the root CA, a CA per zone, leaves of every kind, and CRLs.
//!
//! Pure: takes the time and returns PEM text. Randomness (keys, serials) comes from `ring`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use tianping_core::{CourtCode, Role, Secret, SubjectId, UnixTime, ZoneName};
use time::OffsetDateTime;

use crate::CertError;
use crate::identity::{CertKind, HARDWARE_KEY_URI, MAX_SANS, URN, parse_cert, summarize, zone_of};
use crate::pem::certs_from_pem;

const DAY: i64 = 24 * 3600;
/// Certificates (and CRLs) are valid from this many seconds before they are made, for clocks
/// a little behind the issuer's.
pub const BACKDATE_SECS: i64 = 300;
/// The longest a leaf may be valid, in days.
pub(crate) const MAX_LEAF_DAYS: u32 = 3650;

/// The key algorithm of a new certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlg {
    /// ECDSA over P-256 with SHA-256 (the default).
    #[default]
    EcP256,
    /// Ed25519.
    Ed25519,
}

impl KeyAlg {
    /// The algorithm's name (`ec-p256`, `ed25519`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::EcP256 => "ec-p256",
            KeyAlg::Ed25519 => "ed25519",
        }
    }

    fn generate(self) -> Result<KeyPair, CertError> {
        let alg = match self {
            KeyAlg::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlg::Ed25519 => &rcgen::PKCS_ED25519,
        };
        Ok(KeyPair::generate_for(alg)?)
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlg {
    type Err = CertError;
    fn from_str(s: &str) -> Result<Self, CertError> {
        match s {
            "ec-p256" => Ok(KeyAlg::EcP256),
            "ed25519" => Ok(KeyAlg::Ed25519),
            _ => Err(CertError::Invalid(format!(
                "unknown key algorithm `{s}` (expected ec-p256 or ed25519)"
            ))),
        }
    }
}

/// A CA certificate with its private key (PKCS#8 PEM, kept in a [`Secret`]).
#[derive(Debug)]
pub struct CaCert {
    cert_pem: String,
    key_pem: Secret<String>,
    zone: Option<ZoneName>,
    not_after: i64,
}

fn odt(secs: i64) -> Result<OffsetDateTime, CertError> {
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|_| CertError::Invalid(format!("time {secs} is out of range")))
}

fn secs(now: UnixTime) -> i64 {
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX / 2)
}

/// 16 random bytes, positive and without a leading zero, so the DER integer is exactly 16 bytes.
fn random_serial() -> Result<SerialNumber, CertError> {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| CertError::Generate("no randomness for a serial number".to_owned()))?;
    b[0] = (b[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&b))
}

fn text_field(value: &str, what: &str, max: usize) -> Result<(), CertError> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(CertError::Invalid(format!(
            "{what} `{}` must be 1 to {max} printable characters",
            value.escape_debug()
        )));
    }
    Ok(())
}

fn uri(field: &str, value: &str) -> Result<SanType, CertError> {
    Ok(SanType::URI(format!("{URN}{field}:{value}").try_into()?))
}

fn ca_params(
    cn: &str,
    org: &str,
    not_before: i64,
    not_after: i64,
    path_len: u8,
    zone: Option<&ZoneName>,
) -> Result<CertificateParams, CertError> {
    text_field(org, "the organization", 64)?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    if let Some(z) = zone {
        dn.push(DnType::OrganizationalUnitName, z.as_str());
    }
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = odt(not_before)?;
    p.not_after = odt(not_after)?;
    p.serial_number = Some(random_serial()?);
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = KeyIdMethod::Sha256;
    Ok(p)
}

impl CaCert {
    /// A new self-signed root CA for `org`, valid for 20 years from `now`.
    pub fn new_root(org: &str, alg: KeyAlg, now: UnixTime) -> Result<Self, CertError> {
        let now = secs(now);
        let key = alg.generate()?;
        let p = ca_params(
            &format!("{org} root CA"),
            org,
            now - BACKDATE_SECS,
            now + 20 * 365 * DAY,
            1,
            None,
        )?;
        let cert = p.self_signed(&key)?;
        Self::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// A new CA for `zone`, signed by this (root) CA, valid for 10 years (at most as long as
    /// the root).
    pub fn new_zone(
        &self,
        zone: &ZoneName,
        org: &str,
        alg: KeyAlg,
        now: UnixTime,
    ) -> Result<Self, CertError> {
        let now = secs(now);
        let key = alg.generate()?;
        let mut p = ca_params(
            &format!("{org} {zone} zone CA"),
            org,
            now - BACKDATE_SECS,
            (now + 10 * 365 * DAY).min(self.not_after),
            0,
            Some(zone),
        )?;
        p.subject_alt_names = vec![uri("zone", zone.as_str())?];
        let cert = p.signed_by(&key, &self.issuer()?)?;
        Self::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// A new root CA for `org` to take over from this root (valid for 20 years from `now`),
    /// and the new root's certificate cross-signed by this one: its subject and key in a
    /// certificate this root issued (valid at most as long as this root). A trust bundle that
    /// holds both is an update the zones take ([`crate::TrustStore::from_update`]).
    pub fn new_root_cross_signed(
        &self,
        org: &str,
        alg: KeyAlg,
        now: UnixTime,
    ) -> Result<(Self, String), CertError> {
        if self.zone.is_some() {
            return Err(CertError::Invalid(
                "a new root is cross-signed by the root, not a zone CA".to_owned(),
            ));
        }
        let now = secs(now);
        let key = alg.generate()?;
        let p = ca_params(
            &format!("{org} root CA"),
            org,
            now - BACKDATE_SECS,
            now + 20 * 365 * DAY,
            1,
            None,
        )?;
        let root = p.self_signed(&key)?;
        let mut cross = p.clone();
        cross.serial_number = Some(random_serial()?);
        cross.not_after = odt((now + 20 * 365 * DAY).min(self.not_after))?;
        let cert = cross.signed_by(&key, &self.issuer()?)?;
        Ok((
            Self::from_pem(&root.pem(), &key.serialize_pem())?,
            pem_of(cert.der()),
        ))
    }

    /// A CA from its certificate and key (PKCS#8 PEM); checks that the key matches.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let der = certs_from_pem(cert_pem.as_bytes())?;
        let first = der
            .first()
            .ok_or_else(|| CertError::malformed("no certificate in the pem text"))?;
        let s = summarize(first)?;
        if !s.is_ca {
            return Err(CertError::WrongUsage("issuing (it is not a CA)".to_owned()));
        }
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| CertError::malformed(format!("bad private key ({e})")))?;
        let parsed = parse_cert(first)?;
        if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(CertError::Invalid(
                "the private key does not belong to the CA certificate".to_owned(),
            ));
        }
        Ok(Self {
            cert_pem: pem_of(first),
            key_pem: Secret::new(key_pem.to_owned()),
            zone: zone_of(&s)?,
            not_after: s.not_after,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> &Secret<String> {
        &self.key_pem
    }

    /// The zone of a zone CA; `None` for the root.
    pub fn zone(&self) -> Option<&ZoneName> {
        self.zone.as_ref()
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, CertError> {
        let key = KeyPair::from_pem(self.key_pem.expose())
            .map_err(|e| CertError::malformed(format!("bad private key ({e})")))?;
        Ok(Issuer::from_ca_cert_pem(&self.cert_pem, key)?)
    }

    /// Issues a leaf certificate for this zone CA.
    pub fn issue(&self, req: &LeafRequest, now: UnixTime) -> Result<IssuedCert, CertError> {
        let zone = self.zone.as_ref().ok_or_else(|| {
            CertError::Invalid("leaves are issued by a zone CA, not the root".to_owned())
        })?;
        let p = req.params(zone, secs(now), self.not_after)?;
        let key = req.key.generate()?;
        let cert = p.signed_by(&key, &self.issuer()?)?;
        let leaf_der = cert.der().to_vec();
        let serial = summarize(&leaf_der)?.serial;
        Ok(IssuedCert {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: Secret::new(key.serialize_pem()),
            leaf_der,
            serial,
        })
    }

    /// A CRL of this CA listing `revoked`, valid from `now` for `days` days.
    pub fn crl(
        &self,
        revoked: &[Revocation],
        now: UnixTime,
        days: u32,
    ) -> Result<String, CertError> {
        if days == 0 || days > 366 {
            return Err(CertError::Invalid(format!(
                "a crl is valid for 1 to 366 days, not {days}"
            )));
        }
        let now = secs(now);
        let revoked_certs = revoked
            .iter()
            .map(|r| {
                let serial = hex::decode(&r.serial).map_err(|_| {
                    CertError::malformed(format!("bad serial number `{}`", r.serial))
                })?;
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&serial),
                    revocation_time: odt(r.at)?,
                    reason_code: Some(r.reason.code()),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, CertError>>()?;
        let p = CertificateRevocationListParams {
            this_update: odt(now - BACKDATE_SECS)?,
            next_update: odt(now + i64::from(days) * DAY)?,
            crl_number: SerialNumber::from_slice(&now.max(1).to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(p.signed_by(&self.issuer()?)?.pem()?)
    }
}

fn pem_of(der: &[u8]) -> String {
    tianping_core::pem_encode("CERTIFICATE", der)
}

/// What to put in a new leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRequest {
    /// What the certificate is for.
    pub kind: CertKind,
    /// The subject's common name.
    pub name: String,
    /// DNS names (servers and nodes).
    pub dns: Vec<String>,
    /// IP addresses (servers and nodes).
    pub ips: Vec<IpAddr>,
    /// The person (client certificates).
    pub subject: Option<SubjectId>,
    /// The person's court (client certificates).
    pub court: Option<CourtCode>,
    /// The person's roles (client certificates).
    pub roles: Vec<Role>,
    /// Days of validity.
    pub days: u32,
    /// The new key's algorithm.
    pub key: KeyAlg,
    /// Marks a client certificate whose key the issuer puts on a hardware token with a PIN
    /// ([`crate::HARDWARE_KEY_URI`]); see [`crate::CourtIdentity::hardware`].
    pub hardware: bool,
}

impl LeafRequest {
    /// A request of `kind` named `name`, valid for a year, with an ECDSA P-256 key.
    pub fn new(kind: CertKind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
            dns: Vec::new(),
            ips: Vec::new(),
            subject: None,
            court: None,
            roles: Vec::new(),
            days: 365,
            key: KeyAlg::EcP256,
            hardware: false,
        }
    }

    fn params(
        &self,
        zone: &ZoneName,
        now: i64,
        ca_not_after: i64,
    ) -> Result<CertificateParams, CertError> {
        text_field(&self.name, "the name", 64)?;
        if self.days == 0 || self.days > MAX_LEAF_DAYS {
            return Err(CertError::Invalid(format!(
                "a certificate is valid for 1 to {MAX_LEAF_DAYS} days, not {}",
                self.days
            )));
        }
        let not_after = now + i64::from(self.days) * DAY;
        if not_after > ca_not_after {
            return Err(CertError::Invalid(format!(
                "{} days would outlive the zone CA",
                self.days
            )));
        }
        let person = self.subject.is_some() || self.court.is_some() || !self.roles.is_empty();
        match self.kind {
            CertKind::Client if self.subject.is_none() || self.court.is_none() => {
                return Err(CertError::Invalid(
                    "a client certificate needs `--subject-id` and `--court`".to_owned(),
                ));
            }
            CertKind::Server if self.dns.is_empty() && self.ips.is_empty() => {
                return Err(CertError::Invalid(
                    "a server certificate needs at least one `--dns` or `--ip`".to_owned(),
                ));
            }
            CertKind::Server | CertKind::Device | CertKind::Node if person => {
                return Err(CertError::Invalid(format!(
                    "subject, court and roles belong in client certificates, not {} ones",
                    self.kind
                )));
            }
            CertKind::Client | CertKind::Device if !self.dns.is_empty() || !self.ips.is_empty() => {
                return Err(CertError::Invalid(format!(
                    "dns names and ip addresses belong in server or node certificates, not {} ones",
                    self.kind
                )));
            }
            _ => {}
        }
        if self.hardware && self.kind != CertKind::Client {
            return Err(CertError::Invalid(format!(
                "`--hardware` marks a client certificate's key, not a {} one's",
                self.kind
            )));
        }
        let count = self.dns.len() + self.ips.len() + self.roles.len() + 5;
        if count > MAX_SANS {
            return Err(CertError::Invalid(format!(
                "{count} names in one certificate, more than the {MAX_SANS} allowed"
            )));
        }
        let mut sans = Vec::with_capacity(count);
        for d in &self.dns {
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'*');
            if !ok {
                return Err(CertError::Invalid(format!(
                    "`{}` is not a dns name",
                    d.escape_debug()
                )));
            }
            sans.push(SanType::DnsName(d.as_str().try_into()?));
        }
        sans.extend(self.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        sans.push(uri("zone", zone.as_str())?);
        sans.push(uri("kind", self.kind.as_str())?);
        if let Some(s) = &self.subject {
            sans.push(uri("subject", s.as_str())?);
        }
        if let Some(c) = &self.court {
            sans.push(uri("court", c.as_str())?);
        }
        for r in &self.roles {
            sans.push(uri("role", r.as_str())?);
        }
        if self.hardware {
            sans.push(SanType::URI(HARDWARE_KEY_URI.try_into()?));
        }
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationalUnitName, zone.as_str());
        dn.push(DnType::CommonName, self.name.as_str());
        p.distinguished_name = dn;
        p.subject_alt_names = sans;
        p.is_ca = IsCa::ExplicitNoCa;
        p.not_before = odt(now - BACKDATE_SECS)?;
        p.not_after = odt(not_after)?;
        p.serial_number = Some(random_serial()?);
        p.use_authority_key_identifier_extension = true;
        p.key_identifier_method = KeyIdMethod::Sha256;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = match self.kind {
            CertKind::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            CertKind::Client | CertKind::Device => vec![ExtendedKeyUsagePurpose::ClientAuth],
            CertKind::Node => vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth,
            ],
        };
        Ok(p)
    }
}

/// A newly issued leaf.
#[derive(Debug)]
pub struct IssuedCert {
    /// The leaf then its zone CA, PEM.
    pub chain_pem: String,
    /// The leaf's private key, PKCS#8 PEM.
    pub key_pem: Secret<String>,
    /// The leaf, DER.
    pub leaf_der: Vec<u8>,
    /// The serial number, lowercase hex.
    pub serial: String,
}

/// Why a certificate was revoked (RFC 5280 reason codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RevokeReason {
    /// No reason given.
    #[default]
    Unspecified,
    /// The private key was compromised.
    KeyCompromise,
    /// The holder's court, zone or role changed.
    AffiliationChanged,
    /// A new certificate replaces it.
    Superseded,
    /// The holder no longer needs it.
    CessationOfOperation,
    /// The holder's privileges were withdrawn.
    PrivilegeWithdrawn,
}

impl RevokeReason {
    const ALL: [(RevokeReason, &'static str); 6] = [
        (RevokeReason::Unspecified, "unspecified"),
        (RevokeReason::KeyCompromise, "key-compromise"),
        (RevokeReason::AffiliationChanged, "affiliation-changed"),
        (RevokeReason::Superseded, "superseded"),
        (RevokeReason::CessationOfOperation, "cessation-of-operation"),
        (RevokeReason::PrivilegeWithdrawn, "privilege-withdrawn"),
    ];

    /// The reason's name (`key-compromise`, ...).
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(r, _)| *r == self)
            .map_or("unspecified", |(_, s)| s)
    }

    fn code(self) -> RevocationReason {
        match self {
            RevokeReason::Unspecified => RevocationReason::Unspecified,
            RevokeReason::KeyCompromise => RevocationReason::KeyCompromise,
            RevokeReason::AffiliationChanged => RevocationReason::AffiliationChanged,
            RevokeReason::Superseded => RevocationReason::Superseded,
            RevokeReason::CessationOfOperation => RevocationReason::CessationOfOperation,
            RevokeReason::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
        }
    }
}

impl fmt::Display for RevokeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevokeReason {
    type Err = CertError;
    fn from_str(s: &str) -> Result<Self, CertError> {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(r, _)| *r)
            .ok_or_else(|| {
                CertError::Invalid(format!(
                    "unknown revocation reason `{s}` (expected one of {})",
                    Self::ALL.map(|(_, n)| n).join(", ")
                ))
            })
    }
}

/// One recorded revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The certificate's serial number, lowercase hex.
    pub serial: String,
    /// When it was revoked, unix seconds.
    pub at: i64,
    /// Why.
    pub reason: RevokeReason,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in [KeyAlg::EcP256, KeyAlg::Ed25519] {
            assert_eq!(k.as_str().parse::<KeyAlg>().unwrap(), k);
        }
        for (r, n) in RevokeReason::ALL {
            assert_eq!(n.parse::<RevokeReason>().unwrap(), r);
            assert_eq!(r.to_string(), n);
        }
        for k in CertKind::ALL {
            assert_eq!(k.as_str().parse::<CertKind>().unwrap(), k);
        }
        let err = "rsa".parse::<KeyAlg>().unwrap_err().to_string();
        assert!(err.contains("`rsa`"), "{err}");
        assert!("because".parse::<RevokeReason>().is_err());
        assert!("Server".parse::<CertKind>().is_err());
    }

    #[test]
    fn serials_are_sixteen_positive_bytes() {
        let a = random_serial().unwrap().to_bytes();
        let b = random_serial().unwrap().to_bytes();
        assert_eq!(a.len(), 16);
        assert!(a[0] >= 0x40 && a[0] < 0x80);
        assert_ne!(a, b);
    }
}
