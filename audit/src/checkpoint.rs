//! Signed checkpoints: C2SP `tlog-checkpoint` bodies in C2SP `signed-note` envelopes.
//!
//! ```text
//! <origin>
//! <size>
//! <base64 root>
//!
//! — <origin>/<alg> <base64(key id || signature)>
//! ```
//!
//! The key name is the origin followed by `/es256` or `/ed25519`, so the algorithm is named in
//! the note. Ed25519 signatures are the signed-note type `0x01` exactly (key id =
//! `SHA-256(name || 0x0A || 0x01 || key)[:4]`). ES256 signatures are the fixed 64-byte `r || s`
//! over the note text, under the private-use type `0xff` followed by the identifier
//! `tianping-es256` in the key id.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::digest::{SHA256, digest};
use tianping_core::{Algorithm, PublicKey, Signature, Signer};

use crate::merkle::Hash;

/// The largest note accepted.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
const MAX_SIGNATURES: usize = 64;

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The note is not well formed (with what is wrong).
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The note carries no signature by the expected key.
    #[error("no signature by key `{0}`")]
    NoSignature(String),
    /// A signature by the expected key does not verify.
    #[error("bad signature by key `{0}`")]
    BadSignature(String),
    /// The checkpoint is for another log.
    #[error("checkpoint is for origin `{found}`, expected `{expected}`")]
    WrongOrigin {
        /// The origin expected.
        expected: String,
        /// The origin in the note.
        found: String,
    },
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(#[from] tianping_core::SignError),
}

/// A checkpoint body: which log, how many entries, and the root over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name (first line).
    pub origin: String,
    /// The number of entries.
    pub size: u64,
    /// The RFC 9162 root over them.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text this checkpoint signs: origin, size and base64 root, each ending in a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Signs the body with `signer` and returns the whole note.
    pub fn sign(&self, signer: &dyn Signer) -> Result<SignedCheckpoint, CheckpointError> {
        check_origin(&self.origin)?;
        let body = self.body();
        let key = signer.public_key();
        let name = key_name(&self.origin, key.algorithm());
        let sig = signer.sign(body.as_bytes())?;
        let mut blob = key_id(&name, &key).to_vec();
        blob.extend_from_slice(sig.as_bytes());
        let note = format!("{body}\n\u{2014} {name} {}\n", STANDARD.encode(blob));
        Ok(SignedCheckpoint {
            checkpoint: self.clone(),
            note,
        })
    }
}

fn check_origin(origin: &str) -> Result<(), CheckpointError> {
    if origin.is_empty() || origin.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(CheckpointError::Malformed(
            "origin must be non-empty with no spaces or `+`",
        ));
    }
    Ok(())
}

/// The signed-note key name for a log's key: `<origin>/<alg>`.
pub fn key_name(origin: &str, algorithm: Algorithm) -> String {
    format!("{origin}/{algorithm}")
}

/// The 4-byte signed-note key id of `key` under `name`.
pub fn key_id(name: &str, key: &PublicKey) -> [u8; 4] {
    let mut m = name.as_bytes().to_vec();
    m.push(0x0a);
    match key.algorithm() {
        Algorithm::Ed25519 => m.push(0x01),
        Algorithm::Es256 => {
            m.push(0xff);
            m.extend_from_slice(b"tianping-es256");
        }
    }
    m.extend_from_slice(key.as_bytes());
    let d = digest(&SHA256, &m);
    let mut id = [0u8; 4];
    id.copy_from_slice(d.as_ref().get(..4).unwrap_or(&[0; 4]));
    id
}

/// A checkpoint with its signed note text (what is stored and shipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    note: String,
}

/// One signature line of a note.
struct NoteSignature<'a> {
    name: &'a str,
    id: [u8; 4],
    sig: Vec<u8>,
}

impl SignedCheckpoint {
    /// The checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The whole note text.
    pub fn note(&self) -> &str {
        &self.note
    }

    /// Reads a note and checks it is signed by `key` (the key name being the note's origin and
    /// the key's algorithm); unknown signers are ignored, as signed-note asks.
    pub fn verify(note: &str, key: &PublicKey) -> Result<Self, CheckpointError> {
        let (checkpoint, sigs) = parse(note)?;
        let name = key_name(&checkpoint.origin, key.algorithm());
        let id = key_id(&name, key);
        let body_len = note.len() - sigs.1;
        let body = note
            .get(..body_len)
            .ok_or(CheckpointError::Malformed("body"))?;
        let mut found = false;
        for s in sigs.0.iter().filter(|s| s.name == name && s.id == id) {
            let sig = Signature::new(key.algorithm(), s.sig.clone())
                .map_err(|_| CheckpointError::BadSignature(name.clone()))?;
            key.verify(body.as_bytes(), &sig)
                .map_err(|_| CheckpointError::BadSignature(name.clone()))?;
            found = true;
        }
        if !found {
            return Err(CheckpointError::NoSignature(name));
        }
        Ok(Self {
            checkpoint,
            note: note.to_owned(),
        })
    }

    /// Like [`verify`](Self::verify), and also checks the origin.
    pub fn verify_for(note: &str, origin: &str, key: &PublicKey) -> Result<Self, CheckpointError> {
        let c = Self::verify(note, key)?;
        if c.checkpoint.origin != origin {
            return Err(CheckpointError::WrongOrigin {
                expected: origin.to_owned(),
                found: c.checkpoint.origin,
            });
        }
        Ok(c)
    }

