//! Bundles: a signed header (manifest, approvals, chunk table, the signer's certificate), then the
//! payload, read and written chunk by chunk.
//!
//! ```text
//! bundle  = u32 header length || header || payload (manifest.size bytes)
//! header  = "TPB" version(1)
//!           bytes32 manifest
//!           u16 count, bytes32 approval ...
//!           u32 count, [32] SHA-256 of each chunk ...
//!           bytes32 certificate (DER)
//!           u8 key algorithm, bytes16 public key
//!           u8 signature algorithm, [64] signature
//! ```
//!
//! The signature covers [`SIGNING_CONTEXT`] and every header byte before the signature's
//! algorithm, so it binds the manifest, the approvals and (through the chunk table) every payload
//! byte. The manifest carries the SHA-256 of the chunk table, and the table comes before the
//! payload, so a receiver checks each chunk as it arrives and never holds more than one chunk.

use std::fmt;
use std::sync::Arc;

use ring::digest::{Context, SHA256};
use tianping_core::{
    Algorithm, PublicKey, Signature, Signer, UnixTime, WireError, WireReader, WireWriter,
};

use crate::Manifest;
use crate::manifest::MAX_MANIFEST;

/// The first bytes of every bundle header.
const MAGIC: &[u8; 3] = b"TPB";
/// The header format this build writes and reads.
const BUNDLE_VERSION: u8 = 1;
/// What a bundle's signature is made over, before the header bytes.
pub const SIGNING_CONTEXT: &[u8] = b"tianping bundle v1\0";
/// The largest chunk, in bytes.
pub const MAX_CHUNK: u32 = 16 * 1024 * 1024;
/// The most chunks a payload has.
pub const MAX_CHUNKS: u64 = MAX_CHUNKS_USIZE as u64;
const MAX_CHUNKS_USIZE: usize = 1 << 20;
/// The largest approval statement, in bytes.
pub const MAX_APPROVAL: usize = 16 * 1024;
/// The most approvals a bundle carries.
pub const MAX_APPROVALS: usize = 32;
/// The largest certificate, in bytes.
pub const MAX_CERTIFICATE: usize = 16 * 1024;
/// The largest header, in bytes.
pub const MAX_HEADER: usize = 64
    + MAX_MANIFEST
    + MAX_APPROVALS * (4 + MAX_APPROVAL)
    + 32 * MAX_CHUNKS_USIZE
    + MAX_CERTIFICATE
    + 256;

/// Why a bundle or manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The bytes are not a well-formed encoding.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A format version this build does not read.
    #[error("unknown {what} version {version}")]
    Version {
        /// Which format.
        what: &'static str,
        /// The version found.
        version: u8,
    },
    /// An id, role or zone that does not parse.
    #[error("bad {field}: {source}")]
    Id {
        /// The field.
        field: &'static str,
        /// Why.
        source: tianping_core::IdError,
    },
    /// A value outside the format's rules.
    #[error("{0}")]
    Invalid(&'static str),
    /// The signature does not verify, or names an algorithm this build does not know.
    #[error("bad signature: {0}")]
    Signature(#[from] tianping_core::VerifyError),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(#[from] tianping_core::SignError),
    /// The signer's certificate is not trusted for this bundle.
    #[error("untrusted signer: {0}")]
    Untrusted(String),
    /// A chunk's bytes do not match its hash in the chunk table.
    #[error("chunk {0} does not match its hash")]
    ChunkHash(u64),
    /// The payload is longer or shorter than the manifest says.
    #[error("the payload is {found} bytes, the manifest says {declared}")]
    Size {
        /// What the manifest says.
        declared: u64,
        /// What was found (so far, when longer).
        found: u64,
    },
}

/// Decides whether the node that signed a bundle may send it: the binary implements this with
/// the zone's trust bundle (`tianping-certs`), checking that `certificate` chains to it, names a
/// node of `manifest.source`, and holds `key`.
pub trait SignerTrust: Send + Sync + fmt::Debug {
    /// `Ok` when the signer is trusted for this manifest at time `at`; the reason otherwise.
    fn check(
        &self,
        certificate: &[u8],
        key: &PublicKey,
        manifest: &Manifest,
        at: UnixTime,
    ) -> Result<(), String>;
}

/// Trusts signers by their public key alone, ignoring the certificate: for tests, and for a
/// link whose far node's key is pinned by hand.
#[derive(Debug, Clone, Default)]
pub struct PinnedKeys(pub Vec<PublicKey>);

impl SignerTrust for PinnedKeys {
    fn check(&self, _: &[u8], key: &PublicKey, _: &Manifest, _: UnixTime) -> Result<(), String> {
        if self.0.contains(key) {
            Ok(())
        } else {
            Err(format!("key `{key}` is not pinned"))
        }
    }
}

/// SHA-256 of one chunk.
pub fn chunk_hash(chunk: &[u8]) -> [u8; 32] {
    digest32(ring::digest::digest(&SHA256, chunk))
}

/// SHA-256 over a chunk table, as the manifest's `chunks_hash`.
pub fn table_hash(table: &[[u8; 32]]) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    for h in table {
        ctx.update(h);
    }
    digest32(ctx.finish())
}

