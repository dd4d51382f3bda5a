//! Replays the checked-in fuzz corpora of this crate's targets on stable, and checks that the
//! valid seeds still parse or verify (so the fuzzer starts from real inputs).
//!
//! `IDP_WRITE_SEEDS=1 cargo test -p tianping-idp --test fuzz_corpus -- --test-threads 1`
//! rewrites the seeds.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use tianping_core::{Acr, Amr, Clearance, Role};
use tianping_idp::danger::SeededRandom;
use tianping_idp::internal::{self, FUZZ_ISSUER, FUZZ_NOW};
use tianping_idp::{Identity, parse_authorization, parse_token_request};

fn corpus(target: &str) -> PathBuf {
    tianping_core::internal::corpus_dir(target)
}

fn replay(target: &str, f: fn(&[u8])) {
    for (_, data) in tianping_core::internal::corpus(target).unwrap() {
        f(&data);
    }
}

fn read(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(corpus(target).join(name)).unwrap()
}

const Q: &str = "response_type=code&client_id=case-app&redirect_uri=https%3A%2F%2Fcase.example%2Fcb&scope=openid+profile&state=af0ifjsldkj&nonce=n-0S6&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256";

fn write_seeds() {
    let w = |target: &str, name: &str, bytes: &[u8]| {
        std::fs::create_dir_all(corpus(target)).unwrap();
        std::fs::write(corpus(target).join(name), bytes).unwrap();
    };
    let a = "idp_authorize";
    w(a, "happy.query", Q.as_bytes());
    let mut rev: Vec<&str> = Q.split('&').collect();
    rev.reverse();
    w(a, "reversed.query", rev.join("&").as_bytes());
    w(a, "all-params.query", format!("{Q}&prompt=login&max_age=1&login_hint=judge-0001&ui_locales=en&acr_values=otp&display=page&claims=%7B%22id_token%22%3A%7B%22acr%22%3A%7B%22essential%22%3Atrue%7D%7D%7D&id_token_hint=e30.e30.e30").as_bytes());
    w(
        a,
        "duplicate-state.query",
        format!("{Q}&state=2").as_bytes(),
    );
    w(
        a,
        "bad-redirect.query",
        Q.replace("case.example%2Fcb", "evil.example%2Fcb")
            .as_bytes(),
    );
    w(
        a,
        "request-object.query",
        format!("{Q}&request=e30.e30.").as_bytes(),
    );
    w(
        a,
        "native-loopback.query",
        Q.replace("client_id=case-app", "client_id=desk-app")
            .replace(
                "https%3A%2F%2Fcase.example%2Fcb",
                "http%3A%2F%2F127.0.0.1%3A51004%2Fcb",
            )
            .as_bytes(),
    );
    w(a, "malformed.query", b"client_id=case-app&scope=%zz");

    let t = "idp_token_request";
    let basic = format!("Basic {}", STANDARD.encode("case-app:s3cret"));
    w(t, "basic-code.req", format!("{basic}\ngrant_type=authorization_code&code=abc&redirect_uri=https%3A%2F%2Fcase.example%2Fcb&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").as_bytes());
    w(
        t,
        "post-refresh.req",
        b"\ngrant_type=refresh_token&refresh_token=rt&client_id=case-app&client_secret=s3cret",
    );
    w(
        t,
        "client-credentials.req",
        format!("{basic}\ngrant_type=client_credentials&scope=case.read").as_bytes(),
    );
    w(
        t,
        "conflict.req",
        format!("{basic}\ngrant_type=client_credentials&client_secret=s3cret").as_bytes(),
    );
    w(
        t,
        "duplicate.req",
        b"\ngrant_type=authorization_code&code=a&code=b&client_id=case-app",
    );

    let j = "idp_jwt";
    let judge = Identity {
        sub: "judge-0001".parse().unwrap(),
        court: Some("bj.01.03".parse().unwrap()),
        roles: vec![Role::Judge],
        clearance: Clearance::Secret,
        acr: Acr::Otp,
        amr: vec![Amr::Pwd, Amr::Otp],
        zone: "private".parse().unwrap(),
        auth_time: FUZZ_NOW,
        device: None,
    };
    let issuers = internal::fuzz_issuers();
    let es = &issuers[0];
    let ed = &issuers[1];
    w(
        j,
        "es256-id-token.jwt",
        es.id_token(&judge, "case-app", Some("n"), Some("at"), FUZZ_NOW)
            .unwrap()
            .as_bytes(),
    );
    w(
        j,
        "eddsa-id-token.jwt",
        ed.id_token(&judge, "case-app", None, None, FUZZ_NOW)
            .unwrap()
            .as_bytes(),
    );
    let at = es
        .access_token(
            Some(&judge),
            "case-app",
            "api",
            "openid",
            FUZZ_NOW,
            &SeededRandom::new(1),
        )
        .unwrap();
    w(j, "es256-access.jwt", at.token.as_bytes());
    let claims = URL_SAFE_NO_PAD.encode(r#"{"iss":"https://idp.fuzz.example","sub":"judge-0001","aud":"case-app","exp":1900000000}"#);
    let kid = es.keys().kid();
    let none = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{kid}"}}"#));
    w(j, "alg-none.jwt", format!("{none}.{claims}.").as_bytes());
    let hs = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#));
    w(
        j,
        "hs256.jwt",
        format!("{hs}.{claims}.{}", URL_SAFE_NO_PAD.encode([7u8; 32])).as_bytes(),
    );
    w(j, "garbage.jwt", b"a.b.c");
}

#[test]
fn idp_authorize_corpus() {
    if std::env::var_os("IDP_WRITE_SEEDS").is_some() {
        write_seeds();
    }
    replay("idp_authorize", internal::fuzz_authorize);
    let clients = internal::fuzz_clients();
    let find = |id: &str| clients.iter().find(|c| c.id == id).cloned();
    for name in [
        "happy.query",
        "reversed.query",
        "all-params.query",
        "native-loopback.query",
    ] {
        let q = read("idp_authorize", name);
        assert!(
            parse_authorization(&q, FUZZ_ISSUER, &find).is_ok(),
            "{name} is stale"
        );
    }
}

#[test]
fn idp_token_request_corpus() {
    replay("idp_token_request", internal::fuzz_token_request);
    let seed = read("idp_token_request", "basic-code.req");
    let s = String::from_utf8(seed).unwrap();
    let (h, body) = s.split_once('\n').unwrap();
    assert!(
        parse_token_request(body.as_bytes(), Some(h)).is_ok(),
        "the token seed is stale"
    );
}

#[test]
fn idp_jwt_corpus() {
    replay("idp_jwt", internal::fuzz_jwt);
    let issuers = internal::fuzz_issuers();
    for name in ["es256-id-token.jwt", "eddsa-id-token.jwt"] {
        let t = String::from_utf8(read("idp_jwt", name)).unwrap();
        for i in issuers {
            let hint = i.verify_id_token_hint(&t, FUZZ_NOW).unwrap();
            assert_eq!(hint.sub.as_str(), "judge-0001", "{name}");
        }
    }
    for name in ["alg-none.jwt", "hs256.jwt"] {
        let t = String::from_utf8(read("idp_jwt", name)).unwrap();
        assert!(
            issuers
                .iter()
                .all(|i| i.keys().verify(&t, FUZZ_NOW).is_err()),
            "{name}"
        );
    }
}
