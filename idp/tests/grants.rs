//! Codes and refresh-token families as state machines over each store (memory, and sled with the
//! `store` feature), with a manual clock: single use, 60-second life, reuse revoking what was issued, rotation, client binding.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use tianping_core::{
    Acr, Algorithm, Amr, Clearance, Clock as _, ManualClock, RingSigner, Role, UnixTime,
};
use tianping_idp::danger::SeededRandom;
use tianping_idp::{
    AuthorizationRequest, Client, ClientAuthMethod, GrantPolicy, GrantType, Grants, Identity,
    IdpError, KeySet, MemoryStore, Store, TokenIssuer, parse_authorization,
};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const ISS: &str = "https://idp.private.example";
const CB: &str = "https://case.example/cb";

fn client(id: &str) -> Client {
    Client {
        id: id.into(),
        secret_sha256: Some(Client::hash_secret("s")),
        auth_method: ClientAuthMethod::ClientSecretBasic,
        redirect_uris: vec![CB.into()],
        post_logout_redirect_uris: vec![],
        grants: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        native_loopback: false,
        extra_scopes: vec![],
    }
}

fn request() -> AuthorizationRequest {
    let q = format!(
        "response_type=code&client_id=case-app&redirect_uri={}&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=S256&nonce=n1",
        tianping_idp::form_encode(CB)
    );
    parse_authorization(q.as_bytes(), ISS, &|id| Some(client(id)))
        .unwrap()
        .0
}

fn judge(now: UnixTime) -> Identity {
    Identity {
        sub: "judge-0001".parse().unwrap(),
        court: Some("bj.01.03".parse().unwrap()),
        roles: vec![Role::Judge],
        clearance: Clearance::Secret,
        acr: Acr::Otp,
        amr: vec![Amr::Pwd, Amr::Otp],
        zone: "private".parse().unwrap(),
        auth_time: now,
        device: None,
    }
}

struct World {
    store: Box<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    clock: ManualClock,
    rng: SeededRandom,
    issuer: TokenIssuer,
}

fn world(store: Box<dyn Store>, dir: Option<tempfile::TempDir>) -> World {
    let signer = Arc::new(RingSigner::generate(Algorithm::Es256).unwrap().0);
    World {
        store,
        _dir: dir,
        clock: ManualClock::new(UnixTime::from_secs(1_800_000_000)),
        rng: SeededRandom::new(11),
        issuer: TokenIssuer::new(ISS, KeySet::new(signer)),
    }
}

fn code_is_single_use_and_reuse_revokes_its_tokens(w: World) {
    let g = Grants::new(&*w.store, GrantPolicy::default());
    let now = w.clock.now();
    let code = g.issue_code(&request(), judge(now), now, &w.rng).unwrap();
    let rec = g
        .redeem_code(&code, "case-app", Some(CB), Some(VERIFIER), now)
        .unwrap();
    assert_eq!(rec.nonce.as_deref(), Some("n1"));
    let at = w
        .issuer
        .access_token(
            Some(&rec.identity),
            "case-app",
            "api",
            "openid",
            now,
            &w.rng,
        )
        .unwrap();
    let (rt, family) = g
        .start_family(
            "case-app",
            rec.identity.clone(),
            rec.scope.clone(),
            now,
            &w.rng,
        )
        .unwrap();
    g.record_code_tokens(&code, &at, Some(family)).unwrap();
    g.record_family_token(&family, &at).unwrap();
    assert!(!w.store.is_token_revoked(&at.jti).unwrap());
    // 30 seconds later the same code: invalid_grant, and what it gave is revoked
    w.clock.advance(Duration::from_secs(30));
    let again = g.redeem_code(&code, "case-app", Some(CB), Some(VERIFIER), w.clock.now());
    assert_eq!(again, Err(IdpError::CodeReused));
    assert_eq!(again.unwrap_err().code().as_str(), "invalid_grant");
    assert!(w.store.is_token_revoked(&at.jti).unwrap());
    assert_eq!(
        g.use_refresh(&rt, "case-app", w.clock.now(), &w.rng)
            .unwrap_err(),
        IdpError::RefreshInvalid
    );
}

