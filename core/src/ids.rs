//! Identity vocabulary (DESIGN §8), each type parsed strictly.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a value is not a valid identifier of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A subject id outside `[a-z0-9-]{3,64}`.
    #[error("`{0}` is not a subject id: expected 3 to 64 of `a-z`, `0-9` and `-`")]
    SubjectId(String),
    /// A court code outside the dotted grammar.
    #[error(
        "`{0}` is not a court code: expected dotted segments such as `bj.01.03` (first segment 2 to 8 of `a-z`, then up to 4 segments of 1 to 8 of `a-z0-9`)"
    )]
    CourtCode(String),
    /// An unknown role name.
    #[error("`{0}` is not a role")]
    Role(String),
    /// An unknown authentication strength.
    #[error("`{0}` is not an authentication strength: expected `pwd`, `otp` or `cert`")]
    Acr(String),
    /// An unknown authentication method reference.
    #[error("`{0}` is not an authentication method: expected `pwd`, `otp`, `hwk`, `pin` or `mfa`")]
    Amr(String),
    /// An unknown clearance.
    #[error("`{0}` is not a clearance: expected `none`, `secret`, `confidential` or `top-secret`")]
    Clearance(String),
    /// A zone name outside `[a-z][a-z0-9-]{0,31}`.
    #[error("`{0}` is not a zone name: expected a letter then up to 31 of `a-z`, `0-9` and `-`")]
    ZoneName(String),
}

/// Shortens user input quoted in an error so a huge value cannot flood a log.
fn quoted(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or_default())
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                s.parse()
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// An opaque subject id, `[a-z0-9-]{3,64}`, the same for a person in every zone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubjectId(String);
string_newtype!(SubjectId);

impl SubjectId {
    /// Whether the id was assigned to a public registration made in `internet` (`p-` prefix).
    pub fn is_public_registration(&self) -> bool {
        self.0.starts_with("p-")
    }
}

impl FromStr for SubjectId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let ok = (3..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::SubjectId(quoted(s)))
        }
    }
}

/// A court code: a dotted path down the court hierarchy (`spc`, `bj`, `bj.01`, `bj.01.03`,
/// `bj.01.03.t2`).
///
/// `spc` (the Supreme People's Court) is the root: every court is within it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CourtCode(String);
string_newtype!(CourtCode);

impl CourtCode {
    /// The code of the Supreme People's Court, the root of the hierarchy.
    pub const SUPREME: &'static str = "spc";

    /// Whether this court is `other` or a court below it. Every court is within `spc`.
    pub fn is_within(&self, other: &CourtCode) -> bool {
        if other.0 == Self::SUPREME || self.0 == other.0 {
            return true;
        }
        self.0
            .strip_prefix(other.0.as_str())
            .is_some_and(|rest| rest.starts_with('.'))
    }

    /// The number of segments: 1 for a high court (or `spc`), 4 for a tribunal.
    pub fn depth(&self) -> usize {
        self.0.split('.').count()
    }

    /// The court directly above, if any (`bj` for `bj.01`, `spc` for `bj`).
    pub fn parent(&self) -> Option<CourtCode> {
        match self.0.rsplit_once('.') {
            Some((parent, _)) => Some(Self(parent.to_owned())),
            None if self.0 == Self::SUPREME => None,
            None => Some(Self(Self::SUPREME.to_owned())),
        }
    }

    /// Whether `s` is a court code, without allocating (what [`FromStr`] accepts).
    pub fn is_valid(s: &str) -> bool {
        let mut segments = s.split('.');
        let first_ok = segments.next().is_some_and(|f| {
            (2..=8).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_lowercase())
        });
        let mut count = 1;
        let rest_ok = segments.all(|seg| {
            count += 1;
            (1..=8).contains(&seg.len())
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        first_ok && rest_ok && count <= 5 && (s == Self::SUPREME || !s.starts_with("spc."))
    }
}

impl FromStr for CourtCode {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if Self::is_valid(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::CourtCode(quoted(s)))
        }
    }
}

