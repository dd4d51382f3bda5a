//! Validating a presented chain against the court's trust bundle and CRLs, then reading its
//! court identity.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor};
use tianping_core::{PublicKey, ZoneName};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

use crate::CertError;
use crate::danger::RevocationLeniency;
use crate::error::{format_time, from_webpki};
use crate::identity::{
    CertKind, CourtIdentity, identity_from_summary, parse_cert, summarize, zone_of,
};
use crate::pem::{certs_from_pem, crls_from_pem_or_der};
use crate::sig::{check_ca_signature, key_of_spki};

/// The most certificates a presented chain may hold.
pub(crate) const MAX_CHAIN: usize = 8;

/// A validation time, in unix seconds. Made from either `tianping_core::UnixTime` (what a
/// [`tianping_core::Clock`] gives) or `rustls_pki_types::UnixTime` (what rustls gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct VerifyTime(pub u64);

impl From<tianping_core::UnixTime> for VerifyTime {
    fn from(t: tianping_core::UnixTime) -> Self {
        VerifyTime(t.as_secs())
    }
}

impl From<rustls_pki_types::UnixTime> for VerifyTime {
    fn from(t: rustls_pki_types::UnixTime) -> Self {
        VerifyTime(t.as_secs())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct TrustedCa {
    pub(crate) der: CertificateDer<'static>,
    pub(crate) key: PublicKey,
    anchor: TrustAnchor<'static>,
    pub(crate) subject_raw: Vec<u8>,
    pub(crate) zone: Option<ZoneName>,
    not_before: i64,
    not_after: i64,
}

/// The court's trust bundle (root and zone CAs, from `trust.pem`) and the zones' CRLs,
/// optionally narrowed to one zone.
///
/// Revocation: a store given no CRL checks none (it was asked to); a store given CRLs refuses a
/// leaf whose issuing CA has none among them, and refuses every leaf of a CA whose CRL is past
/// its `nextUpdate` — a missing or stale list could hide a revocation. Each CRL's signature is
/// checked against its CA in the bundle when the store is made, so a forged list is refused.
/// Giving way on either is [`crate::danger::RevocationLeniency`].
#[derive(Debug, Clone)]
pub struct TrustStore {
    pub(crate) cas: Vec<TrustedCa>,
    crls: Arc<Vec<CertRevocationList<'static>>>,
    crl_ders: Vec<CertificateRevocationListDer<'static>>,
    zone: Option<ZoneName>,
    pub(crate) leniency: RevocationLeniency,
}

/// What a validated leaf is about to be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertUsage {
    /// Authenticating a TLS client (`clientAuth`; kinds client, device, node).
    Client,
    /// Authenticating a TLS server (`serverAuth`; kinds server, node).
    Server,
    /// Whatever the certificate's own kind is for.
    OwnKind,
}

impl TrustStore {
    /// A trust store from the PEM trust bundle and any number of PEM (or DER) CRLs.
    pub fn from_pem(trust_pem: &[u8], crls_pem: &[&[u8]]) -> Result<Self, CertError> {
        let mut cas = Vec::new();
        for der in certs_from_pem(trust_pem)? {
            let s = summarize(&der)?;
            if !s.is_ca {
                return Err(CertError::malformed(format!(
                    "`{}` in the trust bundle is not a CA",
                    s.name
                )));
            }
            let parsed = parse_cert(&der)?;
            let subject_raw = parsed.subject().as_raw().to_vec();
            let key = key_of_spki(parsed.public_key())?;
            let anchor = webpki::anchor_from_trusted_cert(&der)
                .map_err(|e| from_webpki(&e))?
                .to_owned();
            cas.push(TrustedCa {
                anchor,
                key,
                not_before: s.not_before,
                not_after: s.not_after,
                zone: zone_of(&s)?,
                subject_raw,
                der,
            });
        }
        let mut crls = Vec::new();
        let mut crl_ders = Vec::new();
        for text in crls_pem {
            let ders = crls_from_pem_or_der(text)?;
            for der in ders {
                check_crl_signature(&der, &cas)?;
                let owned = OwnedCertRevocationList::from_der(&der)
                    .map_err(|e| CertError::malformed(format!("bad crl ({e:?})").to_lowercase()))?;
                crls.push(CertRevocationList::Owned(owned));
                crl_ders.push(der);
            }
        }
        Ok(Self {
            cas,
            crls: Arc::new(crls),
            crl_ders,
            zone: None,
            leniency: RevocationLeniency::default(),
        })
    }