fn digest32(d: ring::digest::Digest) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Builds a chunk table from payload bytes pushed in pieces of any size (the sender's first pass
/// over a spooled payload); memory does not grow with the payload.
#[derive(Clone)]
pub struct ChunkHasher {
    chunk_size: u32,
    ctx: Context,
    in_chunk: u32,
    size: u64,
    table: Vec<[u8; 32]>,
}

impl fmt::Debug for ChunkHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkHasher({} bytes)", self.size)
    }
}

impl ChunkHasher {
    /// A hasher cutting the payload every `chunk_size` bytes (1 byte to [`MAX_CHUNK`]).
    pub fn new(chunk_size: u32) -> Result<Self, BundleError> {
        if chunk_size == 0 || chunk_size > MAX_CHUNK {
            return Err(BundleError::Invalid(
                "the chunk size is not between 1 byte and 16 MiB",
            ));
        }
        Ok(Self {
            chunk_size,
            ctx: Context::new(&SHA256),
            in_chunk: 0,
            size: 0,
            table: Vec::new(),
        })
    }

    /// Adds payload bytes.
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = (self.chunk_size - self.in_chunk) as usize;
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.ctx.update(now);
            self.add(now.len());
            if self.in_chunk == self.chunk_size {
                let done = std::mem::replace(&mut self.ctx, Context::new(&SHA256));
                self.table.push(digest32(done.finish()));
                self.in_chunk = 0;
            }
            bytes = rest;
        }
    }

    fn add(&mut self, n: usize) {
        // `n` is at most the room left in a chunk, which fits a `u32`.
        self.in_chunk = self
            .in_chunk
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        self.size = self.size.saturating_add(n as u64);
    }

    /// The payload's size and chunk table.
    pub fn finish(mut self) -> (u64, Vec<[u8; 32]>) {
        if self.in_chunk > 0 {
            self.table.push(digest32(self.ctx.finish()));
        }
        (self.size, self.table)
    }
}

/// A bundle's header: everything before the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleHeader {
    /// What the bundle carries.
    pub manifest: Manifest,
    /// Signed approval statements, opaque to the link.
    pub approvals: Vec<Vec<u8>>,
    /// The SHA-256 of each payload chunk, in order.
    pub chunk_table: Vec<[u8; 32]>,
    /// The sending node's certificate (DER).
    pub certificate: Vec<u8>,
    /// The key that made the signature (the certificate's key).
    pub signer: PublicKey,
    /// The signature over [`SIGNING_CONTEXT`] and the header.
    pub signature: Signature,
}