/// The name of a zone; zones are declared in the policy, the five defaults in [`DEFAULT_ZONES`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ZoneName(String);
string_newtype!(ZoneName);

/// The zones of the default policy, from the least to the most trusted network.
pub const DEFAULT_ZONES: [&str; 5] = ["internet", "external", "mobile", "private", "classified"];

impl FromStr for ZoneName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let mut bytes = s.bytes();
        let ok = s.len() <= 32
            && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::ZoneName(quoted(s)))
        }
    }
}

macro_rules! keyword_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $err:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value's name as written in tokens, policies and logs.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(IdError::$err(quoted(s))),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                s.parse()
            }
        }

        impl From<$name> for &'static str {
            fn from(v: $name) -> &'static str {
                v.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keyword_enum! {
    /// A court role (DESIGN §5, §8).
    Role, Role {
        /// 法官, a quota judge.
        Judge = "judge",
        /// 法官助理.
        Assistant = "assistant",
        /// 书记员.
        Clerk = "clerk",
        /// 执行员.
        Enforcement = "enforcement",
        /// 司法警察.
        Police = "police",
        /// 人民陪审员.
        Assessor = "assessor",
        /// Court president.
        President = "president",
        /// Division chief.
        DivisionChief = "division-chief",
        /// Member of the adjudication committee.
        Committee = "committee",
        /// System administrator (三员分立).
        Sysadmin = "sysadmin",
        /// Security administrator (三员分立).
        Secadmin = "secadmin",
        /// Security auditor (三员分立).
        Auditor = "auditor",
        /// A lawyer.
        Lawyer = "lawyer",
        /// A party to a case.
        Litigant = "litigant",
        /// A member of the public.
        Public = "public",
        /// An operator at a partner agency (procuratorate, police, bank, registry).
        Partner = "partner",
    }
}

impl Role {
    /// Whether this is one of the three separated administrator roles, of which an account may
    /// hold at most one.
    pub fn is_separated_admin(self) -> bool {
        matches!(self, Role::Sysadmin | Role::Secadmin | Role::Auditor)
    }

    /// Checks that a set of roles holds at most one of `sysadmin`, `secadmin`, `auditor`.
    pub fn check_separation(roles: &[Role]) -> Result<(), (Role, Role)> {
        let mut admins = roles.iter().copied().filter(|r| r.is_separated_admin());
        if let Some(first) = admins.next() {
            if let Some(second) = admins.find(|r| *r != first) {
                return Err((first, second));
            }
        }
        Ok(())
    }
}

keyword_enum! {
    /// Authentication strength, ordered: `pwd` < `otp` < `cert`.
    Acr, Acr {
        /// Password only.
        Pwd = "pwd",
        /// Password and TOTP.
        Otp = "otp",
        /// Certificate with PIN or TOTP.
        Cert = "cert",
    }
}

keyword_enum! {
    /// Authentication method references (RFC 8176).
    Amr, Amr {
        /// Password.
        Pwd = "pwd",
        /// One-time password.
        Otp = "otp",
        /// Hardware-secured key.
        Hwk = "hwk",
        /// Software-secured key.
        Swk = "swk",
        /// Personal identification number.
        Pin = "pin",
        /// Multiple factors.
        Mfa = "mfa",
    }
}