    /// The same store accepting only leaves issued by `zone`'s CA.
    pub fn for_zone(&self, zone: &ZoneName) -> Result<Self, CertError> {
        if !self.cas.iter().any(|c| c.zone.as_ref() == Some(zone)) {
            return Err(CertError::Invalid(format!(
                "the trust bundle has no CA for zone `{zone}`"
            )));
        }
        let mut s = self.clone();
        s.zone = Some(zone.clone());
        Ok(s)
    }

    /// The same store with revocation checking relaxed as `leniency` says (see
    /// [`crate::danger`]).
    pub fn with_revocation_leniency(mut self, leniency: RevocationLeniency) -> Self {
        self.leniency = leniency;
        self
    }

    /// The zone this store is narrowed to, if any.
    pub fn zone(&self) -> Option<&ZoneName> {
        self.zone.as_ref()
    }

    /// The zones whose CAs are in the bundle.
    pub fn zones(&self) -> Vec<ZoneName> {
        self.cas.iter().filter_map(|c| c.zone.clone()).collect()
    }

    /// The CA certificates a leaf may be issued by (every CA, or only the zone's CA).
    pub fn anchor_certs(&self) -> Vec<CertificateDer<'static>> {
        self.accepted().map(|c| c.der.clone()).collect()
    }

    /// The CRLs, DER.
    pub fn crl_ders(&self) -> &[CertificateRevocationListDer<'static>] {
        &self.crl_ders
    }

    pub(crate) fn accepted(&self) -> impl Iterator<Item = &TrustedCa> {
        self.cas
            .iter()
            .filter(|c| self.zone.is_none() || c.zone == self.zone)
    }
}

/// Checks a CRL's signature against the CA of `cas` that issued it; refuses a CRL whose issuer
/// is not among them.
fn check_crl_signature(der: &[u8], cas: &[TrustedCa]) -> Result<(), CertError> {
    let (rest, crl) = x509_parser::parse_x509_crl(der)
        .map_err(|e| CertError::malformed(format!("bad crl ({e})")))?;
    if !rest.is_empty() {
        return Err(CertError::malformed("trailing bytes after the crl"));
    }
    let issuer = crl.tbs_cert_list.issuer.as_raw();
    let ca = cas
        .iter()
        .find(|c| c.subject_raw == issuer)
        .ok_or_else(|| {
            CertError::UnknownIssuer(format!(
                ": the crl of `{}` is not of a CA in the trust bundle",
                crl.tbs_cert_list.issuer
            ))
        })?;
    check_ca_signature(
        &ca.key,
        &crl.signature_algorithm,
        crl.tbs_cert_list.as_ref(),
        &crl.signature_value.data,
    )
    .map_err(|_| {
        CertError::UnknownIssuer(format!(
            ": the crl of `{}` is not signed by that CA (forged or damaged)",
            crl.tbs_cert_list.issuer
        ))
    })
}

