//! The crate's one error type.

/// Why a certificate, key, CRL or PKI folder was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The certificate does not chain to a CA of the trust bundle (or of the zone asked for).
    #[error("the certificate was not issued by a trusted CA{0}")]
    UnknownIssuer(String),
    /// The validation time is after the certificate's `notAfter`.
    #[error("the certificate expired at {} (checked at {})", t(*not_after), t(*at))]
    Expired {
        /// The certificate's `notAfter`, unix seconds.
        not_after: u64,
        /// The validation time, unix seconds.
        at: u64,
    },
    /// The validation time is before the certificate's `notBefore`.
    #[error("the certificate is not valid before {} (checked at {})", t(*not_before), t(*at))]
    NotYetValid {
        /// The certificate's `notBefore`, unix seconds.
        not_before: u64,
        /// The validation time, unix seconds.
        at: u64,
    },
    /// The certificate's serial is on its CA's revocation list.
    #[error("the certificate has been revoked")]
    Revoked,
    /// The trust store holds CRLs, but none of the certificate's issuing CA.
    #[error("the revocation status is unknown: no crl of the issuing CA was loaded")]
    RevocationUnknown,
    /// The issuing CA's CRL is past its `nextUpdate`, so a newer revocation may be missing.
    #[error("the crl expired at {} (checked at {})", t(*next_update), t(*at))]
    StaleCrl {
        /// The CRL's `nextUpdate`, unix seconds.
        next_update: u64,
        /// The validation time, unix seconds.
        at: u64,
    },
    /// The certificate's key usages do not allow what it was presented for.
    #[error("the certificate is not allowed for {0}")]
    WrongUsage(String),
    /// The certificate lacks the Tianping names it needs (zone, kind, subject, court).
    #[error("the certificate does not carry a court identity: {0}")]
    MissingIdentity(String),
    /// The input is not a well-formed certificate, key, CRL or PEM file.
    #[error("malformed input: {0}")]
    Malformed(String),
    /// A request to issue or configure was refused before anything was made.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Reading or writing a file failed.
    #[error("cannot {action} `{path}`: {reason}")]
    Io {
        /// What was being done (`read`, `write`, `create`).
        action: &'static str,
        /// The file or folder.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The certificate library refused to generate or sign.
    #[error("cannot generate: {0}")]
    Generate(String),
    /// The TLS configuration could not be built.
    #[error("cannot build the tls configuration: {0}")]
    Tls(String),
}

fn t(unix_secs: u64) -> String {
    format_time(i64::try_from(unix_secs).unwrap_or(i64::MAX))
}

impl CertError {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, e: &std::io::Error) -> Self {
        CertError::Io {
            action,
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    }

    pub(crate) fn malformed(what: impl std::fmt::Display) -> Self {
        CertError::Malformed(what.to_string())
    }
}

impl From<tianping_core::FileError> for CertError {
    fn from(e: tianping_core::FileError) -> Self {
        CertError::Io {
            action: e.action,
            path: e.path,
            reason: e.reason,
        }
    }
}

impl From<rcgen::Error> for CertError {
    fn from(e: rcgen::Error) -> Self {
        CertError::Generate(e.to_string())
    }
}

/// Maps a `webpki` path-validation error to the caller's terms.
pub(crate) fn from_webpki(e: &webpki::Error) -> CertError {
    use webpki::Error as W;
    match e {
        W::UnknownIssuer => CertError::UnknownIssuer(String::new()),
        W::CertExpired { time, not_after } => CertError::Expired {
            not_after: not_after.as_secs(),
            at: time.as_secs(),
        },
        W::CertNotValidYet { time, not_before } => CertError::NotYetValid {
            not_before: not_before.as_secs(),
            at: time.as_secs(),
        },
        W::CertRevoked => CertError::Revoked,
        W::UnknownRevocationStatus => CertError::RevocationUnknown,
        W::CrlExpired { time, next_update } => CertError::StaleCrl {
            next_update: next_update.as_secs(),
            at: time.as_secs(),
        },
        #[expect(deprecated, reason = "older webpki versions still return it")]
        W::RequiredEkuNotFound => CertError::WrongUsage("this use (extended key usage)".to_owned()),
        W::RequiredEkuNotFoundContext(_) => {
            CertError::WrongUsage("this use (extended key usage)".to_owned())
        }
        W::CaUsedAsEndEntity => CertError::WrongUsage("an end entity (it is a CA)".to_owned()),
        W::EndEntityUsedAsCa => CertError::WrongUsage("issuing (it is not a CA)".to_owned()),
        W::InvalidSignatureForPublicKey => {
            CertError::UnknownIssuer(": the signature does not match the issuer".to_owned())
        }
        other => CertError::Malformed(format!("{other:?}").to_lowercase()),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_time(unix_secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix_secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{unix_secs} (unix seconds)"),
    }
}
