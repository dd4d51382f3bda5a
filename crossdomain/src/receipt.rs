//! Signed receipts (pure): "transfer T with content hash H was delivered to service S at time
//! t" (a delivery receipt, which the receiving zone's `exchange-receiver` makes by itself when
//! the delivered flow's reply flow carries `receipt`), or "… was read by R" (a read receipt,
//! which a service of that zone submits through its sender's socket).
//!
//! A receipt travels as a `receipt` transfer on the reply flow, with the receipted transfer's id
//! as its correlation id. It is signed by a node of the zone that delivered, and carries that
//! node's certificate chain (leaf first), so the zone that keeps it can check the signer against
//! its own trust: a `node` certificate of the receipt's zone, chaining to that zone's CA. The
//! signature alone is checked by [`Receipt::decode`]; who may sign is the keeper's question
//! ([`Receipt::signer_chain`], and `tianping_certs::verify_signer` in the binary).
//!
//! The encoding is canonical on the core wire codec (decoding then encoding gives the same
//! bytes; anything [`Receipt::encode`] would not write is refused): version, kind (1 delivery,
//! 2 read), transfer id, content hash, service, the zone that delivered, the reader (a flag,
//! then the subject for a read receipt), time (ms), the certificate chain (a count, then each
//! DER), the signer's key, then the signature over [`RECEIPT_CONTEXT`] and everything before it.
//! A receipt is at most [`MAX_RECEIPT`] bytes.

use tianping_core::{
    Algorithm, PublicKey, Signature, Signer, SubjectId, UnixTime, WireError, WireReader,
    WireWriter, ZoneName,
};

use crate::{BundleError, MAX_CERTIFICATE};

/// What every receipt signature is made over, before the receipt's bytes: a receipt can never
/// be taken for a bundle header, an approval or any other signed thing.
pub const RECEIPT_CONTEXT: &[u8] = b"tianping delivery receipt v1\0";
/// The longest encoded receipt, in bytes.
pub const MAX_RECEIPT: usize = 32 * 1024;
/// The most certificates a receipt's chain holds.
pub const MAX_RECEIPT_CHAIN: usize = 4;
/// The version byte every receipt starts with.
const RECEIPT_VERSION: u8 = 1;
/// The longest transfer id, in bytes (`<zone>:<sequence>`).
const MAX_TRANSFER_ID: usize = 128;
/// The longest service name, in bytes.
const MAX_SERVICE: usize = 64;

/// What a receipt says happened to the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    /// The receiving zone delivered it to its service.
    Delivery,
    /// The service says a person read it.
    Read,
}

impl ReceiptKind {
    /// `delivery` or `read`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptKind::Delivery => "delivery",
            ReceiptKind::Read => "read",
        }
    }

    fn code(self) -> u8 {
        match self {
            ReceiptKind::Delivery => 1,
            ReceiptKind::Read => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(ReceiptKind::Delivery),
            2 => Some(ReceiptKind::Read),
            _ => None,
        }
    }
}

/// What a receipt says, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipting<'a> {
    /// Delivery or read.
    pub kind: ReceiptKind,
    /// The receipted transfer's id, `<source zone>:<sequence>`.
    pub transfer_id: &'a str,
    /// The receipted content: the manifest's `chunks_hash`.
    pub content_hash: [u8; 32],
    /// The service it was delivered to.
    pub service: &'a str,
    /// The zone that delivered it (the signer's zone).
    pub zone: &'a ZoneName,
    /// Who read it: for a read receipt, and only for one.
    pub reader: Option<&'a SubjectId>,
    /// When it was delivered (or read).
    pub time: UnixTime,
}

/// A signed receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Delivery or read.
    pub kind: ReceiptKind,
    /// The receipted transfer's id, `<source zone>:<sequence>`.
    pub transfer_id: String,
    /// The receipted content: the manifest's `chunks_hash`.
    pub content_hash: [u8; 32],
    /// The service it was delivered to.
    pub service: String,
    /// The zone that delivered it.
    pub zone: ZoneName,
    /// Who read it (read receipts only).
    pub reader: Option<SubjectId>,
    /// When.
    pub time: UnixTime,
    /// The signing node's certificate chain (DER), leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The key that signed (the leaf's key).
    pub signer: PublicKey,
    /// The signature over [`RECEIPT_CONTEXT`] and the receipt.
    pub signature: Signature,
}