fn a_reuse_racing_the_first_redemption_still_revokes(w: World) {
    let g = Grants::new(&*w.store, GrantPolicy::default());
    let now = w.clock.now();
    let code = g.issue_code(&request(), judge(now), now, &w.rng).unwrap();
    g.redeem_code(&code, "case-app", Some(CB), Some(VERIFIER), now)
        .unwrap();
    // the reuse lands before the first redemption recorded its tokens
    assert_eq!(
        g.redeem_code(&code, "case-app", Some(CB), Some(VERIFIER), now),
        Err(IdpError::CodeReused)
    );
    let at = w
        .issuer
        .access_token(None, "case-app", "api", "openid", now, &w.rng)
        .unwrap();
    g.record_code_tokens(&code, &at, None).unwrap();
    assert!(w.store.is_token_revoked(&at.jti).unwrap());
}

fn code_lives_sixty_seconds(w: World) {
    let g = Grants::new(&*w.store, GrantPolicy::default());
    let now = w.clock.now();
    let code = g.issue_code(&request(), judge(now), now, &w.rng).unwrap();
    w.clock.advance(Duration::from_secs(60));
    assert_eq!(
        g.redeem_code(&code, "case-app", Some(CB), Some(VERIFIER), w.clock.now()),
        Err(IdpError::CodeInvalid)
    );
    assert_eq!(
        g.redeem_code("made-up", "case-app", Some(CB), Some(VERIFIER), now),
        Err(IdpError::CodeInvalid)
    );
}

fn wrong_client_redirect_or_pkce_does_not_use_the_code_up(w: World) {
    let g = Grants::new(&*w.store, GrantPolicy::default());
    let now = w.clock.now();
    let code = g.issue_code(&request(), judge(now), now, &w.rng).unwrap();
    let wrong = "a".repeat(43);
    for (client, uri, verifier, want) in [
        ("other", Some(CB), Some(VERIFIER), IdpError::CodeMismatch),
        (
            "case-app",
            Some("https://case.example/cb2"),
            Some(VERIFIER),
            IdpError::CodeMismatch,
        ),
        (
            "case-app",
            None,
            Some(VERIFIER),
            IdpError::MissingParameter("redirect_uri"),
        ),
        ("case-app", Some(CB), None, IdpError::PkceVerifierMissing),
        (
            "case-app",
            Some(CB),
            Some(wrong.as_str()),
            IdpError::PkceMismatch,
        ),
        (
            "case-app",
            Some(CB),
            Some("short"),
            IdpError::PkceVerifierMalformed,
        ),
    ] {
        assert_eq!(
            g.redeem_code(&code, client, uri, verifier, now),
            Err(want.clone()),
            "{want}"
        );
    }
    g.redeem_code(&code, "case-app", Some(CB), Some(VERIFIER), now)
        .unwrap();
}

fn refresh_tokens_rotate_and_reuse_revokes_the_family(w: World) {
    let g = Grants::new(&*w.store, GrantPolicy::default());
    let now = w.clock.now();
    let (rt0, family) = g
        .start_family("case-app", judge(now), vec!["openid".into()], now, &w.rng)
        .unwrap();
    let (f, rt1) = g.use_refresh(&rt0, "case-app", now, &w.rng).unwrap();
    assert_eq!(f.id, family);
    assert_ne!(rt0, rt1);
    let at = w
        .issuer
        .access_token(Some(&f.identity), "case-app", "api", "openid", now, &w.rng)
        .unwrap();
    g.record_family_token(&family, &at).unwrap();
    let (_, rt2) = g.use_refresh(&rt1, "case-app", now, &w.rng).unwrap();
    // rt1 again: the whole family goes, the newest token and its access tokens included
    assert_eq!(
        g.use_refresh(&rt1, "case-app", now, &w.rng).unwrap_err(),
        IdpError::RefreshReused
    );
    assert_eq!(
        g.use_refresh(&rt2, "case-app", now, &w.rng).unwrap_err(),
        IdpError::RefreshInvalid
    );
    assert!(w.store.is_token_revoked(&at.jti).unwrap());
}