/// Validates a client's chain (leaf first) at `now`: issuer, time, `clientAuth`, revocation, and
/// that the leaf's zone is its issuing CA's zone; then returns its court identity.
pub fn verify_client(
    chain: &[CertificateDer<'_>],
    trust: &TrustStore,
    now: impl Into<VerifyTime>,
) -> Result<CourtIdentity, CertError> {
    verify_chain(chain, trust, now, CertUsage::Client)
}

/// Validates a chain (leaf first) for `usage` at `now`, and returns the leaf's court identity.
pub fn verify_chain(
    chain: &[CertificateDer<'_>],
    trust: &TrustStore,
    now: impl Into<VerifyTime>,
    usage: CertUsage,
) -> Result<CourtIdentity, CertError> {
    let now = now.into();
    let (leaf, rest) = chain
        .split_first()
        .ok_or_else(|| CertError::malformed("no certificate was presented"))?;
    if chain.len() > MAX_CHAIN {
        return Err(CertError::malformed(format!(
            "a chain of {} certificates, more than the {MAX_CHAIN} allowed",
            chain.len()
        )));
    }
    let summary = summarize(leaf)?;
    // Own-kind checks need the kind before the path; the others report path errors first.
    let early = if usage == CertUsage::OwnKind {
        Some(identity_from_summary(&summary)?)
    } else {
        None
    };
    let kind = early.as_ref().map(|i| i.kind);
    let eku = match (usage, kind) {
        (CertUsage::Server, _) | (CertUsage::OwnKind, Some(CertKind::Server)) => {
            KeyUsage::server_auth()
        }
        _ => KeyUsage::client_auth(),
    };
    let accepted: Vec<&TrustedCa> = trust.accepted().collect();
    let anchors: Vec<TrustAnchor<'static>> = accepted.iter().map(|c| c.anchor.clone()).collect();
    let ee = EndEntityCert::try_from(leaf).map_err(|e| from_webpki(&e))?;
    let crl_ptrs: Vec<&CertRevocationList<'_>> = trust.crls.iter().collect();
    let revocation = RevocationOptionsBuilder::new(&crl_ptrs).ok().map(|b| {
        b.with_depth(RevocationCheckDepth::EndEntity)
            .with_status_policy(if trust.leniency.allow_unknown_status {
                UnknownStatusPolicy::Allow
            } else {
                UnknownStatusPolicy::Deny
            })
            .with_expiration_policy(if trust.leniency.accept_stale_crls {
                ExpirationPolicy::Ignore
            } else {
                ExpirationPolicy::Enforce
            })
            .build()
    });
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    ee.verify_for_usage(
        algs,
        &anchors,
        rest,
        rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.0)),
        eku,
        revocation,
        None,
    )
    .map_err(|e| match (&e, &trust.zone) {
        (webpki::Error::UnknownIssuer, Some(z)) => {
            CertError::UnknownIssuer(format!(" of zone `{z}`"))
        }
        _ => from_webpki(&e),
    })?;
    let identity = match early {
        Some(i) => i,
        None => identity_from_summary(&summary)?,
    };
    // The issuing CA must be the CA of the zone the leaf names.
    let parsed = parse_cert(leaf)?;
    let issuer = parsed.issuer().as_raw();
    let ca = accepted
        .iter()
        .find(|c| c.subject_raw == issuer && c.zone.as_ref() == Some(&identity.zone))
        .ok_or_else(|| {
            CertError::UnknownIssuer(format!(
                ": names zone `{}` but was not issued by that zone's CA",
                identity.zone
            ))
        })?;
    // Trust anchors carry no validity of their own in webpki; the zone CA's is checked here.
    let at = i64::try_from(now.0).unwrap_or(i64::MAX);
    if at > ca.not_after {
        return Err(CertError::UnknownIssuer(format!(
            ": the `{}` zone CA expired at {}",
            identity.zone,
            format_time(ca.not_after)
        )));
    }
    if at < ca.not_before {
        return Err(CertError::UnknownIssuer(format!(
            ": the `{}` zone CA is not valid before {}",
            identity.zone,
            format_time(ca.not_before)
        )));
    }
    let kind_fits = match usage {
        CertUsage::Client => identity.kind.is_client(),
        CertUsage::Server => identity.kind.is_server(),
        CertUsage::OwnKind => true,
    };
    if !kind_fits {
        return Err(CertError::WrongUsage(format!(
            "{} use (it is a {} certificate)",
            if usage == CertUsage::Client {
                "client"
            } else {
                "server"
            },
            identity.kind
        )));
    }
    Ok(identity)
}

impl TrustStore {
    /// Checks one CRL (PEM or DER) before it is installed, at `now`: exactly one list, that
    /// `webpki` reads, signed by a zone's CA in this bundle (not the root), whose `nextUpdate`
    /// is after `now` (a list already stale would refuse every leaf of its CA once installed).
    /// Returns the zone whose CA signed it and the list's DER.
    pub fn check_crl(
        &self,
        crl: &[u8],
        now: impl Into<VerifyTime>,
    ) -> Result<(ZoneName, Vec<u8>), CertError> {
        let now = now.into();
        let ders = crls_from_pem_or_der(crl)?;
        let [der] = ders.as_slice() else {
            return Err(CertError::malformed(format!(
                "{} crls where one was expected",
                ders.len()
            )));
        };
        check_crl_signature(der, &self.cas)?;
        OwnedCertRevocationList::from_der(der)
            .map_err(|e| CertError::malformed(format!("bad crl ({e:?})").to_lowercase()))?;
        let (_, parsed) = x509_parser::parse_x509_crl(der)
            .map_err(|e| CertError::malformed(format!("bad crl ({e})")))?;
        let issuer = parsed.tbs_cert_list.issuer.as_raw();
        let zone = self
            .cas
            .iter()
            .filter(|c| c.subject_raw == issuer)
            .find_map(|c| c.zone.clone())
            .ok_or_else(|| {
                CertError::UnknownIssuer(format!(
                    ": the crl of `{}` is signed by the root, not by a zone's CA",
                    parsed.tbs_cert_list.issuer
                ))
            })?;
        let next = parsed
            .tbs_cert_list
            .next_update
            .map(|t| t.timestamp())
            .ok_or_else(|| {
                CertError::malformed(format!(
                    "the crl of zone `{zone}` has no nextUpdate, so it would never go stale"
                ))
            })?;
        let next_update = u64::try_from(next).unwrap_or(0);
        if next_update <= now.0 {
            return Err(CertError::StaleCrl {
                next_update,
                at: now.0,
            });
        }
        Ok((zone, der.to_vec()))
    }
}