impl BundleHeader {
    /// Signs a header; `manifest.chunks_hash` is set from `chunk_table`, and the table must
    /// have one hash per chunk of `manifest.size`.
    pub fn sign(
        mut manifest: Manifest,
        approvals: Vec<Vec<u8>>,
        chunk_table: Vec<[u8; 32]>,
        certificate: Vec<u8>,
        signer: &dyn Signer,
    ) -> Result<Self, BundleError> {
        manifest.chunks_hash = table_hash(&chunk_table);
        let key = signer.public_key();
        let unsigned = signed_part(&manifest, &approvals, &chunk_table, &certificate, &key)?;
        let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + unsigned.len());
        message.extend_from_slice(SIGNING_CONTEXT);
        message.extend_from_slice(&unsigned);
        let signature = signer.sign(&message)?;
        Ok(Self {
            manifest,
            approvals,
            chunk_table,
            certificate,
            signer: key,
            signature,
        })
    }

    /// The header's bytes with their `u32` length in front: what a bundle starts with.
    pub fn encode(&self) -> Result<Vec<u8>, BundleError> {
        let body = signed_part(
            &self.manifest,
            &self.approvals,
            &self.chunk_table,
            &self.certificate,
            &self.signer,
        )?;
        let mut w = WireWriter::with_capacity(body.len() + 4 + 66);
        w.len32(body.len() + 1 + self.signature.as_bytes().len(), "header")?;
        w.raw(&body);
        w.u8(self.signature.algorithm().code());
        w.raw(self.signature.as_bytes());
        Ok(w.into_bytes())
    }

    /// Reads a header (without its length prefix), refusing anything [`encode`](Self::encode)
    /// would not write. The signature is checked against the key in the header; whether that
    /// key may sign is [`verify`](Self::verify)'s question.
    pub fn decode(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_HEADER {
            return Err(WireError::TooLong {
                field: "header",
                len: bytes.len(),
                max: MAX_HEADER,
            }
            .into());
        }
        let mut r = WireReader::new(bytes);
        if r.array::<3>("magic")? != *MAGIC {
            return Err(BundleError::Invalid("not a bundle"));
        }
        let version = r.u8("bundle version")?;
        if version != BUNDLE_VERSION {
            return Err(BundleError::Version {
                what: "bundle",
                version,
            });
        }
        let manifest = Manifest::decode(bounded(&mut r, "manifest", MAX_MANIFEST)?)?;
        let n = r.count16("approvals", 4)?;
        if n > MAX_APPROVALS {
            return Err(BundleError::Invalid("more than 32 approvals"));
        }
        let approvals = (0..n)
            .map(|_| bounded(&mut r, "approval", MAX_APPROVAL).map(<[u8]>::to_vec))
            .collect::<Result<Vec<_>, _>>()?;
        let n = r.count32("chunk table", 32)?;
        if n as u64 != manifest.chunk_count() {
            return Err(BundleError::Invalid(
                "the chunk table does not have one hash per chunk",
            ));
        }
        let chunk_table = (0..n)
            .map(|_| r.array::<32>("chunk hash"))
            .collect::<Result<Vec<_>, _>>()?;
        if table_hash(&chunk_table) != manifest.chunks_hash {
            return Err(BundleError::Invalid(
                "the chunk table does not match the manifest",
            ));
        }
        let certificate = bounded(&mut r, "certificate", MAX_CERTIFICATE)?.to_vec();
        let signer = PublicKey::new(algorithm(&mut r)?, r.bytes16("public key")?.to_vec())?;
        let signed_len = bytes.len() - r.remaining();
        let signature = Signature::new(algorithm(&mut r)?, r.take(64, "signature")?.to_vec())?;
        r.finish()?;
        let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + signed_len);
        message.extend_from_slice(SIGNING_CONTEXT);
        message.extend_from_slice(bytes.get(..signed_len).unwrap_or_default());
        signer.verify(&message, &signature)?;
        Ok(Self {
            manifest,
            approvals,
            chunk_table,
            certificate,
            signer,
            signature,
        })
    }

    /// Asks `trust` whether this header's signer may send it (its signature is already checked).
    pub fn verify(&self, trust: &dyn SignerTrust, at: UnixTime) -> Result<(), BundleError> {
        trust
            .check(&self.certificate, &self.signer, &self.manifest, at)
            .map_err(BundleError::Untrusted)
    }

    /// The length of chunk `index`.
    pub fn chunk_len(&self, index: u64) -> u64 {
        let size = self.manifest.size;
        let start = index.saturating_mul(u64::from(self.manifest.chunk_size));
        size.saturating_sub(start)
            .min(u64::from(self.manifest.chunk_size))
    }
}

fn signed_part(
    manifest: &Manifest,
    approvals: &[Vec<u8>],
    chunk_table: &[[u8; 32]],
    certificate: &[u8],
    key: &PublicKey,
) -> Result<Vec<u8>, BundleError> {
    if chunk_table.len() as u64 != manifest.chunk_count() {
        return Err(BundleError::Invalid(
            "the chunk table does not have one hash per chunk",
        ));
    }
    if approvals.len() > MAX_APPROVALS || approvals.iter().any(|a| a.len() > MAX_APPROVAL) {
        return Err(BundleError::Invalid(
            "more than 32 approvals, or one over 16 KiB",
        ));
    }
    if certificate.len() > MAX_CERTIFICATE {
        return Err(BundleError::Invalid("the certificate is over 16 KiB"));
    }
    let manifest = manifest.encode()?;
    let mut w = WireWriter::with_capacity(manifest.len() + 32 * chunk_table.len() + 1024);
    w.raw(MAGIC);
    w.u8(BUNDLE_VERSION);
    w.bytes32(&manifest, "manifest")?;
    w.len16(approvals.len(), "approvals")?;
    for a in approvals {
        w.bytes32(a, "approval")?;
    }
    w.len32(chunk_table.len(), "chunk table")?;
    for h in chunk_table {
        w.raw(h);
    }
    w.bytes32(certificate, "certificate")?;
    w.u8(key.algorithm().code());
    w.bytes16(key.as_bytes(), "public key")?;
    Ok(w.into_bytes())
}

fn bounded<'a>(
    r: &mut WireReader<'a>,
    field: &'static str,
    max: usize,
) -> Result<&'a [u8], BundleError> {
    let n = r.len32(field, max)?;
    Ok(r.take(n, field)?)
}

