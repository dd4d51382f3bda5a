//! Approvals of a release (pure): a signed statement "subject S with roles R approved transfer
//! T with content hash H at time t", signed by the node of the sending zone that authenticated
//! the approver (the zone's gateway, or the sender itself for `tianping exchange approve`).
//!
//! A bundle carries its approvals as encoded statements ([`BundleHeader::approvals`]); both
//! sides count them with [`count_approvals`], which refuses the whole set when any statement is
//! bad: a signature that does not verify, a signer the trust refuses (it must be a node of the
//! manifest's source zone, valid at the manifest's time), a statement about another transfer id
//! or content hash, an approver named twice, the submitter approving their own transfer, or an
//! approver holding none of the roles the flow's `approvers N of ROLES` names. Whether enough
//! approvals remain is the policy's question ([`tianping_policies::Policy::decide_transfer`]).
//!
//! The encoding is canonical on the core wire codec: version, transfer id, content hash,
//! subject, roles, time (ms), the signer's certificate (DER), the signer's key, then the
//! signature over [`APPROVAL_CONTEXT`] and everything before it.
//!
//! [`BundleHeader::approvals`]: crate::BundleHeader::approvals

use tianping_core::{
    Algorithm, PublicKey, Role, Signature, Signer, SubjectId, UnixTime, WireError, WireReader,
    WireWriter,
};
use tianping_policies::{Approval, FlowInfo};

use crate::manifest::MAX_LIST;
use crate::{BundleError, MAX_APPROVAL, MAX_APPROVALS, MAX_CERTIFICATE, Manifest, SignerTrust};

/// What every approval signature is made over, before the statement's bytes: a statement can
/// never be taken for a bundle header or any other signed thing.
pub const APPROVAL_CONTEXT: &[u8] = b"tianping approval statement v1\0";
/// The version byte every statement starts with.
const APPROVAL_VERSION: u8 = 1;
/// The longest transfer id, in bytes (`<zone>:<sequence>`).
const MAX_TRANSFER_ID: usize = 128;

/// Why an approval statement, or a set of them, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// The bytes are not a well-formed statement, or its signature does not verify.
    #[error("approval {index}: {source}")]
    Malformed {
        /// The statement's place in the bundle.
        index: usize,
        /// Why.
        source: BundleError,
    },
    /// The node that signed is not trusted to authenticate approvers of this zone.
    #[error("approval {index} by `{subject}`: untrusted signer: {reason}")]
    Untrusted {
        /// The statement's place.
        index: usize,
        /// The approver it names.
        subject: SubjectId,
        /// The trust's reason.
        reason: String,
    },
    /// The statement approves another transfer.
    #[error("approval {index} by `{subject}` is for transfer `{found}`, not `{expected}`")]
    OtherTransfer {
        /// The statement's place.
        index: usize,
        /// The approver.
        subject: SubjectId,
        /// The transfer id it names.
        found: String,
        /// This transfer's id.
        expected: String,
    },
    /// The statement approves other content.
    #[error("approval {index} by `{subject}` is for other content than this transfer's")]
    OtherContent {
        /// The statement's place.
        index: usize,
        /// The approver.
        subject: SubjectId,
    },
    /// The approver approved twice.
    #[error("`{0}` approved more than once")]
    Duplicate(SubjectId),
    /// The submitter approved their own transfer.
    #[error("`{0}` submitted the transfer and may not approve it")]
    Submitter(SubjectId),
    /// The approver holds none of the roles the flow names for approvers.
    #[error("`{subject}` holds none of the roles that approve on flow `{flow}`")]
    Role {
        /// The approver.
        subject: SubjectId,
        /// The flow.
        flow: String,
    },
    /// More statements than a bundle carries.
    #[error("{0} approvals, more than the {MAX_APPROVALS} a bundle carries")]
    TooMany(usize),
    /// Signing failed.
    #[error("signing the approval failed: {0}")]
    Sign(String),
}

/// One approver's signed approval of one transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalStatement {
    /// The approved transfer's id, `<source zone>:<sequence>`.
    pub transfer_id: String,
    /// The approved content: the manifest's `chunks_hash`.
    pub content_hash: [u8; 32],
    /// Who approved.
    pub subject: SubjectId,
    /// The roles the approver held, as the signing node authenticated them.
    pub roles: Vec<Role>,
    /// When they approved.
    pub time: UnixTime,
    /// The signing node's certificate (DER).
    pub certificate: Vec<u8>,
    /// The key that signed (the certificate's key).
    pub signer: PublicKey,
    /// The signature over [`APPROVAL_CONTEXT`] and the statement.
    pub signature: Signature,
}