impl Receipt {
    /// Signs a receipt with the node's key; `chain` is that node's certificate chain (DER,
    /// leaf first).
    pub fn sign(
        what: &Receipting<'_>,
        chain: Vec<Vec<u8>>,
        signer: &dyn Signer,
    ) -> Result<Self, BundleError> {
        let mut receipt = Self {
            kind: what.kind,
            transfer_id: what.transfer_id.to_owned(),
            content_hash: what.content_hash,
            service: what.service.to_owned(),
            zone: what.zone.clone(),
            reader: what.reader.cloned(),
            time: what.time,
            chain,
            signer: signer.public_key(),
            // Replaced below; a placeholder of the right shape.
            signature: Signature::new(Algorithm::Ed25519, vec![0; 64])?,
        };
        let unsigned = receipt.signed_part()?;
        receipt.signature = signer.sign(&message(&unsigned))?;
        // what is signed must also be what encodes
        receipt.encode()?;
        Ok(receipt)
    }

    /// The canonical encoding (what a `receipt` transfer carries).
    pub fn encode(&self) -> Result<Vec<u8>, BundleError> {
        let mut w = WireWriter::from_vec(self.signed_part()?);
        w.u8(self.signature.algorithm().code());
        w.bytes16(self.signature.as_bytes(), "signature")?;
        let out = w.into_bytes();
        if out.len() > MAX_RECEIPT {
            return Err(too_long(out.len()));
        }
        Ok(out)
    }

    /// Reads a receipt, refusing anything [`encode`](Self::encode) would not write, and checks
    /// its signature against the key it carries (whether that key may sign for its zone is the
    /// keeper's question: see [`signer_chain`](Self::signer_chain)).
    pub fn decode(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_RECEIPT {
            return Err(too_long(bytes.len()));
        }
        let mut r = WireReader::new(bytes);
        let version = r.u8("receipt version")?;
        if version != RECEIPT_VERSION {
            return Err(BundleError::Version {
                what: "receipt",
                version,
            });
        }
        let kind = ReceiptKind::from_code(r.u8("receipt kind")?).ok_or(BundleError::Invalid(
            "a receipt is of kind delivery or read",
        ))?;
        let transfer_id = r.str16("transfer id")?.to_owned();
        check_transfer_id(&transfer_id)?;
        let content_hash = r.array::<32>("content hash")?;
        let service = r.str16("service")?.to_owned();
        check_service(&service)?;
        let zone: ZoneName = parse(&mut r, "zone")?;
        let reader = match r.u8("reader flag")? {
            0 => None,
            1 => Some(parse::<SubjectId>(&mut r, "reader")?),
            _ => return Err(BundleError::Invalid("the reader flag is 0 or 1")),
        };
        check_reader(kind, reader.as_ref())?;
        let time = UnixTime::from_millis(r.u64("time")?);
        let n = r.count16("certificates", 4)?;
        if n == 0 || n > MAX_RECEIPT_CHAIN {
            return Err(BundleError::Invalid(
                "a receipt carries one to four certificates",
            ));
        }
        let mut chain = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.len32("certificate", MAX_CERTIFICATE)?;
            let der = r.take(len, "certificate")?;
            if der.is_empty() {
                return Err(BundleError::Invalid("an empty certificate"));
            }
            chain.push(der.to_vec());
        }
        let signer = PublicKey::new(algorithm(&mut r)?, r.bytes16("public key")?.to_vec())?;
        let signed_len = bytes.len() - r.remaining();
        let signature = Signature::new(algorithm(&mut r)?, r.bytes16("signature")?.to_vec())?;
        r.finish()?;
        signer.verify(
            &message(bytes.get(..signed_len).unwrap_or_default()),
            &signature,
        )?;
        Ok(Self {
            kind,
            transfer_id,
            content_hash,
            service,
            zone,
            reader,
            time,
            chain,
            signer,
            signature,
        })
    }

    /// The signer's certificate chain (DER, leaf first), for the keeper to check against its
    /// trust as a `node` of [`zone`](Self::zone) whose key is [`signer`](Self::signer).
    pub fn signer_chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The receipt's words, for the marking check of the flow it crosses on.
    pub fn text(&self) -> Vec<String> {
        let mut out = vec![
            self.kind.as_str().to_owned(),
            self.transfer_id.clone(),
            self.service.clone(),
            self.zone.to_string(),
        ];
        if let Some(r) = &self.reader {
            out.push(r.to_string());
        }
        out
    }

    /// The receipt as JSON, as `tianping exchange receipts` shows it (the certificate chain
    /// left out).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind.as_str(),
            "transfer": self.transfer_id,
            "content_hash": hex32(&self.content_hash),
            "service": self.service,
            "zone": self.zone.as_str(),
            "reader": self.reader.as_ref().map(SubjectId::as_str),
            "time_ms": self.time.as_millis(),
            "signer": self.signer.to_string(),
        })
    }

    fn signed_part(&self) -> Result<Vec<u8>, BundleError> {
        check_transfer_id(&self.transfer_id)?;
        check_service(&self.service)?;
        check_reader(self.kind, self.reader.as_ref())?;
        if self.chain.is_empty() || self.chain.len() > MAX_RECEIPT_CHAIN {
            return Err(BundleError::Invalid(
                "a receipt carries one to four certificates",
            ));
        }
        if self
            .chain
            .iter()
            .any(|c| c.is_empty() || c.len() > MAX_CERTIFICATE)
        {
            return Err(BundleError::Invalid(
                "a certificate is empty or over 16 KiB",
            ));
        }
        let certs: usize = self.chain.iter().map(Vec::len).sum();
        let mut w = WireWriter::with_capacity(256 + certs);
        w.u8(RECEIPT_VERSION);
        w.u8(self.kind.code());
        w.str16(&self.transfer_id)?;
        w.raw(&self.content_hash);
        w.str16(&self.service)?;
        w.str16(self.zone.as_str())?;
        match &self.reader {
            None => w.u8(0),
            Some(r) => {
                w.u8(1);
                w.str16(r.as_str())?;
            }
        }
        w.u64(self.time.as_millis());
        w.len16(self.chain.len(), "certificates")?;
        for c in &self.chain {
            w.bytes32(c, "certificate")?;
        }
        w.u8(self.signer.algorithm().code());
        w.bytes16(self.signer.as_bytes(), "public key")?;
        Ok(w.into_bytes())
    }
}

