//! The exact refusal for each way a token request or an incoming JWT goes wrong, over real TLS:
//! a reused code (`invalid_grant`, its tokens revoked), PKCE missing, wrong or downgraded, a
//! reused refresh token (its family revoked), a refresh token of another client, `alg: none` and
//! HS256-keyed-with-the-public-key `id_token_hint`s, and a locked account trying every grant.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]
#![expect(clippy::indexing_slicing, reason = "tests index JSON")]

mod oidc_world;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oidc_world::{OTHER_VERIFIER, REDIRECT, VERIFIER, World, challenge, judge, world};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tianping_core::Clock as _;
use tianping_idp::{CodeRecord, Store, form_encode_pairs};

fn assert_error(status: StatusCode, body: &Value, code: &str, description: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert_eq!(body["error_description"], description, "{body}");
}

async fn signed_in(w: &World, client: &str) -> (String, String, String) {
    let code = w.code(client, "openid profile");
    let (status, body) = w.redeem(client, &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (
        code,
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn code_reused_is_invalid_grant_and_revokes_every_token_issued_from_it() {
    let w = world().await;
    let (code, at, rt) = signed_in(&w, "case-app").await;
    assert!(w.active(&at).await && w.active(&rt).await);
    let before = w.audit.size();
    let (status, body) = w.redeem("case-app", &code).await;
    assert_error(
        status,
        &body,
        "invalid_grant",
        "the authorization code was already used",
    );
    // the access token and the refresh family from the first redemption are dead
    assert!(!w.active(&at).await);
    assert!(!w.active(&rt).await);
    let (status, challenge, _) = w.userinfo(&at).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.unwrap().contains("error=\"invalid_token\""));
    let (status, body) = w.refresh("case-app", &rt).await;
    assert_error(
        status,
        &body,
        "invalid_grant",
        "the refresh token is invalid, expired or revoked",
    );
    // each revocation is in the audit log, written before the answer
    let events = w.events_since(before);
    assert!(
        events.iter().filter(|(a, _)| a == "token.revoke").count() >= 2,
        "{events:?}"
    );
    assert!(
        events.iter().any(|(_, o)| o.starts_with("family:")),
        "{events:?}"
    );
    w.server.shutdown().await;
}

#[tokio::test]
async fn pkce_missing_wrong_and_downgraded_are_refused() {
    let w = world().await;
    let code = w.code("case-app", "openid");
    let redeem = |verifier: Option<&'static str>| {
        let mut pairs = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
        ];
        if let Some(v) = verifier {
            pairs.push(("code_verifier", v));
        }
        form_encode_pairs(pairs)
    };
    let (status, body) = w.token("case-app", &redeem(None)).await;
    assert_error(status, &body, "invalid_grant", "`code_verifier` is missing");
    let (status, body) = w.token("case-app", &redeem(Some(OTHER_VERIFIER))).await;
    assert_error(
        status,
        &body,
        "invalid_grant",
        "`code_verifier` does not match the challenge",
    );
    let (status, body) = w.token("case-app", &redeem(Some("short"))).await;
    assert_error(
        status,
        &body,
        "invalid_request",
        "`code_verifier` must be 43 to 128 unreserved characters",
    );
    // a wrong verifier does not use the code up: the right one still redeems it
    let (status, body) = w.token("case-app", &redeem(Some(VERIFIER))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // a code issued without a challenge (none is issued here: it is planted) is never redeemed
    let planted = "planted-code-without-a-challenge";
    let key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, planted.as_bytes())
        .as_ref()
        .try_into()
        .unwrap();
    let record = CodeRecord {
        client_id: "case-app".into(),
        redirect_uri: REDIRECT.into(),
        redirect_uri_sent: true,
        challenge: None,
        identity: judge(w.clock.now()),
        scope: vec!["openid".into()],
        nonce: None,
        expires_at: w
            .clock
            .now()
            .saturating_add(std::time::Duration::from_secs(60)),
        used: false,
        reused: false,
        access_tokens: vec![],
        family: None,
        claims: Default::default(),
        session: None,
    };
    w.store.put_code(key, record).unwrap();
    let downgrade = form_encode_pairs([
        ("grant_type", "authorization_code"),
        ("code", planted),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ]);
    let (status, body) = w.token("case-app", &downgrade).await;
    assert_error(
        status,
        &body,
        "invalid_grant",
        "`code_verifier` sent for a code issued without a challenge",
    );
    let bare = form_encode_pairs([
        ("grant_type", "authorization_code"),
        ("code", planted),
        ("redirect_uri", REDIRECT),
    ]);
    let (status, body) = w.token("case-app", &bare).await;
    assert_error(
        status,
        &body,
        "invalid_request",
        "`code_challenge` is required (PKCE with `S256`)",
    );

    // at the authorization endpoint: no challenge, or `plain`, is an error sent back with `iss`
    for (extra, error) in [
        (vec![], "invalid_request"),
        (
            vec![
                ("code_challenge", challenge()),
                ("code_challenge_method", "plain".to_owned()),
            ],
            "invalid_request",
        ),
    ] {
        let mut pairs = vec![
            ("response_type", "code".to_owned()),
            ("client_id", "case-app".to_owned()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("scope", "openid".to_owned()),
            ("state", "xyz".to_owned()),
        ];
        pairs.extend(extra);
        let q = form_encode_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
        let resp = w
            .http
            .get(w.url(&format!("/authorize?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let loc = resp.headers()["location"].to_str().unwrap().to_owned();
        assert!(loc.starts_with(REDIRECT), "{loc}");
        assert_eq!(
            oidc_world::query_param(&loc, "error").as_deref(),
            Some(error)
        );
        assert_eq!(
            oidc_world::query_param(&loc, "state").as_deref(),
            Some("xyz")
        );
        assert_eq!(oidc_world::query_param(&loc, "iss"), Some(w.iss.clone()));
    }
    w.server.shutdown().await;
}

#[tokio::test]
async fn refresh_reuse_is_invalid_grant_and_revokes_the_family() {
    let w = world().await;
    let (_, _, rt1) = signed_in(&w, "case-app").await;
    let (status, body) = w.refresh("case-app", &rt1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rt2 = body["refresh_token"].as_str().unwrap().to_owned();
    let at2 = body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    assert!(w.active(&at2).await);
    let before = w.audit.size();
    let (status, body) = w.refresh("case-app", &rt1).await;
    assert_error(
        status,
        &body,
        "invalid_grant",
        "the refresh token was already used; its family is revoked",
    );
    // the newest token of the family and what it gave are revoked too
    let (status, body) = w.refresh("case-app", &rt2).await;
    assert_error(
        status,
        &body,
        "invalid_grant",
        "the refresh token is invalid, expired or revoked",
    );
    assert!(!w.active(&at2).await);
    let events = w.events_since(before);
    assert!(
        events
            .iter()
            .any(|(a, o)| a == "token.revoke" && o.starts_with("family:")),
        "{events:?}"
    );
    w.server.shutdown().await;
}

#[tokio::test]
async fn a_refresh_token_used_by_another_client_is_refused() {
    let w = world().await;
    let (_, _, rt) = signed_in(&w, "case-app").await;
    let (status, body) = w.refresh("other-app", &rt).await;
    assert_error(
        status,
        &body,
        "invalid_grant",
        "the refresh token was issued to another client",
    );
    // the theft attempt used nothing up: its own client still refreshes
    let (status, body) = w.refresh("case-app", &rt).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // and a code issued to one client is not redeemed by another
    let code = w.code("case-app", "openid");
    let (status, body) = w.redeem("other-app", &code).await;
    assert_error(
        status,
        &body,
        "invalid_grant",
        "the authorization code was issued to another client or redirect URI",
    );
    w.server.shutdown().await;
}

/// Re-signs the claims of a real ID token with a forged header.
fn forged(id_token: &str, alg: &str, key: Option<&[u8]>) -> String {
    let claims = id_token.split('.').nth(1).unwrap();
    let kid: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(id_token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let header = json!({ "alg": alg, "typ": "JWT", "kid": kid["kid"] });
    let input = format!("{}.{claims}", URL_SAFE_NO_PAD.encode(header.to_string()));
    let sig = match key {
        None => String::new(),
        Some(k) => {
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k);
            URL_SAFE_NO_PAD.encode(ring::hmac::sign(&k, input.as_bytes()).as_ref())
        }
    };
    format!("{input}.{sig}")
}

#[tokio::test]
async fn alg_none_and_hs256_keyed_with_the_public_key_id_token_hints_are_refused() {
    let w = world().await;
    let code = w.code("case-app", "openid");
    let (_, body) = w.redeem("case-app", &code).await;
    let id_token = body["id_token"].as_str().unwrap().to_owned();
    let jwks: Value = w
        .http
        .get(w.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = &jwks["keys"][0];
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
    let mut point = vec![4u8];
    point.extend(&x);
    point.extend(&y);
    let jwk_text = jwk.to_string();
    let mut forgeries = vec![
        ("none", forged(&id_token, "none", None)),
        ("none", forged(&id_token, "None", None)),
    ];
    for key in [point.as_slice(), jwk_text.as_bytes()] {
        forgeries.push(("HS256", forged(&id_token, "HS256", Some(key))));
    }
    for (alg, hint) in forgeries {
        let q = form_encode_pairs([
            ("id_token_hint", hint.as_str()),
            ("post_logout_redirect_uri", oidc_world::BYE),
            ("state", "s1"),
        ]);
        let resp = w
            .http
            .get(w.url(&format!("/logout?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{alg}");
        assert!(resp.headers().get("location").is_none(), "{alg}");
        let page = resp.text().await.unwrap();
        assert!(page.contains("invalid_request"), "{page}");
        assert!(
            page.to_lowercase().contains("is not accepted"),
            "{alg}: {page}"
        );
    }
    // the genuine hint is accepted and the browser goes to the registered URI with its state
    let q = form_encode_pairs([
        ("id_token_hint", id_token.as_str()),
        ("post_logout_redirect_uri", oidc_world::BYE),
        ("state", "s1"),
    ]);
    let resp = w
        .http
        .get(w.url(&format!("/logout?{q}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        resp.headers()["location"],
        format!("{}?state=s1", oidc_world::BYE).as_str()
    );
    w.server.shutdown().await;
}

/// Every grant for a person, tried after `shut` closed the account: none gives a token.
async fn no_grant_for(w: &World, shut: impl FnOnce(&World)) {
    let (_, at, rt) = signed_in(w, "case-app").await;
    let code = w.code("case-app", "openid");
    shut(w);
    let inactive = "the account may not be issued tokens";
    let (status, body) = w.redeem("case-app", &code).await;
    assert_error(status, &body, "invalid_grant", inactive);
    let (status, body) = w.refresh("case-app", &rt).await;
    assert_error(status, &body, "invalid_grant", inactive);
    let (status, challenge, _) = w.userinfo(&at).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.unwrap().contains("invalid_token"));
    assert!(!w.active(&at).await);
    assert!(!w.active(&rt).await);
    // client_credentials is the client acting for itself, not for the account: unaffected
    let (status, body) = w
        .token("case-app", "grant_type=client_credentials&scope=cases.read")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_locked_account_gets_no_token_by_any_grant() {
    let w = world().await;
    no_grant_for(&w, World::lock_judge).await;
    w.server.shutdown().await;
}

#[tokio::test]
async fn a_disabled_account_gets_no_token_by_any_grant() {
    let w = world().await;
    no_grant_for(&w, World::disable_judge).await;
    w.server.shutdown().await;
}

#[tokio::test]
async fn introspection_and_revocation_need_the_client_and_touch_only_its_tokens() {
    let w = world().await;
    let (_, at, rt) = signed_in(&w, "case-app").await;
    let form = form_encode_pairs([("token", at.as_str())]);
    // no credentials, or a wrong secret: invalid_client with a Basic challenge
    for basic in [None, Some(("case-app", "wrong"))] {
        for path in ["/introspect", "/revoke"] {
            let resp = w
                .http
                .post(w.url(path))
                .header("content-type", "application/x-www-form-urlencoded");
            let resp = match basic {
                Some((id, s)) => resp.basic_auth(id, Some(s)),
                None => resp,
            };
            let resp = resp.body(form.clone()).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
            assert!(
                resp.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Basic")
            );
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "invalid_client", "{path}");
        }
    }
    // another client's revocation answers 200 and changes nothing
    for token in [&at, &rt] {
        let form = form_encode_pairs([("token", token.as_str())]);
        let (status, _) = w
            .post("/revoke", &form, Some(("other-app", oidc_world::SECRET)))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(w.active(token).await);
    }
    // another client may introspect an access token, not a refresh token it does not hold
    let form = form_encode_pairs([("token", rt.as_str())]);
    let (_, v) = w
        .post(
            "/introspect",
            &form,
            Some(("other-app", oidc_world::SECRET)),
        )
        .await;
    assert_eq!(v, json!({ "active": false }));
    // the owner revokes the access token: its introspection and UserInfo end at once
    let before = w.audit.size();
    let form = form_encode_pairs([("token", at.as_str()), ("token_type_hint", "access_token")]);
    let (status, _) = w
        .post("/revoke", &form, Some(("case-app", oidc_world::SECRET)))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!w.active(&at).await);
    assert_eq!(w.events_since(before).first().unwrap().0, "token.revoke");
    w.server.shutdown().await;
}

#[tokio::test]
async fn an_expired_access_token_gets_401_with_a_bearer_challenge() {
    let w = world().await;
    let (_, at, _) = signed_in(&w, "case-app").await;
    assert_eq!(w.userinfo(&at).await.0, StatusCode::OK);
    w.clock.advance(std::time::Duration::from_secs(300));
    let (status, challenge, body) = w.userinfo(&at).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer realm=\"tianping\", error=\"invalid_token\"")
    );
    assert_eq!(
        body["error_description"],
        "invalid access token: the token has expired"
    );
    assert!(!w.active(&at).await);
    w.server.shutdown().await;
}

#[tokio::test]
async fn a_client_registered_in_the_directory_redeems_its_code() {
    let w = world().await;
    let mut client = oidc_world::clients().remove(0);
    client.id = "dir-app".into();
    tianping_idp::Directory::new(&*w.store)
        .add_client(client)
        .unwrap();
    let c = challenge();
    let q = form_encode_pairs([
        ("response_type", "code"),
        ("client_id", "dir-app"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("code_challenge", c.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    let mut cookie = None;
    let loc = w.sign_in_through_forms(&q, &mut cookie).await;
    let code = oidc_world::query_param(&loc, "code").unwrap();
    let (status, body) = w.redeem("dir-app", &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rt = body["refresh_token"].as_str().unwrap();
    let form = form_encode_pairs([("token", rt)]);
    let (status, _) = w
        .post("/revoke", &form, Some(("dir-app", oidc_world::SECRET)))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = w.refresh("dir-app", rt).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    w.server.shutdown().await;
}
