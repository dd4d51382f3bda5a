//! TOTP (RFC 6238): SHA-1, 6 digits and 30-second steps by default (what authenticator apps
//! expect), a window of one step either side, and each code accepted once: the caller keeps the
//! last accepted step and passes it back.

use std::fmt::Write as _;

use ring::hmac;
use serde::{Deserialize, Serialize};
use tianping_core::{Secret, UnixTime, ct_eq};

use crate::IdpError;
use crate::form::encode;
use crate::random::Random;

/// The HMAC behind the codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TotpAlgorithm {
    /// HMAC-SHA-1, what every authenticator app supports (the default).
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl TotpAlgorithm {
    fn hmac(self) -> hmac::Algorithm {
        match self {
            TotpAlgorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            TotpAlgorithm::Sha256 => hmac::HMAC_SHA256,
            TotpAlgorithm::Sha512 => hmac::HMAC_SHA512,
        }
    }

    /// The name in an `otpauth://` URI.
    pub fn as_str(self) -> &'static str {
        match self {
            TotpAlgorithm::Sha1 => "SHA1",
            TotpAlgorithm::Sha256 => "SHA256",
            TotpAlgorithm::Sha512 => "SHA512",
        }
    }
}

/// How codes are made and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpConfig {
    /// The HMAC.
    pub algorithm: TotpAlgorithm,
    /// Digits per code, 6 to 8.
    pub digits: u32,
    /// The step, in seconds.
    pub step_secs: u64,
    /// Steps accepted either side of the current one (clock drift, slow typing).
    pub window: u64,
}

impl Default for TotpConfig {
    fn default() -> Self {
        Self {
            algorithm: TotpAlgorithm::Sha1,
            digits: 6,
            step_secs: 30,
            window: 1,
        }
    }
}

/// A user's TOTP secret (20 random bytes when generated); never printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpSecret(Secret<Vec<u8>>);

impl TotpSecret {
    /// A new random secret of 20 bytes (160 bits, RFC 4226 §4).
    pub fn generate(rng: &dyn Random) -> Result<Self, IdpError> {
        Ok(Self(Secret::new(crate::random::bytes::<20>(rng)?.to_vec())))
    }

    /// A secret from its raw bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(Secret::new(bytes))
    }

    /// A secret from its base32 text (RFC 4648, no padding needed, case and spaces ignored).
    pub fn from_base32(text: &str) -> Result<Self, IdpError> {
        base32_decode(text)
            .map(Self::from_bytes)
            .ok_or(IdpError::BadParameter {
                name: "secret",
                reason: "expected base32",
            })
    }

    /// The raw secret.
    pub fn expose(&self) -> &[u8] {
        self.0.expose()
    }

    /// The secret as base32 without padding, as authenticator apps take it.
    pub fn to_base32(&self) -> Secret<String> {
        Secret::new(base32_encode(self.expose()))
    }
}

impl TotpConfig {
    /// The step that `now` falls in.
    pub fn step_at(&self, now: UnixTime) -> u64 {
        now.as_secs() / self.step_secs.max(1)
    }

    /// The code for `step` (RFC 4226 §5.3 dynamic truncation).
    pub fn code_at(&self, secret: &TotpSecret, step: u64) -> String {
        let key = hmac::Key::new(self.algorithm.hmac(), secret.expose());
        let tag = hmac::sign(&key, &step.to_be_bytes());
        let mac = tag.as_ref();
        let offset = usize::from(mac.last().copied().unwrap_or_default() & 0x0f);
        let mut word = [0u8; 4];
        for (i, w) in word.iter_mut().enumerate() {
            *w = mac.get(offset + i).copied().unwrap_or_default();
        }
        let bin = u32::from_be_bytes(word) & 0x7fff_ffff;
        let digits = self.digits.clamp(6, 8);
        let value = bin % 10u32.pow(digits);
        format!("{value:0width$}", width = digits as usize)
    }