fn message(signed: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(RECEIPT_CONTEXT.len() + signed.len());
    m.extend_from_slice(RECEIPT_CONTEXT);
    m.extend_from_slice(signed);
    m
}

fn too_long(len: usize) -> BundleError {
    WireError::TooLong {
        field: "receipt",
        len,
        max: MAX_RECEIPT,
    }
    .into()
}

/// `<zone>:<sequence>`: a zone name and a decimal sequence number without leading zeros.
fn check_transfer_id(id: &str) -> Result<(), BundleError> {
    const BAD: BundleError =
        BundleError::Invalid("the receipted transfer id is not `<zone>:<sequence>`");
    if id.is_empty() || id.len() > MAX_TRANSFER_ID {
        return Err(BundleError::Invalid(
            "the receipted transfer id is empty or over 128 bytes",
        ));
    }
    let (zone, seq) = id.rsplit_once(':').ok_or(BAD)?;
    zone.parse::<ZoneName>().map_err(|_| BAD)?;
    let n: u64 = seq.parse().map_err(|_| BAD)?;
    if n.to_string() != seq {
        return Err(BAD);
    }
    Ok(())
}

/// A service name as the policy writes one: a lowercase letter, then `a-z`, `0-9` and `-`,
/// at most 64 bytes.
fn check_service(s: &str) -> Result<(), BundleError> {
    let mut b = s.bytes();
    let ok = b.next().is_some_and(|c| c.is_ascii_lowercase())
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && s.len() <= MAX_SERVICE;
    if ok {
        Ok(())
    } else {
        Err(BundleError::Invalid(
            "the service is not a service name (a lowercase letter, then `a-z`, `0-9` and `-`)",
        ))
    }
}

fn check_reader(kind: ReceiptKind, reader: Option<&SubjectId>) -> Result<(), BundleError> {
    match (kind, reader) {
        (ReceiptKind::Delivery, None) | (ReceiptKind::Read, Some(_)) => Ok(()),
        (ReceiptKind::Delivery, Some(_)) => {
            Err(BundleError::Invalid("a delivery receipt names no reader"))
        }
        (ReceiptKind::Read, None) => Err(BundleError::Invalid("a read receipt names its reader")),
    }
}