fn algorithm(r: &mut WireReader<'_>) -> Result<Algorithm, BundleError> {
    let code = r.u8("algorithm")?;
    Algorithm::from_code(code).ok_or(BundleError::Invalid("unknown signature algorithm"))
}

/// What a [`BundleReader`] hands on: the header once its signature and signer are checked, then
/// each chunk once its hash is checked.
#[derive(Debug)]
pub enum Verified<'a> {
    /// The header, signature and signer checked.
    Header(&'a BundleHeader),
    /// Chunk `index`, its hash checked.
    Chunk {
        /// Its position, from 0.
        index: u64,
        /// Its bytes.
        bytes: &'a [u8],
    },
}

/// Reads a bundle from bytes pushed in pieces of any size (as a transfer is reassembled),
/// checking the header's signature and signer, then every chunk against the chunk table. It
/// holds at most the header and one chunk.
#[derive(Debug)]
pub struct BundleReader {
    trust: Arc<dyn SignerTrust>,
    at: UnixTime,
    buf: Vec<u8>,
    header: Option<BundleHeader>,
    header_len: Option<usize>,
    chunk: u64,
    received: u64,
}

impl BundleReader {
    /// A reader that asks `trust` about the signer, as of `at`.
    pub fn new(trust: Arc<dyn SignerTrust>, at: UnixTime) -> Self {
        Self {
            trust,
            at,
            buf: Vec::new(),
            header: None,
            header_len: None,
            chunk: 0,
            received: 0,
        }
    }

    /// The header, once read and checked.
    pub fn header(&self) -> Option<&BundleHeader> {
        self.header.as_ref()
    }

    /// Pushes the next bytes of the bundle; `sink` is called with the header and each chunk as
    /// they are checked. Any error is final: the bundle is refused.
    pub fn push(
        &mut self,
        mut input: &[u8],
        sink: &mut dyn FnMut(Verified<'_>) -> Result<(), BundleError>,
    ) -> Result<(), BundleError> {
        while !input.is_empty() {
            match &self.header {
                None => input = self.push_header(input, sink)?,
                Some(_) => input = self.push_payload(input, sink)?,
            }
        }
        Ok(())
    }

    fn push_header<'i>(
        &mut self,
        input: &'i [u8],
        sink: &mut dyn FnMut(Verified<'_>) -> Result<(), BundleError>,
    ) -> Result<&'i [u8], BundleError> {
        let want = self.header_len.unwrap_or(4);
        let (now, rest) = input.split_at(want.saturating_sub(self.buf.len()).min(input.len()));
        self.buf.extend_from_slice(now);
        if self.buf.len() < want {
            return Ok(rest);
        }
        match self.header_len {
            None => {
                let n = WireReader::new(&self.buf).len32("header", MAX_HEADER)?;
                self.header_len = Some(n);
                self.buf.clear();
            }
            Some(_) => {
                let header = BundleHeader::decode(&self.buf)?;
                header.verify(&*self.trust, self.at)?;
                self.buf = Vec::new();
                sink(Verified::Header(&header))?;
                self.header = Some(header);
            }
        }
        Ok(rest)
    }

    fn push_payload<'i>(
        &mut self,
        input: &'i [u8],
        sink: &mut dyn FnMut(Verified<'_>) -> Result<(), BundleError>,
    ) -> Result<&'i [u8], BundleError> {
        let Some(header) = &self.header else {
            return Ok(input);
        };
        let declared = header.manifest.size;
        let want = usize::try_from(header.chunk_len(self.chunk)).unwrap_or(usize::MAX);
        if want == 0 {
            return Err(BundleError::Size {
                declared,
                found: declared.saturating_add(input.len() as u64),
            });
        }
        let (now, rest) = input.split_at(want.saturating_sub(self.buf.len()).min(input.len()));
        self.buf.extend_from_slice(now);
        self.received = self.received.saturating_add(now.len() as u64);
        if self.buf.len() == want {
            let expected = usize::try_from(self.chunk)
                .ok()
                .and_then(|i| header.chunk_table.get(i));
            if expected != Some(&chunk_hash(&self.buf)) {
                return Err(BundleError::ChunkHash(self.chunk));
            }
            sink(Verified::Chunk {
                index: self.chunk,
                bytes: &self.buf,
            })?;
            self.buf.clear();
            self.chunk += 1;
        }
        Ok(rest)
    }

    /// Ends the bundle: the header, when every payload byte arrived and checked.
    pub fn finish(self) -> Result<BundleHeader, BundleError> {
        match self.header {
            Some(h) if self.received == h.manifest.size => Ok(h),
            Some(h) => Err(BundleError::Size {
                declared: h.manifest.size,
                found: self.received,
            }),
            None => Err(WireError::Truncated("header").into()),
        }
    }
}
