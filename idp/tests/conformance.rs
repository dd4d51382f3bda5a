//! The checks of the OpenID Foundation's Basic OP plan (`../shared/reference/oidc-provider-checks.md`)
//! that apply to the code flow, one test each, named after the check, over real TLS. Where a
//! check needs a signed-in user, the code is issued to a signed-in identity through the store.
//!
//! One departure from the plan, on purpose: PKCE `S256` is required of every client, so every
//! authorization request here carries a challenge (see `tianping_idp`'s endpoint docs).
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]
#![expect(clippy::indexing_slicing, reason = "tests index JSON")]

mod oidc_world;

use std::time::Duration;

use oidc_world::{
    BYE, EMAIL, LOGIN, PHONE, REDIRECT, SECRET, SUB, VERIFIER, World, challenge, query_param, world,
};
use reqwest::StatusCode;
use serde_json::Value;
use tianping_core::Clock as _;
use tianping_idp::{at_hash, form_encode_pairs, keys_from_jwks, verify_with};

/// An authorization query for `case-app` with PKCE and `extra` pairs.
fn query(scope: &str, extra: &[(&str, &str)]) -> String {
    let c = challenge();
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", "case-app"),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("code_challenge", c.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "st-1"),
    ];
    pairs.extend_from_slice(extra);
    form_encode_pairs(pairs)
}