/// What a statement says, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approving<'a> {
    /// The transfer's id.
    pub transfer_id: &'a str,
    /// The transfer's content hash (`chunks_hash`).
    pub content_hash: [u8; 32],
    /// The approver.
    pub subject: &'a SubjectId,
    /// The approver's roles.
    pub roles: &'a [Role],
    /// When.
    pub time: UnixTime,
}

impl ApprovalStatement {
    /// Signs a statement with the authenticating node's key; `certificate` is that node's
    /// certificate (DER).
    pub fn sign(
        what: &Approving<'_>,
        certificate: Vec<u8>,
        signer: &dyn Signer,
    ) -> Result<Self, ApprovalError> {
        let signer_key = signer.public_key();
        let mut statement = Self {
            transfer_id: what.transfer_id.to_owned(),
            content_hash: what.content_hash,
            subject: what.subject.clone(),
            roles: what.roles.to_vec(),
            time: what.time,
            certificate,
            signer: signer_key,
            // Replaced below; a placeholder of the right shape.
            signature: Signature::new(Algorithm::Ed25519, vec![0; 64])
                .map_err(|e| ApprovalError::Sign(e.to_string()))?,
        };
        let unsigned = statement
            .signed_part()
            .map_err(|e| ApprovalError::Sign(e.to_string()))?;
        let mut message = Vec::with_capacity(APPROVAL_CONTEXT.len() + unsigned.len());
        message.extend_from_slice(APPROVAL_CONTEXT);
        message.extend_from_slice(&unsigned);
        statement.signature = signer
            .sign(&message)
            .map_err(|e| ApprovalError::Sign(e.to_string()))?;
        Ok(statement)
    }

    /// The canonical encoding (what a bundle carries).
    pub fn encode(&self) -> Result<Vec<u8>, BundleError> {
        let mut w = WireWriter::from_vec(self.signed_part()?);
        w.u8(self.signature.algorithm().code());
        w.bytes16(self.signature.as_bytes(), "signature")?;
        let out = w.into_bytes();
        if out.len() > MAX_APPROVAL {
            return Err(WireError::TooLong {
                field: "approval",
                len: out.len(),
                max: MAX_APPROVAL,
            }
            .into());
        }
        Ok(out)
    }

    /// Reads a statement, refusing anything [`encode`](Self::encode) would not write, and
    /// checks its signature against the key it carries (whether that key may sign is
    /// [`verify`](Self::verify)'s question).
    pub fn decode(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_APPROVAL {
            return Err(WireError::TooLong {
                field: "approval",
                len: bytes.len(),
                max: MAX_APPROVAL,
            }
            .into());
        }
        let mut r = WireReader::new(bytes);
        let version = r.u8("approval version")?;
        if version != APPROVAL_VERSION {
            return Err(BundleError::Version {
                what: "approval",
                version,
            });
        }
        let transfer_id = r.str16("transfer id")?;
        if transfer_id.is_empty() || transfer_id.len() > MAX_TRANSFER_ID {
            return Err(BundleError::Invalid(
                "the approved transfer id is empty or over 128 bytes",
            ));
        }
        let transfer_id = transfer_id.to_owned();
        let content_hash = r.array::<32>("content hash")?;
        let subject = parse(&mut r, "approver")?;
        let n = r.count16("roles", 2)?;
        if n > MAX_LIST {
            return Err(BundleError::Invalid("more than 64 roles"));
        }
        let roles = (0..n)
            .map(|_| parse(&mut r, "role"))
            .collect::<Result<Vec<Role>, _>>()?;
        let time = UnixTime::from_millis(r.u64("time")?);
        let n = r.len32("certificate", MAX_CERTIFICATE)?;
        let certificate = r.take(n, "certificate")?.to_vec();
        let signer = PublicKey::new(algorithm(&mut r)?, r.bytes16("public key")?.to_vec())?;
        let signed_len = bytes.len() - r.remaining();
        let signature = Signature::new(algorithm(&mut r)?, r.bytes16("signature")?.to_vec())?;
        r.finish()?;
        let mut message = Vec::with_capacity(APPROVAL_CONTEXT.len() + signed_len);
        message.extend_from_slice(APPROVAL_CONTEXT);
        message.extend_from_slice(bytes.get(..signed_len).unwrap_or_default());
        signer.verify(&message, &signature)?;
        Ok(Self {
            transfer_id,
            content_hash,
            subject,
            roles,
            time,
            certificate,
            signer,
            signature,
        })
    }