    /// Checks `code` at `now`; `last_accepted` is the step of the last code this account had
    /// accepted. Returns the step of this code, for the caller to keep: a code of that step or an
    /// earlier one is then refused as replayed.
    pub fn verify(
        &self,
        secret: &TotpSecret,
        code: &str,
        now: UnixTime,
        last_accepted: Option<u64>,
    ) -> Result<u64, IdpError> {
        let digits = self.digits.clamp(6, 8) as usize;
        let code = code.trim();
        if code.len() != digits || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdpError::TotpWrong);
        }
        let current = self.step_at(now);
        let first = current.saturating_sub(self.window);
        let last = current.saturating_add(self.window);
        // Every step in the window is computed and compared, matched or not.
        let mut matched = None;
        for step in first..=last {
            if ct_eq(self.code_at(secret, step).as_bytes(), code.as_bytes()) {
                matched = Some(step);
            }
        }
        let step = matched.ok_or(IdpError::TotpWrong)?;
        if last_accepted.is_some_and(|l| step <= l) {
            return Err(IdpError::TotpReplayed);
        }
        Ok(step)
    }

    /// The `otpauth://totp/` URI that authenticator apps read (the Key URI format).
    pub fn otpauth_uri(&self, secret: &TotpSecret, issuer: &str, account: &str) -> Secret<String> {
        let mut uri = format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}",
            encode(issuer),
            encode(account),
            secret.to_base32().expose(),
            encode(issuer)
        );
        let _ = write!(
            uri,
            "&algorithm={}&digits={}&period={}",
            self.algorithm.as_str(),
            self.digits.clamp(6, 8),
            self.step_secs
        );
        Secret::new(uri)
    }

    /// What an enrolment page shows: a new secret, its URI and the URI as an inline SVG QR code.
    pub fn enrol(
        &self,
        rng: &dyn Random,
        issuer: &str,
        account: &str,
    ) -> Result<TotpEnrolment, IdpError> {
        let secret = TotpSecret::generate(rng)?;
        let uri = self.otpauth_uri(&secret, issuer, account);
        let qr_svg = Secret::new(qr_svg(uri.expose())?);
        Ok(TotpEnrolment {
            secret,
            uri,
            qr_svg,
        })
    }
}

/// A new TOTP enrolment, before the user has confirmed it with a first code.
#[derive(Debug)]
pub struct TotpEnrolment {
    /// The new secret (keep it once the user confirms a code).
    pub secret: TotpSecret,
    /// The `otpauth://` URI.
    pub uri: Secret<String>,
    /// The URI as a QR code: an `<svg>` element to inline in the page (no external asset).
    pub qr_svg: Secret<String>,
}

/// `text` as a QR code, an SVG document without an XML prolog, for inlining in HTML.
pub fn qr_svg(text: &str) -> Result<String, IdpError> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|_| IdpError::Internal("qr code"))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build())
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Base32 (RFC 4648 §6) without padding.
pub(crate) fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &b in data {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            let i = ((buffer >> bits) & 31) as usize;
            out.push(char::from(BASE32.get(i).copied().unwrap_or(b'A')));
        }
    }
    if bits > 0 {
        let i = ((buffer << (5 - bits)) & 31) as usize;
        out.push(char::from(BASE32.get(i).copied().unwrap_or(b'A')));
    }
    out
}

