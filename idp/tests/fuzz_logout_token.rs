//! Replays the `idp_logout_token` fuzz target's checked-in corpus on stable, with seeded
//! mutations of each seed, and checks that the good seeds still verify and each bad one is
//! refused for its reason (so the fuzzer starts from real inputs).
//!
//! `IDP_WRITE_SEEDS=1 cargo test -p tianping-idp --test fuzz_logout_token` rewrites the seeds.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use serde_json::{Value, json};
use tianping_idp::internal::{self, FUZZ_ISSUER, FUZZ_LOGOUT_AUDIENCE, FUZZ_NOW};
use tianping_idp::{
    BACKCHANNEL_LOGOUT_EVENT, JwtError, LOGOUT_TOKEN_TYPE, LogoutClaims, make_logout_token,
    verify_logout_token,
};

const TARGET: &str = "idp_logout_token";

fn claims(sub: Option<&str>, sid: Option<&str>) -> Value {
    let mut v = json!({
        "iss": FUZZ_ISSUER,
        "aud": FUZZ_LOGOUT_AUDIENCE,
        "iat": FUZZ_NOW.as_secs(),
        "exp": FUZZ_NOW.as_secs() + 120,
        "jti": "bWFkZS1mb3ItZnV6emluZw",
        "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
    });
    if let Some(s) = sub {
        v["sub"] = s.into();
    }
    if let Some(s) = sid {
        v["sid"] = s.into();
    }
    v
}

/// Every seed: its name, its bytes, and whether it verifies.
fn seeds() -> Vec<(&'static str, String, bool)> {
    let issuers = internal::fuzz_issuers();
    let (es, ed) = (&issuers[0], &issuers[1]);
    let good = LogoutClaims::new(
        FUZZ_ISSUER,
        FUZZ_LOGOUT_AUDIENCE,
        "bWFkZS1mb3ItZnV6emluZw",
        Some("judge-0001"),
        Some("c2Vzc2lvbi1zaWQ"),
        FUZZ_NOW,
    );
    let sign = |c: &Value| es.keys().sign(LOGOUT_TOKEN_TYPE, c).unwrap();
    let mut with_nonce = claims(Some("judge-0001"), None);
    with_nonce["nonce"] = "n-0S6".into();
    let mut no_event = claims(Some("judge-0001"), None);
    no_event["events"] = json!({});
    let mut expired = claims(None, Some("c2lk"));
    expired["exp"] = FUZZ_NOW.as_secs().into();
    let mut other_aud = claims(Some("judge-0001"), None);
    other_aud["aud"] = "other-app".into();
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": LOGOUT_TOKEN_TYPE})),
        b64(&claims(Some("judge-0001"), None))
    );
    vec![
        (
            "good-es256.jwt",
            make_logout_token(es.keys(), &good).unwrap(),
            true,
        ),
        (
            "good-eddsa.jwt",
            make_logout_token(ed.keys(), &good).unwrap(),
            true,
        ),
        ("sid-only.jwt", sign(&claims(None, Some("c2lk"))), true),
        (
            "sub-only.jwt",
            sign(&claims(Some("judge-0001"), None)),
            true,
        ),
        ("neither.jwt", sign(&claims(None, None)), false),
        ("nonce.jwt", sign(&with_nonce), false),
        ("no-event.jwt", sign(&no_event), false),
        ("expired.jwt", sign(&expired), false),
        ("other-audience.jwt", sign(&other_aud), false),
        (
            "id-token-type.jwt",
            es.keys()
                .sign("JWT", &claims(Some("judge-0001"), None))
                .unwrap(),
            false,
        ),
        ("alg-none.jwt", none, false),
        ("garbage.jwt", "e30.e30.e30".into(), false),
    ]
}

fn b64(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn verifies(token: &str) -> Result<LogoutClaims, JwtError> {
    let issuers = internal::fuzz_issuers();
    verify_logout_token(
        token,
        &issuers[0].keys().published(FUZZ_NOW),
        FUZZ_ISSUER,
        FUZZ_LOGOUT_AUDIENCE,
        FUZZ_NOW,
    )
}

#[test]
fn idp_logout_token_corpus() {
    // this crate's checkout (a shared target dir may hold a core built in another one)
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(TARGET);
    if std::env::var_os("IDP_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes, _) in seeds() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let names: Vec<&str> = seeds().iter().map(|(n, _, _)| *n).collect();
    let mut seen = 0;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in `{}`", dir.display());
    for path in files {
        let data = std::fs::read(&path).unwrap();
        internal::fuzz_logout_token(&data);
        // seeded mutations: each byte in turn replaced, a prefix, the seed doubled
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut m = data.clone();
            if let Some(b) = usize::try_from(state % 1_000_003)
                .ok()
                .and_then(|i| m.get_mut(i % data.len().max(1)))
            {
                *b = state.to_le_bytes()[1];
            }
            internal::fuzz_logout_token(&m);
        }
        internal::fuzz_logout_token(&data[..data.len() / 2]);
        internal::fuzz_logout_token(&[data.clone(), data.clone()].concat());
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if let Some((_, _, good)) = seeds().into_iter().find(|(n, _, _)| *n == name) {
            seen += 1;
            let token = String::from_utf8(data).unwrap();
            assert_eq!(
                verifies(&token).is_ok(),
                good,
                "{name}: {:?}",
                verifies(&token)
            );
        }
    }
    assert_eq!(seen, names.len(), "every seed is in the corpus");
}