    /// Asks `trust` whether the node that signed may authenticate approvers for `manifest`
    /// (a node of its source zone, at the manifest's time).
    pub fn verify(&self, trust: &dyn SignerTrust, manifest: &Manifest) -> Result<(), String> {
        trust.check(&self.certificate, &self.signer, manifest, manifest.time)
    }

    fn signed_part(&self) -> Result<Vec<u8>, BundleError> {
        if self.transfer_id.is_empty() || self.transfer_id.len() > MAX_TRANSFER_ID {
            return Err(BundleError::Invalid(
                "the approved transfer id is empty or over 128 bytes",
            ));
        }
        if self.roles.len() > MAX_LIST {
            return Err(BundleError::Invalid("more than 64 roles"));
        }
        if self.certificate.len() > MAX_CERTIFICATE {
            return Err(BundleError::Invalid("the certificate is over 16 KiB"));
        }
        let mut w = WireWriter::with_capacity(256 + self.certificate.len());
        w.u8(APPROVAL_VERSION);
        w.str16(&self.transfer_id)?;
        w.raw(&self.content_hash);
        w.str16(self.subject.as_str())?;
        w.len16(self.roles.len(), "roles")?;
        for role in &self.roles {
            w.str16(role.as_str())?;
        }
        w.u64(self.time.as_millis());
        w.bytes32(&self.certificate, "certificate")?;
        w.u8(self.signer.algorithm().code());
        w.bytes16(self.signer.as_bytes(), "public key")?;
        Ok(w.into_bytes())
    }
}

/// The transfer id a manifest gives its transfer: `<source zone>:<sequence>`.
pub fn manifest_transfer_id(manifest: &Manifest) -> String {
    format!("{}:{}", manifest.source, manifest.sequence)
}

/// Verifies and counts the approvals a bundle carries (`statements`, encoded) for the transfer
/// `manifest` describes on `flow`: each must verify, be signed by a node `trust` accepts for
/// the manifest's source zone, name this transfer's id and content hash, come from a distinct
/// approver who is not the submitter and who holds a role the flow's release names. Any bad
/// statement refuses the whole set. Returns one [`Approval`] per statement, in its first
/// approving role, for [`tianping_policies::Policy::decide_transfer`] to count.
pub fn count_approvals(
    statements: &[Vec<u8>],
    trust: &dyn SignerTrust,
    manifest: &Manifest,
    flow: &FlowInfo<'_>,
) -> Result<Vec<Approval>, ApprovalError> {
    if statements.len() > MAX_APPROVALS {
        return Err(ApprovalError::TooMany(statements.len()));
    }
    let expected = manifest_transfer_id(manifest);
    let approving: Vec<Role> = flow.approver_roles().collect();
    let mut out: Vec<Approval> = Vec::with_capacity(statements.len());
    for (index, bytes) in statements.iter().enumerate() {
        let s = ApprovalStatement::decode(bytes)
            .map_err(|source| ApprovalError::Malformed { index, source })?;
        s.verify(trust, manifest)
            .map_err(|reason| ApprovalError::Untrusted {
                index,
                subject: s.subject.clone(),
                reason,
            })?;
        if s.transfer_id != expected {
            return Err(ApprovalError::OtherTransfer {
                index,
                subject: s.subject,
                found: s.transfer_id,
                expected,
            });
        }
        if s.content_hash != manifest.chunks_hash {
            return Err(ApprovalError::OtherContent {
                index,
                subject: s.subject,
            });
        }
        if s.subject == manifest.submitter.subject {
            return Err(ApprovalError::Submitter(s.subject));
        }
        if out.iter().any(|a| a.by == s.subject) {
            return Err(ApprovalError::Duplicate(s.subject));
        }
        let Some(role) = s.roles.iter().find(|r| approving.contains(r)) else {
            return Err(ApprovalError::Role {
                subject: s.subject,
                flow: flow.name().to_owned(),
            });
        };
        out.push(Approval {
            by: s.subject,
            role: *role,
        });
    }
    Ok(out)
}

fn parse<T>(r: &mut WireReader<'_>, field: &'static str) -> Result<T, BundleError>
where
    T: std::str::FromStr<Err = tianping_core::IdError>,
{
    r.str16(field)?
        .parse()
        .map_err(|e| BundleError::Id { field, source: e })
}

fn algorithm(r: &mut WireReader<'_>) -> Result<Algorithm, BundleError> {
    let code = r.u8("algorithm")?;
    Algorithm::from_code(code).ok_or(BundleError::Invalid("unknown signature algorithm"))
}

