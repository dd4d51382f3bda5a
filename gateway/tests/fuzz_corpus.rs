//! Replays the checked-in corpora of the gateway's fuzz targets on stable, and checks that the
//! valid seeds still open or verify (so the fuzzer starts from real inputs) and the refused ones
//! are refused for their reason.
//!
//! `GATEWAY_WRITE_SEEDS=1 cargo test -p tianping-gateway --test fuzz_corpus` rewrites the seeds.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use tianping_gateway::internal::{
    FUZZ_CERT, FUZZ_NOW, fuzz_access_token, fuzz_claims, fuzz_cookie, fuzz_form, fuzz_sealer,
    fuzz_session, fuzz_token, fuzz_verifier,
};
use tianping_gateway::{BearerError, CookieError};

fn corpus(target: &str) -> std::path::PathBuf {
    tianping_core::internal::corpus_dir(target)
}

fn seed(target: &str, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(corpus(target)).unwrap();
    std::fs::write(corpus(target).join(name), bytes).unwrap();
}

fn read(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(corpus(target).join(name)).unwrap()
}

fn with(key: &str, v: serde_json::Value) -> serde_json::Value {
    let mut c = fuzz_claims();
    c.as_object_mut().unwrap().insert(key.into(), v);
    c
}

fn write_token_seeds() {
    let t = "gateway_token";
    let none = json!({});
    seed(
        t,
        "valid-es256.jwt",
        fuzz_access_token(&none, &fuzz_claims(), false)
            .unwrap()
            .as_bytes(),
    );
    seed(
        t,
        "valid-eddsa.jwt",
        fuzz_access_token(&none, &fuzz_claims(), true)
            .unwrap()
            .as_bytes(),
    );
    let bound = with(
        "cnf",
        json!({"x5t#S256": URL_SAFE_NO_PAD.encode(FUZZ_CERT)}),
    );
    seed(
        t,
        "valid-bound.jwt",
        fuzz_access_token(&none, &bound, false).unwrap().as_bytes(),
    );
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt","kid":"fuzz-es"}"#);
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&fuzz_claims()).unwrap());
    seed(t, "alg-none.jwt", format!("{h}.{p}.").as_bytes());
    let exp = with("exp", json!(FUZZ_NOW.as_secs() - 3600));
    seed(
        t,
        "expired.jwt",
        fuzz_access_token(&none, &exp, false).unwrap().as_bytes(),
    );
    let aud = with("aud", json!("https://gw.other.example"));
    seed(
        t,
        "wrong-aud.jwt",
        fuzz_access_token(&none, &aud, true).unwrap().as_bytes(),
    );
    let kid = json!({"kid": "nobody"});
    seed(
        t,
        "unknown-kid.jwt",
        fuzz_access_token(&kid, &fuzz_claims(), false)
            .unwrap()
            .as_bytes(),
    );
    seed(t, "garbage.jwt", b"not.a.token");
}

fn write_cookie_seeds() {
    let t = "gateway_cookie";
    let s = fuzz_sealer().unwrap();
    let value = s.seal(&fuzz_session().unwrap()).unwrap();
    seed(t, "valid-value", value.as_bytes());
    seed(
        t,
        "valid-header",
        format!(
            "a=1; {}; b=2",
            s.set_cookie(&value).split(';').next().unwrap()
        )
        .as_bytes(),
    );
    let mut raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
    *raw.last_mut().unwrap() ^= 1;
    seed(t, "tampered", URL_SAFE_NO_PAD.encode(&raw).as_bytes());
    raw.get_mut(1..5)
        .unwrap()
        .copy_from_slice(&9u32.to_be_bytes());
    seed(t, "unknown-key", URL_SAFE_NO_PAD.encode(&raw).as_bytes());
    seed(t, "garbage", b"AQ");
}

