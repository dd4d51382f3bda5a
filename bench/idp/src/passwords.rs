//! Password sign-ins per second: the check tianping's sign-in makes (`Passwords::verify` on the
//! account's stored PHC string, argon2id with the default parameters) against bare argon2id with
//! the same parameters, on the same threads, one check of each kind after the other.
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

/// The checks of one kind, and the wall time they took, summed over the threads.
#[derive(Default)]
struct Tally {
    checks: AtomicU64,
    nanos: AtomicU64,
}

/// Runs the four checks in turn, one after another on each of `threads` threads, for `window`,
/// timing each one: all four meet the same load on the shared cores. Rates are checks per second
/// of the `threads` threads together (threads ÷ mean time per check).
fn interleaved(
    threads: usize,
    window: Duration,
    checks: &[&(dyn Fn() -> bool + Sync); 4],
) -> Res<[f64; 4]> {
    let stop = AtomicBool::new(false);
    let failed = AtomicU64::new(0);
    let tallies: [Tally; 4] = Default::default();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stop, failed, tallies) = (&stop, &failed, &tallies);
            s.spawn(move || {
                // Each thread starts at another check, so none is always first.
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let k = i % 4;
                    i = i.wrapping_add(1);
                    let (Some(check), Some(tally)) = (checks.get(k), tallies.get(k)) else {
                        continue;
                    };
                    let t0 = Instant::now();
                    let ok = check();
                    let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    tally.checks.fetch_add(1, Ordering::Relaxed);
                    tally.nanos.fetch_add(ns, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(window);
        stop.store(true, Ordering::Relaxed);
    });
    if failed.load(Ordering::Relaxed) > 0 {
        return Err("a password check gave the wrong answer".into());
    }
    let threads = f64::from(u32::try_from(threads)?);
    let mut out = [0.0; 4];
    for (o, t) in out.iter_mut().zip(&tallies) {
        let n = f64::from(u32::try_from(t.checks.load(Ordering::Relaxed))?);
        let secs = f64::from(u32::try_from(t.nanos.load(Ordering::Relaxed) / 1000)?) / 1e6;
        *o = if secs > 0.0 { threads * n / secs } else { 0.0 };
    }
    Ok(out)
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
    let known = || pw.verify(Some(&stored), PASSWORD);
    let unknown = || !pw.verify(None, PASSWORD);
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let [tianping, unknown, bare_phc, bare_raw] =
            interleaved(threads, window, &[&known, &unknown, &phc_ok, &raw_ok])?;
        out.push(Round {
            tianping,
            unknown,
            bare_phc,
            bare_raw,
        });
    }
    let shown = stored.rsplitn(3, '$').nth(2).unwrap_or_default().to_owned();
    Ok((out, shown))
}
