//! Certificate sign-in, its pure part (the `server` feature): what a verified client certificate
//! says, why one is refused, the `acr`/`amr` it gives, and the mapping to a user of the
//! directory.
//!
//! The provider's listener asks every client for a certificate (`ClientAuth::Request`), so a
//! browser without one still gets the password page, and one with a certificate it cannot use
//! gets a page saying why instead of a TLS alert. The chain a browser presented is verified by a
//! [`ClientCertVerifier`] — `tianping_certs::verify_client` against the zone's CA and CRL, which
//! the binary plugs in (this crate takes no certificate library) — at the provider's clock.
//!
//! - A person's (`client`) certificate maps to the user whose subject id it carries. A
//!   `--hardware` one (its key on a token unlocked by the token's PIN) is two factors on its own:
//!   `acr=cert`, `amr` `["hwk","pin"]`. Any other is one factor (a key file can be copied) and
//!   asks for TOTP: `acr=cert`, `amr` [`SOFTWARE_KEY_AMR`] and `otp`.
//! - A revoked, expired, other-zone or unmapped certificate is refused with a page in the
//!   user's language and an audit event naming the reason ([`CertRefusal::reason`]).
//! - A `device` certificate maps to the device registered with it ([`crate::Devices`]): the
//!   person signing in on it still gives their own factors, and must be the user the device is
//!   registered to; an unregistered device is refused with its page and audit event.
//! - A CRL past its next-update fails certificate sign-in closed: a revocation made since may be
//!   missing. [`CertSignIn::accept_stale_crl`] relaxes that, and every sign-in it lets through is
//!   audited as relaxed (`signin.crl_relaxed`).

use std::fmt;
use std::sync::Arc;

use tianping_core::{Acr, Amr, SubjectId, UnixTime, ZoneName};

use crate::IdpError;
use crate::device::{Device, Devices};
use crate::directory::{Directory, User};
use crate::store::Store;

/// The `amr` value a software-key certificate adds beside `otp` (RFC 8176 `swk`).
pub const SOFTWARE_KEY_AMR: Amr = Amr::Swk;

/// Who a verified client certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertHolder {
    /// A person (`client` certificate), by subject id; `hardware` when the issuer put the key
    /// on a PIN-guarded token (`certs issue --hardware`).
    Person {
        /// The subject id the certificate carries.
        subject: SubjectId,
        /// Whether the key is on a hardware token.
        hardware: bool,
    },
    /// A court-issued device (`device` certificate).
    Device,
    /// A certificate of another kind (`server`, `node`): not for signing a person in.
    Other(String),
}

/// A presented chain that verified against the zone's CA and CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCert {
    /// Who it is for.
    pub holder: CertHolder,
    /// The subject's common name.
    pub name: String,
    /// The zone whose CA issued it.
    pub zone: ZoneName,
    /// SHA-256 of the leaf's DER.
    pub fingerprint: [u8; 32],
}

/// Why a presented chain did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertFailure {
    /// The certificate is on its CA's revocation list.
    Revoked,
    /// The certificate expired.
    Expired,
    /// The certificate is not valid yet.
    NotYetValid,
    /// The certificate was not issued by this zone's CA.
    OtherZone,
    /// The zone's CRL is past its next-update.
    StaleCrl,
    /// Anything else (malformed, wrong usage, no court identity), with why.
    Invalid(String),
}

/// Verifies the chain a client presented (DER, leaf first) against the zone's CA and CRL at
/// `now`; `accept_stale_crl` uses a CRL past its next-update as if it were current (asked only
/// when the setting allows it, after a strict check said [`CertFailure::StaleCrl`]).
pub trait ClientCertVerifier: Send + Sync {
    /// The verified certificate, or why it is refused.
    fn verify(
        &self,
        chain: &[Vec<u8>],
        now: UnixTime,
        accept_stale_crl: bool,
    ) -> Result<VerifiedCert, CertFailure>;
}

/// [`tianping_certs::verify_client`] against a zone's trust store (its trust bundle and CRL,
/// narrowed to the zone's CA): the verifier `tianping idp serve` plugs in, and the one a
/// device registration checks with.
#[derive(Debug, Clone)]
pub struct TrustStoreVerifier {
    trust: tianping_certs::TrustStore,
}

impl TrustStoreVerifier {
    /// Verifies against `trust`, strictly unless a call asks for a stale CRL to be accepted.
    #[must_use]
    pub fn new(trust: tianping_certs::TrustStore) -> Self {
        Self { trust }
    }
}