fn hex32(b: &[u8; 32]) -> String {
    use std::fmt::Write;
    b.iter().fold(String::with_capacity(64), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
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
    use tianping_core::RingSigner;

    use super::*;

    fn signer(alg: Algorithm) -> RingSigner {
        RingSigner::generate(alg).unwrap().0
    }

    fn sign(s: &RingSigner, kind: ReceiptKind, reader: Option<&SubjectId>) -> Receipt {
        let zone: ZoneName = "private".parse().unwrap();
        Receipt::sign(
            &Receipting {
                kind,
                transfer_id: "internet:42",
                content_hash: [9; 32],
                service: "filing-intake",
                zone: &zone,
                reader,
                time: UnixTime::from_millis(1_764_000_000_000),
            },
            vec![b"leaf cert".to_vec(), b"zone ca".to_vec()],
            s,
        )
        .unwrap()
    }

    #[test]
    fn round_trip_is_canonical() {
        for alg in [Algorithm::Ed25519, Algorithm::Es256] {
            let s = signer(alg);
            let r = sign(&s, ReceiptKind::Delivery, None);
            let bytes = r.encode().unwrap();
            let back = Receipt::decode(&bytes).unwrap();
            assert_eq!(back, r);
            assert_eq!(back.encode().unwrap(), bytes);
            assert_eq!(back.signer, s.public_key());
            assert_eq!(back.signer_chain().len(), 2);
            assert_eq!(back.kind, ReceiptKind::Delivery);
            assert_eq!(back.to_json()["transfer"], "internet:42");
            assert_eq!(back.to_json()["content_hash"], "09".repeat(32));
        }
        let s = signer(Algorithm::Ed25519);
        let reader: SubjectId = "i-lawyer-1".parse().unwrap();
        let read = sign(&s, ReceiptKind::Read, Some(&reader));
        let back = Receipt::decode(&read.encode().unwrap()).unwrap();
        assert_eq!(back.reader, Some(reader));
        assert!(back.text().contains(&"i-lawyer-1".to_owned()));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let s = signer(Algorithm::Ed25519);
        let bytes = sign(&s, ReceiptKind::Delivery, None).encode().unwrap();
        for i in 0..bytes.len() {
            for bit in [0x01_u8, 0x80] {
                let mut b = bytes.clone();
                if let Some(x) = b.get_mut(i) {
                    *x ^= bit;
                }
                assert!(Receipt::decode(&b).is_err(), "byte {i} bit {bit:#x} passed");
            }
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(Receipt::decode(&trailing).is_err());
        for n in 0..bytes.len() {
            assert!(Receipt::decode(bytes.get(..n).unwrap()).is_err());
        }
    }

    #[test]
    fn another_signer_is_refused() {
        let s = signer(Algorithm::Ed25519);
        let other = signer(Algorithm::Ed25519);
        let mut r = sign(&s, ReceiptKind::Delivery, None);
        // the other node's key in place of the signer's: the signature no longer verifies
        r.signer = other.public_key();
        let bytes = r.encode().unwrap();
        let err = Receipt::decode(&bytes).unwrap_err();
        assert!(matches!(err, BundleError::Signature(_)), "{err}");
        // signed by the other node: it verifies, under the other node's key
        let theirs = sign(&other, ReceiptKind::Delivery, None);
        let back = Receipt::decode(&theirs.encode().unwrap()).unwrap();
        assert_ne!(back.signer, s.public_key());
    }

    #[test]
    fn oversize_and_bad_fields_are_refused() {
        let s = signer(Algorithm::Ed25519);
        let zone: ZoneName = "private".parse().unwrap();
        let what = |id: &'static str, service: &'static str| Receipting {
            kind: ReceiptKind::Delivery,
            transfer_id: id,
            content_hash: [0; 32],
            service,
            zone: &zone,
            reader: None,
            time: UnixTime::from_millis(0),
        };
        let chain = vec![vec![1; 100]];
        let big = vec![vec![1; MAX_CERTIFICATE]; 3];
        assert!(Receipt::sign(&what("internet:1", "filing-intake"), big, &s).is_err());
        let too_many = vec![vec![1; 10]; MAX_RECEIPT_CHAIN + 1];
        assert!(Receipt::sign(&what("internet:1", "filing-intake"), too_many, &s).is_err());
        assert!(Receipt::sign(&what("internet:1", "filing-intake"), vec![], &s).is_err());
        for id in [
            "",
            "internet",
            "internet:01",
            "internet:x",
            "In ternet:1",
            ":1",
        ] {
            assert!(
                Receipt::sign(&what(id, "filing-intake"), chain.clone(), &s).is_err(),
                "{id}"
            );
        }
        for service in ["", "Filing", "-x", "a b", "1st"] {
            assert!(
                Receipt::sign(&what("internet:1", service), chain.clone(), &s).is_err(),
                "{service}"
            );
        }
        let reader: SubjectId = "i-lawyer-1".parse().unwrap();
        let mut with_reader = what("internet:1", "filing-intake");
        with_reader.reader = Some(&reader);
        assert!(Receipt::sign(&with_reader, chain.clone(), &s).is_err());
        let mut read = what("internet:1", "filing-intake");
        read.kind = ReceiptKind::Read;
        assert!(Receipt::sign(&read, chain, &s).is_err());
        let huge = vec![0_u8; MAX_RECEIPT + 1];
        assert!(matches!(
            Receipt::decode(&huge),
            Err(BundleError::Wire(WireError::TooLong { .. }))
        ));
    }
}