/// Base32 text back to bytes: case, spaces and `=` padding ignored; any other character fails.
pub(crate) fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for c in text.bytes().filter(|c| !matches!(c, b' ' | b'=' | b'-')) {
        let c = c.to_ascii_uppercase();
        let v = u32::try_from(BASE32.iter().position(|x| *x == c)?).ok()?;
        buffer = ((buffer << 5) | v) & 0xffff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::random::SeededRandom;

    #[derive(Deserialize)]
    struct Vectors {
        secrets: HashMap<String, String>,
        vectors: Vec<Vector>,
    }

    #[derive(Deserialize)]
    struct Vector {
        time: u64,
        step: String,
        totp: String,
        mode: String,
    }

    #[test]
    fn rfc6238_appendix_b() {
        let v: Vectors = serde_json::from_str(include_str!("../tests/data/rfc6238.json")).unwrap();
        assert_eq!(v.vectors.len(), 18);
        for t in &v.vectors {
            let algorithm = match t.mode.as_str() {
                "SHA1" => TotpAlgorithm::Sha1,
                "SHA256" => TotpAlgorithm::Sha256,
                _ => TotpAlgorithm::Sha512,
            };
            let cfg = TotpConfig {
                algorithm,
                digits: 8,
                ..TotpConfig::default()
            };
            let secret = TotpSecret::from_bytes(v.secrets[&t.mode].as_bytes().to_vec());
            let now = UnixTime::from_secs(t.time);
            let step = cfg.step_at(now);
            assert_eq!(step, u64::from_str_radix(&t.step, 16).unwrap());
            assert_eq!(cfg.code_at(&secret, step), t.totp, "{} {}", t.mode, t.time);
            assert_eq!(cfg.verify(&secret, &t.totp, now, None), Ok(step));
        }
    }

    #[test]
    fn window_of_one_step_and_codes_used_once() {
        let cfg = TotpConfig::default();
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        let now = UnixTime::from_secs(1_111_111_111);
        let step = cfg.step_at(now);
        // RFC 6238 vector truncated to 6 digits
        assert_eq!(cfg.code_at(&secret, step), "050471");
        let prev = cfg.code_at(&secret, step - 1);
        let next = cfg.code_at(&secret, step + 1);
        assert_eq!(cfg.verify(&secret, &prev, now, None), Ok(step - 1));
        assert_eq!(cfg.verify(&secret, &next, now, None), Ok(step + 1));
        let too_old = cfg.code_at(&secret, step - 2);
        assert_eq!(
            cfg.verify(&secret, &too_old, now, None),
            Err(IdpError::TotpWrong)
        );
        // accepted once: the same code again, or an earlier step, is a replay
        let accepted = cfg.verify(&secret, "050471", now, None).unwrap();
        assert_eq!(
            cfg.verify(&secret, "050471", now, Some(accepted)),
            Err(IdpError::TotpReplayed)
        );
        assert_eq!(
            cfg.verify(&secret, &prev, now, Some(accepted)),
            Err(IdpError::TotpReplayed)
        );
        assert_eq!(
            cfg.verify(&secret, &next, now, Some(accepted)),
            Ok(step + 1)
        );
        for bad in ["", "12345", "1234567", "05047a", "０５０４７１"] {
            assert_eq!(
                cfg.verify(&secret, bad, now, None),
                Err(IdpError::TotpWrong),
                "{bad}"
            );
        }
    }

    #[test]
    fn base32_round_trips_rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_encode(raw.as_bytes()), enc);
            assert_eq!(base32_decode(enc).unwrap(), raw.as_bytes());
        }
        assert_eq!(base32_decode("mzxw 6ytb oi======").unwrap(), b"foobar");
        assert!(base32_decode("MZXW1").is_none());
        assert!(TotpSecret::from_base32("!!").is_err());
    }

    #[test]
    fn enrolment_uri_and_qr_code() {
        let cfg = TotpConfig::default();
        let e = cfg
            .enrol(&SeededRandom::new(7), "天平 private", "judge-0001")
            .unwrap();
        assert_eq!(e.secret.expose().len(), 20);
        let b32 = e.secret.to_base32();
        assert_eq!(b32.expose().len(), 32);
        assert_eq!(TotpSecret::from_base32(b32.expose()).unwrap(), e.secret);
        let uri = e.uri.expose();
        assert!(uri.starts_with("otpauth://totp/%E5%A4%A9%E5%B9%B3%20private:judge-0001?secret="));
        assert!(uri.contains(&format!("secret={}&", b32.expose())));
        assert!(uri.ends_with("&algorithm=SHA1&digits=6&period=30"));
        let svg = e.qr_svg.expose();
        assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"));
        assert!(svg.contains("<svg") && svg.contains("</svg>") && svg.contains("<path"));
        assert!(!svg.contains("<script") && !svg.contains("href"));
        assert_eq!(format!("{:?}", e.secret), "TotpSecret([redacted])");
    }
}