#[cfg(test)]
mod tests {
    use tianping_core::{PolicyHash, RingSigner};
    use tianping_policies::{DEFAULT_POLICY, Policy, check};

    use super::*;
    use crate::{PinnedKeys, Submitter};

    fn policy() -> Policy {
        check("default.tp", DEFAULT_POLICY).into_policy().unwrap()
    }

    fn manifest() -> Manifest {
        Manifest {
            flow: "service-of-documents".into(),
            source: "private".parse().unwrap(),
            destination: "internet".parse().unwrap(),
            kind: "pdf".into(),
            content_type: "application/pdf".into(),
            schema: None,
            size: 10,
            chunk_size: 4,
            chunks_hash: [7; 32],
            submitter: Submitter {
                subject: "p-clerk-1".parse().unwrap(),
                roles: vec![Role::Clerk],
                machine: false,
            },
            labels: vec![],
            redacted: true,
            correlation: None,
            time: UnixTime::from_millis(1_764_000_000_000),
            sequence: 3,
            policy_hash: PolicyHash::of(b"p"),
        }
    }

    fn approve(signer: &RingSigner, m: &Manifest, who: &str, roles: &[Role]) -> Vec<u8> {
        let subject: SubjectId = who.parse().unwrap();
        ApprovalStatement::sign(
            &Approving {
                transfer_id: &manifest_transfer_id(m),
                content_hash: m.chunks_hash,
                subject: &subject,
                roles,
                time: m.time,
            },
            b"cert".to_vec(),
            signer,
        )
        .unwrap()
        .encode()
        .unwrap()
    }

    #[test]
    fn round_trip_and_count() {
        let (s, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
        let p = policy();
        let flow = p.flow("service-of-documents").unwrap();
        let m = manifest();
        let a = approve(&s, &m, "p-judge-1", &[Role::Judge]);
        let st = ApprovalStatement::decode(&a).unwrap();
        assert_eq!(st.encode().unwrap(), a);
        assert_eq!(st.roles, vec![Role::Judge]);
        let trust = PinnedKeys(vec![s.public_key()]);
        let got = count_approvals(&[a], &trust, &m, &flow).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got.first().unwrap().role, Role::Judge);
    }

    #[test]
    fn refusals() {
        let (s, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
        let (other, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
        let p = policy();
        let flow = p.flow("service-of-documents").unwrap();
        let m = manifest();
        let trust = PinnedKeys(vec![s.public_key()]);
        let ok = approve(&s, &m, "p-judge-1", &[Role::Judge]);
        let mut flipped = ok.clone();
        if let Some(b) = flipped.get_mut(5) {
            *b ^= 1;
        }
        assert!(matches!(
            count_approvals(&[flipped], &trust, &m, &flow),
            Err(ApprovalError::Malformed { .. })
        ));
        let untrusted = approve(&other, &m, "p-judge-1", &[Role::Judge]);
        assert!(matches!(
            count_approvals(&[untrusted], &trust, &m, &flow),
            Err(ApprovalError::Untrusted { .. })
        ));
        let mut m2 = m.clone();
        m2.sequence = 4;
        let other_id = approve(&s, &m2, "p-judge-1", &[Role::Judge]);
        assert!(matches!(
            count_approvals(&[other_id], &trust, &m, &flow),
            Err(ApprovalError::OtherTransfer { .. })
        ));
        let mut m3 = m.clone();
        m3.chunks_hash = [8; 32];
        let other_hash = approve(&s, &m3, "p-judge-1", &[Role::Judge]);
        assert!(matches!(
            count_approvals(&[other_hash], &trust, &m, &flow),
            Err(ApprovalError::OtherContent { .. })
        ));
        assert!(matches!(
            count_approvals(&[ok.clone(), ok.clone()], &trust, &m, &flow),
            Err(ApprovalError::Duplicate(_))
        ));
        let own = approve(&s, &m, "p-clerk-1", &[Role::Judge]);
        assert!(matches!(
            count_approvals(&[own], &trust, &m, &flow),
            Err(ApprovalError::Submitter(_))
        ));
        let clerk = approve(&s, &m, "p-clerk-2", &[Role::Clerk]);
        assert!(matches!(
            count_approvals(&[clerk], &trust, &m, &flow),
            Err(ApprovalError::Role { .. })
        ));
        let mut trailing = ok;
        trailing.push(0);
        assert!(ApprovalStatement::decode(&trailing).is_err());
    }
}
