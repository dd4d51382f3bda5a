//! A hook for counting what the provider does: grants by type, sign-ins by outcome, their
//! failures and lockouts by reason. The provider calls it at each point; what it counts into
//! (the CLI's `/metrics` registry, a test's tally) is the caller's. The default counts nothing.
//!
//! Reasons are the audit records' reasons (a fixed set of short phrases, never a secret, a
//! login name or a token).

/// What the provider reports as it works; every method defaults to doing nothing.
pub trait IdpMetrics: Send + Sync {
    /// A token grant answered with tokens: `authorization_code`, `refresh_token` or
    /// `client_credentials`.
    fn grant(&self, kind: &str) {
        let _ = kind;
    }

    /// A sign-in ended: `ok` (a code follows) or `failure`.
    fn sign_in(&self, outcome: &str) {
        let _ = outcome;
    }

    /// A sign-in step failed (wrong password, wrong code, locked, acr not reachable, ...).
    fn failure(&self, reason: &str) {
        let _ = reason;
    }

    /// An account was locked out by a failure (`reason` as the failure's).
    fn lockout(&self, reason: &str) {
        let _ = reason;
    }
}

/// Counts nothing: the default hook.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl IdpMetrics for NoMetrics {}

/// Reports a sign-in's audit notes (`action`, `reason`) to `m`: `signin.ok`, `signin.failure`
/// and `signin.lockout`; other notes (enrolment, password change, registration) count nothing.
#[cfg(feature = "server")]
pub(crate) fn report_sign_in<'a>(
    m: &dyn IdpMetrics,
    notes: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    for (action, reason) in notes {
        match action {
            "signin.ok" => m.sign_in("ok"),
            "signin.failure" => {
                m.sign_in("failure");
                m.failure(reason);
            }
            "signin.lockout" => m.lockout(reason),
            _ => {}
        }
    }
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Tally(Mutex<Vec<String>>);

    impl Tally {
        fn push(&self, s: String) {
            if let Ok(mut v) = self.0.lock() {
                v.push(s);
            }
        }
    }

    impl IdpMetrics for Tally {
        fn sign_in(&self, outcome: &str) {
            self.push(format!("sign_in {outcome}"));
        }
        fn failure(&self, reason: &str) {
            self.push(format!("failure {reason}"));
        }
        fn lockout(&self, reason: &str) {
            self.push(format!("lockout {reason}"));
        }
    }

    #[test]
    fn sign_in_notes_become_counts() {
        let t = Tally::default();
        report_sign_in(
            &t,
            [
                ("signin.failure", "wrong password"),
                ("signin.lockout", "wrong password"),
                ("signin.totp_enrolled", ""),
                ("signin.ok", "otp"),
            ],
        );
        assert_eq!(
            *t.0.lock().unwrap(),
            [
                "sign_in failure",
                "failure wrong password",
                "lockout wrong password",
                "sign_in ok"
            ]
        );
        // the default hook takes everything and counts nothing
        NoMetrics.grant("refresh_token");
        report_sign_in(&NoMetrics, [("signin.ok", "pwd")]);
    }
}