async fn jwks(w: &World) -> Vec<tianping_idp::PublishedKey> {
    let v: Value = w
        .http
        .get(w.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    keys_from_jwks(&v).unwrap()
}

/// Redeems a code for `query`; the token response.
async fn tokens_for(w: &World, query: &str) -> Value {
    let code = w.code_at(query, w.clock.now());
    let (status, body) = w.redeem("case-app", &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn authorize_get(w: &World, query: &str) -> reqwest::Response {
    w.http
        .get(w.url(&format!("/authorize?{query}")))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn oidcc_server_happy_path() {
    let w = world().await;
    let body = tokens_for(&w, &query("openid", &[("nonce", "n-1")])).await;
    assert_eq!(body["token_type"], "Bearer");
    let keys = jwks(&w).await;
    let id = verify_with(body["id_token"].as_str().unwrap(), &keys).unwrap();
    assert_eq!(id.str_claim("iss"), Some(w.iss.as_str()));
    assert_eq!(id.str_claim("aud"), Some("case-app"));
    assert_eq!(id.str_claim("sub"), Some(SUB));
    assert_eq!(id.str_claim("nonce"), Some("n-1"));
    assert!(id.claims["exp"].as_u64().unwrap() > w.clock.now().as_secs());
    let at = body["access_token"].as_str().unwrap();
    assert_eq!(
        id.str_claim("at_hash"),
        Some(at_hash(tianping_core::Algorithm::Es256, at).as_str())
    );
    let (status, _, info) = w.userinfo(at).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["sub"], SUB);
    w.server.shutdown().await;
}

#[tokio::test]
async fn alternate_happy_flow() {
    let w = world().await;
    // scopes in another order, parameters in reverse order
    let c = challenge();
    let reversed = form_encode_pairs([
        ("state", "st-2"),
        ("code_challenge_method", "S256"),
        ("code_challenge", c.as_str()),
        ("scope", "profile openid"),
        ("redirect_uri", REDIRECT),
        ("client_id", "case-app"),
        ("response_type", "code"),
    ]);
    let resp = authorize_get(&w, &reversed).await;
    assert_eq!(resp.status(), StatusCode::OK, "the sign-in page");
    let body = tokens_for(&w, &reversed).await;
    let scope: Vec<&str> = body["scope"].as_str().unwrap().split(' ').collect();
    assert!(
        scope.contains(&"openid") && scope.contains(&"profile"),
        "{scope:?}"
    );
    let keys = jwks(&w).await;
    verify_with(body["id_token"].as_str().unwrap(), &keys).unwrap();
    w.server.shutdown().await;
}

#[tokio::test]
async fn missing_response_type_errors() {
    let w = world().await;
    let q = query("openid", &[]).replace("response_type=code&", "");
    let resp = authorize_get(&w, &q).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let loc = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with(REDIRECT));
    assert_eq!(
        query_param(&loc, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(query_param(&loc, "state").as_deref(), Some("st-1"));
    assert_eq!(query_param(&loc, "iss"), Some(w.iss.clone()));
    w.server.shutdown().await;
}

#[tokio::test]
async fn unknown_parameters_ignored() {
    let w = world().await;
    let q = query("openid", &[("x-unknown", "1"), ("foo", "bar")]);
    assert_eq!(authorize_get(&w, &q).await.status(), StatusCode::OK);
    tokens_for(&w, &q).await;
    w.server.shutdown().await;
}

#[tokio::test]
async fn authorization_by_post_works() {
    let w = world().await;
    let resp = w
        .http
        .post(w.url("/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(query("openid", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("<form"));
    w.server.shutdown().await;
}

#[tokio::test]
async fn id_token_signed_with_published_alg_and_kid() {
    let w = world().await;
    let body = tokens_for(&w, &query("openid", &[])).await;
    let id_token = body["id_token"].as_str().unwrap();
    let d: Value = w
        .http
        .get(w.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks(&w).await;
    let v = verify_with(id_token, &keys).unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            id_token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert!(
        d["id_token_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&header["alg"])
    );
    assert!(
        keys.iter()
            .any(|k| Some(k.kid.as_str()) == header["kid"].as_str())
    );
    assert_eq!(v.typ(), Some("JWT"));
    w.server.shutdown().await;
}

#[tokio::test]
async fn unsigned_id_token_refused() {
    let w = world().await;
    let d: Value = w
        .http
        .get(w.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let algs = d["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(!algs.is_empty());
    assert!(!algs.iter().any(|a| a == "none"), "{algs:?}");
    assert_eq!(d["request_parameter_supported"], false);
    w.server.shutdown().await;
}

#[tokio::test]
async fn userinfo_get_post_header_post_body() {
    let w = world().await;
    let body = tokens_for(&w, &query("openid profile", &[])).await;
    let at = body["access_token"].as_str().unwrap();
    let get = w
        .http
        .get(w.url("/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    let post_header = w
        .http
        .post(w.url("/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    let post_body = w
        .http
        .post(w.url("/userinfo"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode_pairs([("access_token", at)]))
        .send()
        .await
        .unwrap();
    let mut answers = vec![];
    for r in [get, post_header, post_body] {
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["sub"], SUB);
        answers.push(v);
    }
    assert!(answers.windows(2).all(|p| p[0] == p[1]));
    // both at once is refused, none at all gets the bare challenge
    let both = w
        .http
        .post(w.url("/userinfo"))
        .bearer_auth(at)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode_pairs([("access_token", at)]))
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), StatusCode::BAD_REQUEST);
    let none = w.http.get(w.url("/userinfo")).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        none.headers()["www-authenticate"],
        "Bearer realm=\"tianping\""
    );
    w.server.shutdown().await;
}

#[tokio::test]
async fn nonce_optional_in_code_flow() {
    let w = world().await;
    let body = tokens_for(&w, &query("openid", &[])).await;
    let v = verify_with(body["id_token"].as_str().unwrap(), &jwks(&w).await).unwrap();
    assert!(!v.claims.contains_key("nonce"));
    w.server.shutdown().await;
}

#[tokio::test]
async fn display_login_hint_ui_locales_claims_locales_acr_values_no_error() {
    let w = world().await;
    for extra in [
        [("display", "page")],
        [("display", "popup")],
        [("login_hint", SUB)],
        [("ui_locales", "en zh-CN")],
        [("claims_locales", "zh-CN")],
        [("acr_values", "otp pwd")],
    ] {
        let q = query("openid", &extra);
        let resp = authorize_get(&w, &q).await;
        assert_eq!(resp.status(), StatusCode::OK, "{extra:?}");
        tokens_for(&w, &q).await;
    }
    w.server.shutdown().await;
}

#[tokio::test]
async fn scope_profile_email_phone() {
    let w = world().await;
    let body = tokens_for(&w, &query("openid profile email phone address", &[])).await;
    let at = body["access_token"].as_str().unwrap();
    let (status, _, info) = w.userinfo(at).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["sub"], SUB);
    assert_eq!(info["name"], "李法官");
    assert_eq!(info["family_name"], "李");
    assert_eq!(info["preferred_username"], LOGIN);
    assert_eq!(info["email"], EMAIL);
    assert_eq!(info["phone_number"], PHONE);
    // each scope alone releases its own claims and no others
    for (scope, has, lacks) in [
        ("openid profile", "name", "email"),
        ("openid email", "email", "phone_number"),
        ("openid phone", "phone_number", "name"),
        ("openid", "sub", "email"),
    ] {
        let body = tokens_for(&w, &query(scope, &[])).await;
        let (_, _, info) = w.userinfo(body["access_token"].as_str().unwrap()).await;
        assert!(info.get(has).is_some(), "{scope}: {info}");
        assert!(info.get(lacks).is_none(), "{scope}: {info}");
    }
    w.server.shutdown().await;
}

#[tokio::test]
async fn code_reuse_invalid_grant_and_tokens_revoked() {
    let w = world().await;
    let code = w.code_at(&query("openid", &[]), w.clock.now());
    let (status, first) = w.redeem("case-app", &code).await;
    assert_eq!(status, StatusCode::OK);
    let (status, again) = w.redeem("case-app", &code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(again["error"], "invalid_grant");
    assert!(!w.active(first["access_token"].as_str().unwrap()).await);
    w.server.shutdown().await;
}

#[tokio::test]
async fn code_reuse_30s_later_invalid_grant() {
    let w = world().await;
    let code = w.code_at(&query("openid", &[]), w.clock.now());
    let (status, first) = w.redeem("case-app", &code).await;
    assert_eq!(status, StatusCode::OK);
    w.clock.advance(Duration::from_secs(30));
    let (status, again) = w.redeem("case-app", &code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(again["error"], "invalid_grant");
    assert!(!w.active(first["access_token"].as_str().unwrap()).await);
    assert!(!w.active(first["refresh_token"].as_str().unwrap()).await);
    w.server.shutdown().await;
}

#[tokio::test]
async fn unregistered_redirect_uri_error_page_never_redirects() {
    let w = world().await;
    for uri in [
        "https://evil.example/cb",
        "https://case.example/cb/..;/x",
        "https://case.example@evil.example/cb",
        "https://case.example/cb?x=1",
    ] {
        let q = query("openid", &[]).replace(
            &form_encode_pairs([("redirect_uri", REDIRECT)]),
            &form_encode_pairs([("redirect_uri", uri)]),
        );
        let resp = authorize_get(&w, &q).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert!(resp.headers().get("location").is_none(), "{uri}");
        assert!(resp.text().await.unwrap().contains("invalid_request"));
    }
    w.server.shutdown().await;
}

#[tokio::test]
async fn client_secret_post() {
    let w = world().await;
    let c = challenge();
    let q = form_encode_pairs([
        ("response_type", "code"),
        ("client_id", "post-app"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("code_challenge", c.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    let code = w.code_at(&q, w.clock.now());
    let form = form_encode_pairs([
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", "post-app"),
        ("client_secret", SECRET),
    ]);
    let (status, body) = w.post("/token", &form, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["id_token"].is_string());
    // the same client by Basic is refused: it registered `client_secret_post`
    let (status, body) = w.redeem("post-app", &code).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");
    w.server.shutdown().await;
}

#[tokio::test]
async fn request_object_refused() {
    let w = world().await;
    for (param, error) in [
        ("request", "request_not_supported"),
        ("request_uri", "request_uri_not_supported"),
    ] {
        let value = if param == "request" {
            "eyJhbGciOiJub25lIn0.eyJzY29wZSI6Im9wZW5pZCJ9."
        } else {
            "https://case.example/req.jwt"
        };
        let resp = authorize_get(&w, &query("openid", &[(param, value)])).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{param}");
        let loc = resp.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(query_param(&loc, "error").as_deref(), Some(error));
        assert_eq!(query_param(&loc, "iss"), Some(w.iss.clone()));
    }
    w.server.shutdown().await;
}

#[tokio::test]
async fn claims_essential() {
    let w = world().await;
    let claims = r#"{"id_token":{"acr":{"essential":true}},"userinfo":{"preferred_username":{"essential":true}}}"#;
    let q = query("openid profile", &[("claims", claims)]);
    assert_eq!(authorize_get(&w, &q).await.status(), StatusCode::OK);
    assert!(
        w.request(&q)
            .claims
            .id_token
            .iter()
            .any(|c| c.name == "acr" && c.essential)
    );
    let body = tokens_for(&w, &q).await;
    let v = verify_with(body["id_token"].as_str().unwrap(), &jwks(&w).await).unwrap();
    assert_eq!(v.str_claim("acr"), Some("otp"));
    let (_, _, info) = w.userinfo(body["access_token"].as_str().unwrap()).await;
    assert_eq!(info["preferred_username"], LOGIN, "{info}");

    // claims no scope asked for: released where they were asked, and nowhere else
    let claims = r#"{"id_token":{"email":{"essential":true},"name":null},"userinfo":{"phone_number":{"essential":true}}}"#;
    let q = query("openid", &[("claims", claims)]);
    let body = tokens_for(&w, &q).await;
    let v = verify_with(body["id_token"].as_str().unwrap(), &jwks(&w).await).unwrap();
    assert_eq!(v.str_claim("email"), Some(EMAIL));
    assert_eq!(v.str_claim("name"), Some("李法官"));
    assert!(!v.claims.contains_key("phone_number"));
    let (status, _, info) = w.userinfo(body["access_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["phone_number"], PHONE, "{info}");
    assert!(info.get("email").is_none(), "{info}");
    assert!(info.get("name").is_none(), "{info}");
    w.server.shutdown().await;
}

#[tokio::test]
async fn refresh_bound_to_client() {
    let w = world().await;
    let body = tokens_for(&w, &query("openid", &[])).await;
    let rt = body["refresh_token"].as_str().unwrap();
    let (status, other) = w.refresh("other-app", rt).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(other["error"], "invalid_grant");
    let (status, next) = w.refresh("case-app", rt).await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert_ne!(next["refresh_token"], body["refresh_token"]);
    let v = verify_with(next["access_token"].as_str().unwrap(), &jwks(&w).await).unwrap();
    assert_eq!(v.str_claim("sub"), Some(SUB));
    assert_eq!(v.str_claim("client_id"), Some("case-app"));
    w.server.shutdown().await;
}

#[tokio::test]
async fn pkce_valid_succeeds() {
    let w = world().await;
    let body = tokens_for(&w, &query("openid", &[])).await;
    assert!(body["access_token"].is_string() && body["id_token"].is_string());
    w.server.shutdown().await;
}

#[tokio::test]
async fn config_op_discovery_lists_every_endpoint() {
    let w = world().await;
    let d: Value = w
        .http
        .get(w.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (k, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("jwks_uri", "/jwks"),
        ("userinfo_endpoint", "/userinfo"),
        ("revocation_endpoint", "/revoke"),
        ("introspection_endpoint", "/introspect"),
        ("end_session_endpoint", "/logout"),
    ] {
        assert_eq!(d[k], w.url(path), "{k}");
    }
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(d["tianping_pkce_required"], true);
    assert_eq!(d["claims_parameter_supported"], true);
    w.server.shutdown().await;
}

#[tokio::test]
async fn rp_initiated_logout() {
    let w = world().await;
    let body = tokens_for(&w, &query("openid", &[])).await;
    let hint = body["id_token"].as_str().unwrap();
    let logout = |pairs: Vec<(&'static str, String)>| {
        let q = form_encode_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
        w.http.get(w.url(&format!("/logout?{q}"))).send()
    };
    // a post-logout URI that is not registered, exactly: an error page, no redirect
    for uri in ["https://evil.example/bye", "https://case.example/bye/"] {
        let resp = logout(vec![
            ("id_token_hint", hint.to_owned()),
            ("post_logout_redirect_uri", uri.to_owned()),
        ])
        .await
        .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert!(resp.headers().get("location").is_none());
    }
    // a registered one with state: redirected there, state echoed
    let resp = logout(vec![
        ("id_token_hint", hint.to_owned()),
        ("post_logout_redirect_uri", BYE.to_owned()),
        ("state", "bye-1".to_owned()),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        resp.headers()["location"],
        format!("{BYE}?state=bye-1").as_str()
    );
    // without a redirect: the signed-out page
    let resp = logout(vec![]).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    w.server.shutdown().await;
}

#[tokio::test]
async fn rp_initiated_logout_revokes_the_sessions_refresh_families() {
    let w = world().await;
    let (mut cookie, first) = signed_in_browser(&w).await;
    // a second code from the same session, and one issued outside it
    let (status, loc, page) =
        authorize_in(&w, &query("openid", &[("prompt", "none")]), &mut cookie).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let code = query_param(&loc.unwrap(), "code").unwrap();
    let (status, second) = w.redeem("case-app", &code).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let other = tokens_for(&w, &query("openid", &[])).await;
    let rt = |v: &Value| v["refresh_token"].as_str().unwrap().to_owned();
    // the first family rotated once before the logout: its newest token ends too
    let (status, rotated) = w.refresh("case-app", &rt(&first)).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");

    // with no ID token hint the user is asked, and confirms with the page's form
    let (status, _, page) = w.browse(w.http.get(w.url("/logout")), &mut cookie).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (status, _, page) = w.post_form_page(&page, &[], &mut cookie).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Signed out"), "{page}");
    for (name, v) in [("rotated", &rotated), ("second", &second)] {
        let (status, body) = w.refresh("case-app", &rt(v)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{name}");
        // and the access tokens issued from the family
        let (status, _, _) = w.userinfo(v["access_token"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
    }
    // a family of no session (or another) is untouched
    let (status, body) = w.refresh("case-app", &rt(&other)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // a second logout of the same (now ended) session revokes nothing and still answers
    let (status, _, _) = w.browse(w.http.get(w.url("/logout")), &mut cookie).await;
    assert_eq!(status, StatusCode::OK);
    w.server.shutdown().await;
}

/// The judge signs in through the forms; the browser's cookie and the tokens of that sign-in.
async fn signed_in_browser(w: &World) -> (Option<String>, Value) {
    let mut cookie = None;
    let loc = w
        .sign_in_through_forms(&query("openid", &[("nonce", "n-1")]), &mut cookie)
        .await;
    let code = query_param(&loc, "code").unwrap();
    let (status, body) = w.redeem("case-app", &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (cookie, body)
}

/// `GET /authorize` in the browser holding `cookie`.
async fn authorize_in(
    w: &World,
    q: &str,
    cookie: &mut Option<String>,
) -> (StatusCode, Option<String>, String) {
    w.browse(w.http.get(w.url(&format!("/authorize?{q}"))), cookie)
        .await
}

async fn auth_time_of(w: &World, tokens: &Value) -> u64 {
    let v = verify_with(tokens["id_token"].as_str().unwrap(), &jwks(w).await).unwrap();
    v.claims["auth_time"].as_u64().unwrap()
}

#[tokio::test]
async fn prompt_none_without_session_login_required() {
    let w = world().await;
    let resp = authorize_get(&w, &query("openid", &[("prompt", "none")])).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let loc = resp.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        query_param(&loc, "error").as_deref(),
        Some("login_required")
    );
    assert_eq!(query_param(&loc, "state").as_deref(), Some("st-1"));
    assert_eq!(query_param(&loc, "iss"), Some(w.iss.clone()));
    w.server.shutdown().await;
}

#[tokio::test]
async fn prompt_none_with_session_succeeds() {
    let w = world().await;
    let (mut cookie, _) = signed_in_browser(&w).await;
    w.clock.advance(Duration::from_secs(5));
    let (status, loc, page) =
        authorize_in(&w, &query("openid", &[("prompt", "none")]), &mut cookie).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let code = query_param(&loc.unwrap(), "code").unwrap();
    let (status, body) = w.redeem("case-app", &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    w.server.shutdown().await;
}

#[tokio::test]
async fn prompt_login_forces_sign_in() {
    let w = world().await;
    let (mut cookie, _) = signed_in_browser(&w).await;
    let (status, loc, page) =
        authorize_in(&w, &query("openid", &[("prompt", "login")]), &mut cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(loc.is_none());
    assert!(page.contains("name=\"password\""), "{page}");
    w.server.shutdown().await;
}

#[tokio::test]
async fn max_age_1_forces_sign_in_and_returns_auth_time() {
    let w = world().await;
    let (mut cookie, first) = signed_in_browser(&w).await;
    let t0 = auth_time_of(&w, &first).await;
    // past max_age, and into the next TOTP step (a code is accepted once)
    w.clock.advance(Duration::from_secs(31));
    let q = query("openid", &[("max_age", "1")]);
    let (status, _, page) = authorize_in(&w, &q, &mut cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("name=\"password\""), "{page}");
    let loc = w.sign_in_through_forms(&q, &mut cookie).await;
    let (_, again) = w
        .redeem("case-app", &query_param(&loc, "code").unwrap())
        .await;
    let t1 = auth_time_of(&w, &again).await;
    assert_eq!(t1, w.clock.now().as_secs());
    assert_eq!(t1, t0 + 31);
    w.server.shutdown().await;
}

#[tokio::test]
async fn max_age_10000_does_not_force_sign_in() {
    let w = world().await;
    let (mut cookie, first) = signed_in_browser(&w).await;
    let t0 = auth_time_of(&w, &first).await;
    w.clock.advance(Duration::from_secs(31));
    let q = query("openid", &[("max_age", "10000")]);
    let (status, loc, page) = authorize_in(&w, &q, &mut cookie).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let (_, again) = w
        .redeem("case-app", &query_param(&loc.unwrap(), "code").unwrap())
        .await;
    assert_eq!(auth_time_of(&w, &again).await, t0);
    w.server.shutdown().await;
}

#[tokio::test]
async fn id_token_hint_with_prompt_none_succeeds() {
    let w = world().await;
    let (mut cookie, first) = signed_in_browser(&w).await;
    let hint = first["id_token"].as_str().unwrap();
    let q = query("openid", &[("prompt", "none"), ("id_token_hint", hint)]);
    let (status, loc, page) = authorize_in(&w, &q, &mut cookie).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let loc = loc.unwrap();
    assert!(query_param(&loc, "code").is_some(), "{loc}");
    w.server.shutdown().await;
}

#[tokio::test]
async fn two_registered_redirect_uris_and_none_in_the_request_errors() {
    let w = world().await;
    let mut client = oidc_world::clients().remove(0);
    client.id = "two-uris".into();
    client.redirect_uris = vec![REDIRECT.into(), "https://case.example/cb2".into()];
    tianping_idp::Directory::new(&*w.store)
        .add_client(client)
        .unwrap();
    let c = challenge();
    let q = form_encode_pairs([
        ("response_type", "code"),
        ("client_id", "two-uris"),
        ("scope", "openid"),
        ("code_challenge", c.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    let resp = authorize_get(&w, &q).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get("location").is_none());
    assert!(resp.text().await.unwrap().contains("redirect_uri"));
    w.server.shutdown().await;
}