fn refresh_tokens_are_bound_to_their_client_and_expire(w: World) {
    let g = Grants::new(
        &*w.store,
        GrantPolicy {
            refresh_life: Duration::from_secs(3600),
            ..GrantPolicy::default()
        },
    );
    let now = w.clock.now();
    let (rt, _) = g
        .start_family("case-app", judge(now), vec![], now, &w.rng)
        .unwrap();
    let e = g.use_refresh(&rt, "other-app", now, &w.rng).unwrap_err();
    assert_eq!(e, IdpError::RefreshWrongClient);
    assert_eq!(e.code().as_str(), "invalid_grant");
    // the owner can still use it
    let (_, rt) = g.use_refresh(&rt, "case-app", now, &w.rng).unwrap();
    w.clock.advance(Duration::from_secs(3600));
    assert_eq!(
        g.use_refresh(&rt, "case-app", w.clock.now(), &w.rng)
            .unwrap_err(),
        IdpError::RefreshInvalid
    );
    for junk in ["", "abc", &"A".repeat(64)] {
        assert_eq!(
            g.use_refresh(junk, "case-app", now, &w.rng).unwrap_err(),
            IdpError::RefreshInvalid
        );
    }
}

fn a_guessed_token_of_a_known_family_does_not_revoke_it(w: World) {
    let g = Grants::new(&*w.store, GrantPolicy::default());
    let now = w.clock.now();
    let (rt, _) = g
        .start_family("case-app", judge(now), vec![], now, &w.rng)
        .unwrap();
    let mut forged = rt.clone();
    forged.replace_range(30.., &"A".repeat(rt.len() - 30));
    assert_eq!(
        g.use_refresh(&forged, "case-app", now, &w.rng).unwrap_err(),
        IdpError::RefreshInvalid
    );
    g.use_refresh(&rt, "case-app", now, &w.rng).unwrap();
}

fn revoking_a_family_revokes_its_access_tokens(w: World) {
    let g = Grants::new(&*w.store, GrantPolicy::default());
    let now = w.clock.now();
    let (rt, family) = g
        .start_family("case-app", judge(now), vec![], now, &w.rng)
        .unwrap();
    let at = w
        .issuer
        .access_token(None, "case-app", "api", "", now, &w.rng)
        .unwrap();
    g.record_family_token(&family, &at).unwrap();
    g.revoke_family(&family).unwrap();
    assert!(w.store.is_token_revoked(&at.jti).unwrap());
    assert_eq!(
        g.use_refresh(&rt, "case-app", now, &w.rng).unwrap_err(),
        IdpError::RefreshInvalid
    );
}

/// Runs each behaviour test against every backend.
macro_rules! on_every_store {
    ($($name:ident),+ $(,)?) => {
        mod memory {
            $(#[test]
            fn $name() {
                super::$name(super::world(Box::new(super::MemoryStore::new()), None));
            })+
        }
        #[cfg(feature = "store")]
        mod sled {
            $(#[test]
            fn $name() {
                let dir = tempfile::tempdir().unwrap();
                let store = tianping_idp::SledStore::open(dir.path()).unwrap();
                super::$name(super::world(Box::new(store), Some(dir)));
            })+
        }
    };
}

on_every_store!(
    code_is_single_use_and_reuse_revokes_its_tokens,
    a_reuse_racing_the_first_redemption_still_revokes,
    code_lives_sixty_seconds,
    wrong_client_redirect_or_pkce_does_not_use_the_code_up,
    refresh_tokens_rotate_and_reuse_revokes_the_family,
    refresh_tokens_are_bound_to_their_client_and_expire,
    a_guessed_token_of_a_known_family_does_not_revoke_it,
    revoking_a_family_revokes_its_access_tokens,
);