keyword_enum! {
    /// Security clearance, ordered: `none` < `secret` < `confidential` < `top-secret`.
    Clearance, Clearance {
        /// No clearance.
        None = "none",
        /// 秘密.
        Secret = "secret",
        /// 机密.
        Confidential = "confidential",
        /// 绝密.
        TopSecret = "top-secret",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn subject_ids() {
        assert!("abc".parse::<SubjectId>().is_ok());
        assert!(
            "p-2024-0001"
                .parse::<SubjectId>()
                .unwrap()
                .is_public_registration()
        );
        for bad in ["ab", "Abc", "a_b", "ab c", "", &"a".repeat(65), "法官"] {
            assert!(bad.parse::<SubjectId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn court_codes() {
        for good in [
            "spc",
            "bj",
            "bj.01",
            "bj.01.03",
            "bj.01.03.t2",
            "gd.03.05.t12",
        ] {
            assert!(good.parse::<CourtCode>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "b",
            "BJ",
            "bj.",
            ".bj",
            "bj..01",
            "bj.01.03.t2.x.y",
            "1bj",
            "bj.0-1",
            "spc.bj",
            "bj.123456789",
        ] {
            let err = bad.parse::<CourtCode>().unwrap_err();
            assert!(err.to_string().contains("is not a court code"), "{bad}");
        }
    }

    #[test]
    fn within() {
        let c = |s: &str| s.parse::<CourtCode>().unwrap();
        assert!(c("bj.01.03").is_within(&c("bj.01")));
        assert!(c("bj.01").is_within(&c("bj.01")));
        assert!(c("bj.01").is_within(&c("spc")));
        assert!(!c("bj.011").is_within(&c("bj.01")));
        assert!(!c("bj").is_within(&c("bj.01")));
        assert!(!c("sh.01").is_within(&c("bj")));
        assert_eq!(c("bj.01.03").parent(), Some(c("bj.01")));
        assert_eq!(c("bj").parent(), Some(c("spc")));
        assert_eq!(c("spc").parent(), None);
    }

    #[test]
    fn ordered_levels() {
        assert!(Acr::Pwd < Acr::Otp && Acr::Otp < Acr::Cert);
        assert!(Clearance::None < Clearance::Secret);
        assert!(Clearance::Confidential < Clearance::TopSecret);
        assert_eq!(
            "top-secret".parse::<Clearance>().unwrap(),
            Clearance::TopSecret
        );
        assert!("TOP-SECRET".parse::<Clearance>().is_err());
    }

    #[test]
    fn roles_round_trip_and_separation() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), *r);
        }
        assert!(Role::check_separation(&[Role::Sysadmin, Role::Judge]).is_ok());
        assert!(Role::check_separation(&[Role::Sysadmin, Role::Sysadmin]).is_ok());
        assert_eq!(
            Role::check_separation(&[Role::Judge, Role::Sysadmin, Role::Auditor]),
            Err((Role::Sysadmin, Role::Auditor))
        );
    }

    #[test]
    fn serde_refuses_bad_values() {
        let r: Result<Vec<Role>, _> = serde_json::from_str(r#"["judge","root"]"#);
        assert!(r.unwrap_err().to_string().contains("`root` is not a role"));
        let c: CourtCode = serde_json::from_str(r#""bj.01""#).unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), r#""bj.01""#);
    }

    #[test]
    fn long_input_is_shortened_in_errors() {
        let err = "X"
            .repeat(10_000)
            .parse::<SubjectId>()
            .unwrap_err()
            .to_string();
        assert!(err.len() < 200);
    }

    proptest! {
        #[test]
        fn court_code_parse_never_panics(s in ".{0,80}") {
            let _ = s.parse::<CourtCode>();
            let _ = s.parse::<SubjectId>();
            let _ = s.parse::<ZoneName>();
        }

        #[test]
        fn child_is_within_parent(base in "[a-z]{2,8}(\\.[a-z0-9]{1,8}){0,3}", seg in "[a-z0-9]{1,8}") {
            let parent: CourtCode = base.parse().unwrap();
            if parent.as_str() != "spc" {
                let child: CourtCode = format!("{base}.{seg}").parse().unwrap();
                prop_assert!(child.is_within(&parent));
                prop_assert!(!parent.is_within(&child));
                prop_assert_eq!(child.parent(), Some(parent));
            }
        }
    }
}