impl ClientCertVerifier for TrustStoreVerifier {
    fn verify(
        &self,
        chain: &[Vec<u8>],
        now: UnixTime,
        accept_stale_crl: bool,
    ) -> Result<VerifiedCert, CertFailure> {
        use tianping_certs::danger::RevocationLeniency;
        use tianping_certs::{CertError, CertKind, CertificateDer, verify_client};
        let chain: Vec<CertificateDer<'_>> = chain
            .iter()
            .map(|d| CertificateDer::from(d.as_slice()))
            .collect();
        // the strict store as loaded; a lenient copy only when a stale CRL is to be accepted
        let lenient;
        let trust = if accept_stale_crl {
            lenient = self
                .trust
                .clone()
                .with_revocation_leniency(RevocationLeniency {
                    accept_stale_crls: true,
                    ..RevocationLeniency::default()
                });
            &lenient
        } else {
            &self.trust
        };
        let id = verify_client(&chain, trust, now).map_err(|e| match e {
            CertError::Revoked => CertFailure::Revoked,
            CertError::Expired { .. } => CertFailure::Expired,
            CertError::NotYetValid { .. } => CertFailure::NotYetValid,
            CertError::UnknownIssuer(_) => CertFailure::OtherZone,
            CertError::StaleCrl { .. } => CertFailure::StaleCrl,
            other => CertFailure::Invalid(other.to_string()),
        })?;
        let holder = match (id.kind, id.subject) {
            (CertKind::Client, Some(subject)) => CertHolder::Person {
                subject,
                hardware: id.hardware,
            },
            (CertKind::Device, _) => CertHolder::Device,
            (kind, _) => CertHolder::Other(kind.to_string()),
        };
        Ok(VerifiedCert {
            holder,
            name: id.name,
            zone: id.zone,
            fingerprint: id.fingerprint,
        })
    }
}

/// What certificate sign-in needs (`Idp::with_cert_sign_in`).
#[derive(Clone)]
pub struct CertSignIn {
    /// Verifies presented chains against the zone's CA and CRL.
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// Whether a CRL past its next-update is accepted (default `false`: certificate sign-in
    /// fails closed). Gives up: a revocation made after the stale list goes unseen. Every
    /// sign-in it lets through is audited as relaxed.
    pub accept_stale_crl: bool,
}

impl CertSignIn {
    /// Certificate sign-in verified by `verifier`, failing closed on a stale CRL.
    pub fn new(verifier: Arc<dyn ClientCertVerifier>) -> Self {
        Self {
            verifier,
            accept_stale_crl: false,
        }
    }
}

impl fmt::Debug for CertSignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertSignIn")
            .field("accept_stale_crl", &self.accept_stale_crl)
            .finish_non_exhaustive()
    }
}

/// Why a certificate sign-in was refused: each has its page and its audit reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CertRefusal {
    /// No certificate came with the request.
    NonePresented,
    Revoked,
    Expired,
    NotYetValid,
    OtherZone,
    StaleCrl,
    Invalid,
    /// A person's certificate whose subject id no user of the directory has.
    Unmapped,
    /// The mapped account is disabled.
    Disabled,
    /// A server or node certificate.
    NotAPerson,
    /// A device certificate no device is registered with.
    DeviceUnregistered,
    /// A device registered to someone other than the person signing in on it.
    DeviceOfAnother,
}

impl CertRefusal {
    /// The audit event's reason.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::NonePresented => "certificate none presented",
            Self::Revoked => "certificate revoked",
            Self::Expired => "certificate expired",
            Self::NotYetValid => "certificate not yet valid",
            Self::OtherZone => "certificate other zone",
            Self::StaleCrl => "crl stale",
            Self::Invalid => "certificate invalid",
            Self::Unmapped => "certificate unmapped",
            Self::Disabled => "certificate account disabled",
            Self::NotAPerson => "certificate not a person's",
            Self::DeviceUnregistered => "device unregistered",
            Self::DeviceOfAnother => "device of another user",
        }
    }
}

impl From<&CertFailure> for CertRefusal {
    fn from(f: &CertFailure) -> Self {
        match f {
            CertFailure::Revoked => Self::Revoked,
            CertFailure::Expired => Self::Expired,
            CertFailure::NotYetValid => Self::NotYetValid,
            CertFailure::OtherZone => Self::OtherZone,
            CertFailure::StaleCrl => Self::StaleCrl,
            CertFailure::Invalid(_) => Self::Invalid,
        }
    }
}

/// The certificate factor a sign-in holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CertFactor {
    /// No certificate (password sign-in).
    None,
    /// A hardware-token certificate: two factors, done.
    Hardware,
    /// A software-key certificate: one factor, TOTP to follow.
    Software,
}

impl CertFactor {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Hardware => "hardware",
            Self::Software => "software",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        [Self::None, Self::Hardware, Self::Software]
            .into_iter()
            .find(|f| f.as_str() == s)
    }

    /// The `amr` a sign-in starts with after this certificate.
    pub(crate) fn initial_amr(self) -> Vec<Amr> {
        match self {
            Self::None => Vec::new(),
            Self::Hardware => vec![Amr::Hwk, Amr::Pin],
            Self::Software => vec![SOFTWARE_KEY_AMR],
        }
    }
}

/// The `acr` the factors of a sign-in reach: a hardware certificate, or a software one with
/// TOTP, is `cert`; password and TOTP is `otp`; else `pwd`.
pub(crate) fn acr_of(cert: CertFactor, amr: &[Amr]) -> Acr {
    let otp = amr.contains(&Amr::Otp);
    match cert {
        CertFactor::Hardware => Acr::Cert,
        CertFactor::Software if otp => Acr::Cert,
        _ if otp => Acr::Otp,
        _ => Acr::Pwd,
    }
}