    /// Reads a note's checkpoint without checking any signature (for display and fuzzing only).
    pub fn parse_unverified(note: &str) -> Result<Checkpoint, CheckpointError> {
        parse(note).map(|(c, _)| c)
    }
}

/// Parses a note: the checkpoint body and the signature lines, with the length of the
/// signature part (blank line included).
fn parse(note: &str) -> Result<(Checkpoint, (Vec<NoteSignature<'_>>, usize)), CheckpointError> {
    use CheckpointError::Malformed;
    if note.len() > MAX_NOTE_BYTES {
        return Err(Malformed("note too large"));
    }
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Malformed("control character"));
    }
    if !note.ends_with('\n') {
        return Err(Malformed("no final newline"));
    }
    let split = note.rfind("\n\n").ok_or(Malformed("no signatures"))?;
    let body = note.get(..=split).ok_or(Malformed("body"))?;
    let sig_text = note.get(split + 2..).ok_or(Malformed("signatures"))?;
    let mut sigs = Vec::new();
    for line in sig_text.split_terminator('\n') {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or(Malformed("signature line must start with an em dash"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(Malformed("signature line without a signature"))?;
        if name.is_empty() || b64.contains(' ') {
            return Err(Malformed("signature line"));
        }
        let blob = STANDARD
            .decode(b64)
            .map_err(|_| Malformed("signature is not base64"))?;
        if blob.len() < 5 {
            return Err(Malformed("signature too short"));
        }
        let (id, sig) = blob.split_at(4);
        let id: [u8; 4] = id.try_into().map_err(|_| Malformed("key id"))?;
        sigs.push(NoteSignature {
            name,
            id,
            sig: sig.to_vec(),
        });
        if sigs.len() > MAX_SIGNATURES {
            return Err(Malformed("too many signatures"));
        }
    }
    if sigs.is_empty() {
        return Err(Malformed("no signatures"));
    }
    let mut lines = body.split_terminator('\n');
    let origin = lines.next().ok_or(Malformed("no origin"))?;
    check_origin(origin)?;
    let size_text = lines.next().ok_or(Malformed("no size"))?;
    if size_text.is_empty()
        || !size_text.bytes().all(|b| b.is_ascii_digit())
        || (size_text.len() > 1 && size_text.starts_with('0'))
    {
        return Err(Malformed("size is not a decimal number"));
    }
    let size: u64 = size_text.parse().map_err(|_| Malformed("size too large"))?;
    let root_text = lines.next().ok_or(Malformed("no root"))?;
    let root: Hash = STANDARD
        .decode(root_text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(Malformed("root is not 32 base64 bytes"))?;
    if STANDARD.encode(root) != root_text {
        return Err(Malformed("root is not canonical base64"));
    }
    // Extension lines are allowed by tlog-checkpoint; they must not be empty.
    if lines.any(str::is_empty) {
        return Err(Malformed("empty line in body"));
    }
    Ok((
        Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        },
        (sigs, note.len() - body.len()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tianping_core::RingSigner;

    #[test]
    fn sign_verify_and_refuse() {
        for alg in Algorithm::ALL {
            let (signer, _) = RingSigner::generate(*alg).unwrap();
            let (other, _) = RingSigner::generate(*alg).unwrap();
            let c = Checkpoint {
                origin: "tianping.localhost/audit/n1".into(),
                size: 8,
                root: [7; 32],
            };
            let s = c.sign(&signer).unwrap();
            let lines: Vec<&str> = s.note().lines().collect();
            assert_eq!(lines[0], "tianping.localhost/audit/n1");
            assert_eq!(lines[1], "8");
            assert_eq!(lines[3], "");
            assert!(lines[4].starts_with(&format!("\u{2014} tianping.localhost/audit/n1/{alg} ")));
            let v = SignedCheckpoint::verify(s.note(), &signer.public_key()).unwrap();
            assert_eq!(v.checkpoint(), &c);
            assert!(matches!(
                SignedCheckpoint::verify(s.note(), &other.public_key()),
                Err(CheckpointError::NoSignature(_))
            ));
            let forged = s.note().replacen("\n8\n", "\n9\n", 1);
            assert!(matches!(
                SignedCheckpoint::verify(&forged, &signer.public_key()),
                Err(CheckpointError::BadSignature(_))
            ));
            assert!(SignedCheckpoint::verify_for(s.note(), "other", &signer.public_key()).is_err());
        }
    }

    #[test]
    fn ed25519_key_id_follows_signed_note() {
        // key ID = SHA-256(key name || 0x0A || 0x01 || public key)[:4]
        let (signer, _) = RingSigner::generate(Algorithm::Ed25519).unwrap();
        let key = signer.public_key();
        let mut m = b"example.com/log/ed25519\n\x01".to_vec();
        m.extend_from_slice(key.as_bytes());
        let d = digest(&SHA256, &m);
        assert_eq!(&key_id("example.com/log/ed25519", &key), &d.as_ref()[..4]);
    }

    #[test]
    fn malformed_notes_are_refused() {
        for bad in [
            "",
            "o\n1\n",
            "o\n01\nAAAA\n\n\u{2014} k AAAAAAA=\n",
            "o\n1\nAAAA\n\n\u{2014} k AAAAAAA=\n",
            "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n- k AAAAAAA=\n",
            "o p\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u{2014} k AAAAAAA=\n",
        ] {
            assert!(SignedCheckpoint::parse_unverified(bad).is_err(), "{bad:?}");
        }
        let ok = "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u{2014} k AAAAAAA=\n";
        assert_eq!(SignedCheckpoint::parse_unverified(ok).unwrap().size, 1);
    }
}
