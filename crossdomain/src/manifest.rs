//! What a bundle says about itself: the manifest, in one canonical encoding.
//!
//! Fields are written in a fixed order on the core wire codec. Optional text (`schema`,
//! `correlation`) is written empty when absent, so there is one encoding of each manifest;
//! booleans are exactly `0` or `1`; ids, roles and zones must parse. The decoder refuses anything
//! the encoder would not have written, including bytes after the last field.

use tianping_core::{
    PolicyHash, Role, SubjectId, UnixTime, WireError, WireReader, WireWriter, ZoneName,
};

use crate::BundleError;

/// The version byte every manifest starts with.
pub(crate) const MANIFEST_VERSION: u8 = 1;
/// The most roles or labels a manifest carries.
pub(crate) const MAX_LIST: usize = 64;
/// The longest text field (flow, kind, content type, schema, label, correlation id), in bytes.
pub(crate) const MAX_TEXT: usize = 256;
/// The largest encoded manifest, in bytes.
pub const MAX_MANIFEST: usize = 64 * 1024;

/// Who submitted a transfer, as the sending zone authenticated them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitter {
    /// The subject id (a person, or a component of the zone).
    pub subject: SubjectId,
    /// The roles the subject held when it submitted.
    pub roles: Vec<Role>,
    /// Whether the submitter is a machine (a component with a node token) rather than a person.
    pub machine: bool,
}

/// What a bundle carries and why: everything the policy on both sides decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The policy's flow this transfer travels on.
    pub flow: String,
    /// The sending zone.
    pub source: ZoneName,
    /// The receiving zone.
    pub destination: ZoneName,
    /// The kind of payload (`filing`, `audit-batch`, `policy-update`, ...).
    pub kind: String,
    /// The declared media type of the payload.
    pub content_type: String,
    /// The schema the payload claims to follow, if any.
    pub schema: Option<String>,
    /// The payload's length in bytes.
    pub size: u64,
    /// The length of every payload chunk but the last, in bytes.
    pub chunk_size: u32,
    /// SHA-256 over the bundle's chunk table (the SHA-256 of each chunk, in order).
    pub chunks_hash: [u8; 32],
    /// Who submitted it.
    pub submitter: Submitter,
    /// The payload's labels (case numbers, classifications) as the policy names them.
    pub labels: Vec<String>,
    /// Whether the payload has been redacted for the destination.
    pub redacted: bool,
    /// The correlation id of the transfer this one answers, if any.
    pub correlation: Option<String>,
    /// When the sending zone accepted it.
    pub time: UnixTime,
    /// The sender's sequence number for this transfer.
    pub sequence: u64,
    /// The hash of the policy the sender decided with.
    pub policy_hash: PolicyHash,
}