#[test]
fn token_corpus_replays_and_its_seeds_decide_as_named() {
    if std::env::var_os("GATEWAY_WRITE_SEEDS").is_some() {
        write_token_seeds();
    }
    for (_, data) in tianping_core::internal::corpus("gateway_token").unwrap() {
        fuzz_token(&data);
    }
    let v = fuzz_verifier().unwrap();
    let t = "gateway_token";
    for name in ["valid-es256.jwt", "valid-eddsa.jwt"] {
        assert!(v.verify(&read(t, name), None, FUZZ_NOW).is_ok(), "{name}");
    }
    assert_eq!(
        v.verify(&read(t, "valid-bound.jwt"), None, FUZZ_NOW),
        Err(BearerError::CertificateBinding)
    );
    assert!(
        v.verify(&read(t, "valid-bound.jwt"), Some(&FUZZ_CERT), FUZZ_NOW)
            .is_ok()
    );
    assert_eq!(
        v.verify(&read(t, "alg-none.jwt"), None, FUZZ_NOW),
        Err(BearerError::Algorithm("none".into()))
    );
    assert!(matches!(
        v.verify(&read(t, "expired.jwt"), None, FUZZ_NOW),
        Err(BearerError::Expired { .. })
    ));
    assert_eq!(
        v.verify(&read(t, "wrong-aud.jwt"), None, FUZZ_NOW),
        Err(BearerError::WrongAudience)
    );
    assert_eq!(
        v.verify(&read(t, "unknown-kid.jwt"), None, FUZZ_NOW),
        Err(BearerError::UnknownKid("nobody".into()))
    );
}

#[test]
fn cookie_corpus_replays_and_its_seeds_open_as_named() {
    if std::env::var_os("GATEWAY_WRITE_SEEDS").is_some() {
        write_cookie_seeds();
    }
    for (_, data) in tianping_core::internal::corpus("gateway_cookie").unwrap() {
        fuzz_cookie(&data);
    }
    let s = fuzz_sealer().unwrap();
    let t = "gateway_cookie";
    assert_eq!(
        s.open(&read(t, "valid-value"), FUZZ_NOW).ok(),
        fuzz_session()
    );
    let header = read(t, "valid-header");
    let value = tianping_gateway::session_cookie(&header, 8192).unwrap();
    assert_eq!(s.open(value, FUZZ_NOW).ok(), fuzz_session());
    assert_eq!(
        s.open(&read(t, "tampered"), FUZZ_NOW),
        Err(CookieError::Tampered)
    );
    assert_eq!(
        s.open(&read(t, "unknown-key"), FUZZ_NOW),
        Err(CookieError::UnknownKey(9))
    );
}

fn write_form_seeds() {
    let t = "gateway_form";
    seed(
        t,
        "callback",
        b"code=c0de&state=St4te-1&iss=https%3A%2F%2Fidp.private.tianping.localhost%3A7431",
    );
    seed(t, "logout", b"logout_token=eyJhbGciOiJFUzI1NiJ9.e30.c2ln");
    seed(
        t,
        "approve",
        b"csrf=abc&transfer=internet%3A7&note=%E5%90%8C%E6%84%8F+%E5%8F%91%E5%B8%83",
    );
    seed(t, "broken", b"x=1+2&bad=%G1&cut=%4&latin=%E9&y");
    seed(
        t,
        "repeated",
        b"label=minor&label=sealed-record&&=&kind=pdf",
    );
}

#[test]
fn form_corpus_replays_and_its_seeds_decode_as_named() {
    if std::env::var_os("GATEWAY_WRITE_SEEDS").is_some() {
        write_form_seeds();
    }
    for (_, data) in tianping_core::internal::corpus("gateway_form").unwrap() {
        let _ = fuzz_form(&data);
    }
    let pairs = |name: &str| fuzz_form(&read("gateway_form", name));
    assert_eq!(
        pairs("callback"),
        vec![
            ("code".into(), "c0de".into()),
            ("state".into(), "St4te-1".into()),
            (
                "iss".into(),
                "https://idp.private.tianping.localhost:7431".into()
            ),
        ]
    );
    assert_eq!(pairs("approve")[2], ("note".into(), "同意 发布".into()));
    // a broken escape, a cut one and bytes that are not UTF-8 drop their pair
    assert_eq!(
        pairs("broken"),
        vec![("x".into(), "1 2".into()), ("y".into(), String::new())]
    );
    // repeated names kept in order; an empty segment skipped; an empty name kept
    let r = pairs("repeated");
    assert_eq!(r.len(), 4, "{r:?}");
    assert_eq!(r[1], ("label".into(), "sealed-record".into()));
}
