//! Password sign-ins per second: the check tianping's sign-in makes (`Passwords::verify` on the
//! account's stored PHC string, argon2id with the default parameters) against bare argon2id with
//! the same parameters, on the same threads, in alternating rounds.
//!
//! Baselines: the `argon2` crate's `verify_password` on the same PHC string (what any server
//! storing PHC strings does), and the raw hash (`hash_password_into` with the same salt and
//! parameters, then a comparison: no PHC parsing at all). The unknown-account path (the dummy
//! hash) is measured too: it must cost what a known account costs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tianping_idp::{OsRandom, PasswordParams, PasswordPolicy, Passwords};

use crate::Res;

const PASSWORD: &str = "Court#2026-bench";

/// Rates of one round, sign-ins (hash checks) per second.
#[derive(Debug, Clone, Copy, Default)]
pub struct Round {
    /// `Passwords::verify` with the right password of a known account.
    pub tianping: f64,
    /// `Passwords::verify` for an unknown account (the dummy hash).
    pub unknown: f64,
    /// `argon2` `verify_password` on the same PHC string.
    pub bare_phc: f64,
    /// `argon2` `hash_password_into` with the same salt, compared.
    pub bare_raw: f64,
}

/// Runs `f` on `threads` threads for `window`; calls per second.
fn rate(threads: usize, window: Duration, f: &(dyn Fn() -> bool + Sync)) -> Res<f64> {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    if f() {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        std::thread::sleep(window);
        stop.store(true, Ordering::Relaxed);
    });
    let secs = start.elapsed().as_secs_f64();
    if failed.load(Ordering::Relaxed) > 0 {
        return Err("a password check gave the wrong answer".into());
    }
    let n = u32::try_from(done.load(Ordering::Relaxed))?;
    Ok(f64::from(n) / secs)
}

/// `rounds` rounds of the four measurements, each `window` long on `threads` threads.
pub fn bench(threads: usize, window: Duration, rounds: usize) -> Res<(Vec<Round>, String)> {
    let params = PasswordParams::default();
    let pw = Passwords::new(params, PasswordPolicy::default(), &OsRandom::new())?;
    let stored = pw.hash(PASSWORD, &OsRandom::new())?;
    let argon = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(32),
        )
        .map_err(|e| format!("argon2 params: {e}"))?,
    );
    let phc = PasswordHash::new(&stored).map_err(|e| format!("phc: {e}"))?;
    let salt = phc.salt.ok_or("no salt")?;
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| format!("salt: {e}"))?
        .to_vec();
    let expected = phc.hash.ok_or("no hash")?.as_bytes().to_vec();
    // The baselines give the right answers before they are timed.
    let raw_ok = || {
        let mut out = [0u8; 32];
        argon
            .hash_password_into(PASSWORD.as_bytes(), &salt_raw, &mut out)
            .is_ok()
            && out.as_slice() == expected.as_slice()
    };
    let phc_ok = || argon.verify_password(PASSWORD.as_bytes(), &phc).is_ok();
    if !raw_ok() || !phc_ok() || !pw.verify(Some(&stored), PASSWORD) {
        return Err("the password checks disagree".into());
    }
    let before = pw.hash_calls();
    if pw.verify(None, PASSWORD) || pw.hash_calls() != before + 1 {
        return Err("the unknown-account path does not cost one hash".into());
    }
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        out.push(Round {
            tianping: rate(threads, window, &|| pw.verify(Some(&stored), PASSWORD))?,
            bare_phc: rate(threads, window, &phc_ok)?,
            unknown: rate(threads, window, &|| !pw.verify(None, PASSWORD))?,
            bare_raw: rate(threads, window, &raw_ok)?,
        });
    }
    let shown = stored.rsplitn(3, '$').nth(2).unwrap_or_default().to_owned();
    Ok((out, shown))
}