impl Manifest {
    /// How many chunks the payload has.
    pub fn chunk_count(&self) -> u64 {
        if self.chunk_size == 0 {
            return 0;
        }
        self.size.div_ceil(u64::from(self.chunk_size))
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Result<Vec<u8>, BundleError> {
        self.check()?;
        let mut w = WireWriter::with_capacity(512);
        w.u8(MANIFEST_VERSION);
        for t in [&self.flow, self.source.as_str(), self.destination.as_str()] {
            w.str16(t)?;
        }
        w.str16(&self.kind)?;
        w.str16(&self.content_type)?;
        w.str16(self.schema.as_deref().unwrap_or_default())?;
        w.u64(self.size);
        w.u32(self.chunk_size);
        w.raw(&self.chunks_hash);
        w.str16(self.submitter.subject.as_str())?;
        w.len16(self.submitter.roles.len(), "roles")?;
        for role in &self.submitter.roles {
            w.str16(role.as_str())?;
        }
        w.u8(u8::from(self.submitter.machine));
        w.len16(self.labels.len(), "labels")?;
        for label in &self.labels {
            w.str16(label)?;
        }
        w.u8(u8::from(self.redacted));
        w.str16(self.correlation.as_deref().unwrap_or_default())?;
        w.u64(self.time.as_millis());
        w.u64(self.sequence);
        w.raw(self.policy_hash.as_bytes());
        let out = w.into_bytes();
        if out.len() > MAX_MANIFEST {
            return Err(WireError::TooLong {
                field: "manifest",
                len: out.len(),
                max: MAX_MANIFEST,
            }
            .into());
        }
        Ok(out)
    }

    /// Reads a manifest, refusing any bytes [`encode`](Self::encode) would not write.
    pub fn decode(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_MANIFEST {
            return Err(WireError::TooLong {
                field: "manifest",
                len: bytes.len(),
                max: MAX_MANIFEST,
            }
            .into());
        }
        let mut r = WireReader::new(bytes);
        let version = r.u8("manifest version")?;
        if version != MANIFEST_VERSION {
            return Err(BundleError::Version {
                what: "manifest",
                version,
            });
        }
        let flow = text(&mut r, "flow")?;
        let source = parse(&mut r, "source zone")?;
        let destination = parse(&mut r, "destination zone")?;
        let kind = text(&mut r, "kind")?;
        let content_type = text(&mut r, "content type")?;
        let schema = optional(text(&mut r, "schema")?);
        let size = r.u64("size")?;
        let chunk_size = r.u32("chunk size")?;
        let chunks_hash = r.array("chunks hash")?;
        let subject = parse(&mut r, "submitter")?;
        let n = list_len(&mut r, "roles")?;
        let roles = (0..n)
            .map(|_| parse(&mut r, "role"))
            .collect::<Result<_, _>>()?;
        let machine = flag(&mut r, "machine")?;
        let n = list_len(&mut r, "labels")?;
        let labels = (0..n)
            .map(|_| text(&mut r, "label"))
            .collect::<Result<_, _>>()?;
        let redacted = flag(&mut r, "redacted")?;
        let correlation = optional(text(&mut r, "correlation")?);
        let time = UnixTime::from_millis(r.u64("time")?);
        let sequence = r.u64("sequence")?;
        let policy_hash = PolicyHash::from_bytes(r.array("policy hash")?);
        r.finish()?;
        let m = Self {
            flow,
            source,
            destination,
            kind,
            content_type,
            schema,
            size,
            chunk_size,
            chunks_hash,
            submitter: Submitter {
                subject,
                roles,
                machine,
            },
            labels,
            redacted,
            correlation,
            time,
            sequence,
            policy_hash,
        };
        m.check()?;
        Ok(m)
    }

    /// The limits both directions hold to.
    fn check(&self) -> Result<(), BundleError> {
        let texts = [&self.flow, &self.kind, &self.content_type]
            .into_iter()
            .chain(self.schema.as_ref())
            .chain(self.correlation.as_ref())
            .chain(self.labels.iter());
        for t in texts {
            if t.len() > MAX_TEXT {
                return Err(BundleError::Invalid(
                    "a text field is longer than 256 bytes",
                ));
            }
        }
        if self.flow.is_empty() || self.kind.is_empty() {
            return Err(BundleError::Invalid(
                "the flow and the kind may not be empty",
            ));
        }
        if self.schema.as_deref() == Some("") || self.correlation.as_deref() == Some("") {
            return Err(BundleError::Invalid(
                "an empty schema or correlation id is written as none",
            ));
        }
        if self.submitter.roles.len() > MAX_LIST || self.labels.len() > MAX_LIST {
            return Err(BundleError::Invalid("more than 64 roles or labels"));
        }
        if self.chunk_size == 0 || self.chunk_size > crate::bundle::MAX_CHUNK {
            return Err(BundleError::Invalid(
                "the chunk size is not between 1 byte and 16 MiB",
            ));
        }
        if self.chunk_count() > crate::bundle::MAX_CHUNKS {
            return Err(BundleError::Invalid(
                "the payload has more than 2^20 chunks",
            ));
        }
        Ok(())
    }
}

fn text(r: &mut WireReader<'_>, field: &'static str) -> Result<String, BundleError> {
    let s = r.str16(field)?;
    if s.len() > MAX_TEXT {
        return Err(WireError::TooLong {
            field,
            len: s.len(),
            max: MAX_TEXT,
        }
        .into());
    }
    Ok(s.to_owned())
}

fn parse<T>(r: &mut WireReader<'_>, field: &'static str) -> Result<T, BundleError>
where
    T: std::str::FromStr<Err = tianping_core::IdError>,
{
    r.str16(field)?
        .parse()
        .map_err(|e| BundleError::Id { field, source: e })
}

fn optional(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn flag(r: &mut WireReader<'_>, field: &'static str) -> Result<bool, BundleError> {
    match r.u8(field)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(BundleError::Invalid("a flag is neither 0 nor 1")),
    }
}

fn list_len(r: &mut WireReader<'_>, field: &'static str) -> Result<usize, BundleError> {
    let n = r.count16(field, 2)?;
    if n > MAX_LIST {
        return Err(WireError::TooLong {
            field,
            len: n,
            max: MAX_LIST,
        }
        .into());
    }
    Ok(n)
}