/// What a verified certificate maps to.
#[derive(Debug)]
pub(crate) enum Mapped {
    /// A user of the directory, and the factor the certificate is.
    Person(Box<User>, CertFactor),
    /// A registered device (its owner enabled): the person still signs in.
    Device(Device),
}

/// Maps a verified certificate to a user of the directory by the subject id it carries.
pub(crate) fn map_certificate(
    cert: &VerifiedCert,
    store: &dyn Store,
) -> Result<Result<Mapped, CertRefusal>, IdpError> {
    match &cert.holder {
        CertHolder::Person { subject, hardware } => {
            let Some(user) = Directory::new(store).user(subject)? else {
                return Ok(Err(CertRefusal::Unmapped));
            };
            if !user.is_enabled() {
                return Ok(Err(CertRefusal::Disabled));
            }
            let factor = if *hardware {
                CertFactor::Hardware
            } else {
                CertFactor::Software
            };
            Ok(Ok(Mapped::Person(Box::new(user), factor)))
        }
        CertHolder::Device => {
            let Some(device) = Devices::new(store).by_certificate(&cert.fingerprint)? else {
                return Ok(Err(CertRefusal::DeviceUnregistered));
            };
            match Directory::new(store).user(&device.owner)? {
                Some(owner) if owner.is_enabled() => Ok(Ok(Mapped::Device(device))),
                Some(_) => Ok(Err(CertRefusal::Disabled)),
                None => Ok(Err(CertRefusal::DeviceUnregistered)),
            }
        }
        CertHolder::Other(_) => Ok(Err(CertRefusal::NotAPerson)),
    }
}

/// The actor an audit event names for a presented leaf not mapped to anyone: its fingerprint.
pub(crate) fn leaf_actor(chain: &[Vec<u8>]) -> String {
    chain.first().map_or_else(
        || "-".to_owned(),
        |leaf| {
            let d = ring::digest::digest(&ring::digest::SHA256, leaf);
            format!("cert:{}", hex::encode(d.as_ref()))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn hardware_is_cert_alone_software_needs_otp() {
        let hw = CertFactor::Hardware.initial_amr();
        assert_eq!(hw, vec![Amr::Hwk, Amr::Pin]);
        assert_eq!(acr_of(CertFactor::Hardware, &hw), Acr::Cert);
        let mut sw = CertFactor::Software.initial_amr();
        assert_eq!(acr_of(CertFactor::Software, &sw), Acr::Pwd);
        sw.push(Amr::Otp);
        assert_eq!(acr_of(CertFactor::Software, &sw), Acr::Cert);
        assert_eq!(acr_of(CertFactor::None, &[Amr::Pwd, Amr::Otp]), Acr::Otp);
        assert_eq!(acr_of(CertFactor::None, &[Amr::Pwd]), Acr::Pwd);
        for f in [CertFactor::None, CertFactor::Hardware, CertFactor::Software] {
            assert_eq!(CertFactor::parse(f.as_str()), Some(f));
        }
        assert_eq!(CertFactor::parse("pin"), None);
    }

    #[test]
    fn certificates_map_by_subject_id_only_to_enabled_users() {
        let store = MemoryStore::new();
        let now = UnixTime::from_secs(1_800_000_000);
        let mut u = User::new("judge-0001".parse().unwrap(), "li.ming", "Li Ming", now);
        u.court = None;
        Directory::new(&store).add_user(u).unwrap();
        let cert = |subject: &str, hardware| VerifiedCert {
            holder: CertHolder::Person {
                subject: subject.parse().unwrap(),
                hardware,
            },
            name: "Li Ming".into(),
            zone: "private".parse().unwrap(),
            fingerprint: [0; 32],
        };
        match map_certificate(&cert("judge-0001", true), &store).unwrap() {
            Ok(Mapped::Person(u, f)) => {
                assert_eq!(u.login, "li.ming");
                assert_eq!(f, CertFactor::Hardware);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            map_certificate(&cert("judge-0001", false), &store).unwrap(),
            Ok(Mapped::Person(_, CertFactor::Software))
        ));
        assert_eq!(
            map_certificate(&cert("judge-0404", true), &store)
                .unwrap()
                .unwrap_err(),
            CertRefusal::Unmapped
        );
        Directory::new(&store)
            .update_user(&"judge-0001".parse().unwrap(), &mut |u| {
                u.status = crate::directory::UserStatus::Disabled;
            })
            .unwrap();
        assert_eq!(
            map_certificate(&cert("judge-0001", true), &store)
                .unwrap()
                .unwrap_err(),
            CertRefusal::Disabled
        );
        let mut node = cert("judge-0001", false);
        node.holder = CertHolder::Other("node".into());
        assert_eq!(
            map_certificate(&node, &store).unwrap().unwrap_err(),
            CertRefusal::NotAPerson
        );
    }
}
