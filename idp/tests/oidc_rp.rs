//! The whole code flow driven by a real relying party, the `openidconnect` crate, over real TLS
//! to the zone's `idp` host name from `fabric.toml`, trusting only the test PKI's root: discovery,
//! authorization with PKCE, the code redeemed, the ID token verified (signature against the
//! fetched JWKS, `iss`, `aud`, `nonce`, `at_hash`, `acr`, `amr`), UserInfo, refresh, revocation
//! and RP-initiated logout. The user signs in through the real HTML forms, password then TOTP.

mod oidc_world;

use oidc_world::{BYE, REDIRECT, SECRET, SUB, query_param, world};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims, CoreRevocableToken, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, RevocationUrl, Scope, TokenResponse,
};
use reqwest::StatusCode;
use serde_json::Value;
use tianping_core::Clock as _;
use tianping_idp::{SESSION_COOKIE, SessionPolicy, Sessions};

#[tokio::test]
async fn openidconnect_relying_party_runs_the_whole_code_flow() {
    let w = world().await;
    let http = &w.http;

    // discovery, with the logout endpoint
    let issuer = IssuerUrl::new(w.iss.clone()).unwrap();
    let meta = ProviderMetadataWithLogout::discover_async(issuer, http)
        .await
        .unwrap();
    let end_session = meta
        .additional_metadata()
        .end_session_endpoint
        .clone()
        .unwrap();
    let raw: Value = http
        .get(w.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new("case-app".into()),
        Some(ClientSecret::new(SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap())
    .set_revocation_url(
        RevocationUrl::new(raw["revocation_endpoint"].as_str().unwrap().into()).unwrap(),
    );

    // authorization with PKCE
    let (pkce, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(pkce)
        .url();
    assert!(
        auth_url
            .as_str()
            .starts_with(&format!("{}/authorize?", w.iss))
    );
    // the user signs in through the HTML forms: password, then the one-time code
    let mut cookie = None;
    let location = w
        .sign_in_through_forms(auth_url.query().unwrap(), &mut cookie)
        .await;
    let session_id = cookie.clone().unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(
        query_param(&location, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    assert_eq!(
        query_param(&location, "iss"),
        Some(w.iss.clone()),
        "RFC 9207"
    );
    let code = query_param(&location, "code").unwrap();

    // the token request, PKCE verifier included, client_secret_basic
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(http)
        .await
        .unwrap();
    let id_token = tokens.id_token().unwrap().clone();
    let verifier = client.id_token_verifier();
    let claims: &CoreIdTokenClaims = id_token.claims(&verifier, &nonce).unwrap();
    assert_eq!(claims.subject().as_str(), SUB);
    assert_eq!(claims.issuer().as_str(), w.iss);
    assert_eq!(claims.audiences()[0].as_str(), "case-app");
    assert_eq!(claims.auth_context_ref().map(|a| a.as_str()), Some("otp"));
    let amr: Vec<&str> = claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|a| a.as_str())
        .collect();
    assert_eq!(amr, ["pwd", "otp"]);
    assert!(claims.auth_time().is_some());
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));

    // UserInfo for the subject the ID token named
    let info: CoreUserInfoClaims = client
        .user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .unwrap()
        .request_async(http)
        .await
        .unwrap();
    assert_eq!(info.subject().as_str(), SUB);
    assert_eq!(
        info.preferred_username().unwrap().as_str(),
        oidc_world::LOGIN
    );
    assert_eq!(info.email().unwrap().as_str(), oidc_world::EMAIL);

    // refresh: a new access token and a rotated refresh token
    let rt1 = tokens.refresh_token().unwrap().clone();
    let refreshed = client
        .exchange_refresh_token(&rt1)
        .unwrap()
        .request_async(http)
        .await
        .unwrap();
    let rt2 = refreshed.refresh_token().unwrap().clone();
    assert_ne!(rt1.secret(), rt2.secret());
    assert_ne!(
        refreshed.access_token().secret(),
        tokens.access_token().secret()
    );
    assert!(w.active(refreshed.access_token().secret()).await);

    // revocation of the refresh token: the family and its access tokens are dead
    client
        .revoke_token(CoreRevocableToken::from(rt2.clone()))
        .unwrap()
        .request_async(http)
        .await
        .unwrap();
    assert!(!w.active(rt2.secret()).await);
    assert!(!w.active(refreshed.access_token().secret()).await);
    let again = client
        .exchange_refresh_token(&rt2)
        .unwrap()
        .request_async(http)
        .await;
    assert!(again.is_err(), "a revoked refresh token is refused");
    // and of an access token
    client
        .revoke_token(CoreRevocableToken::from(tokens.access_token().clone()))
        .unwrap()
        .request_async(http)
        .await
        .unwrap();
    let (status, _, _) = w.userinfo(tokens.access_token().secret()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // RP-initiated logout: back to the registered URI with the state, the session ended and the
    // browser given a new session id
    let logout_state = CsrfToken::new_random();
    let logout_url = LogoutRequest::from(end_session)
        .set_id_token_hint(&id_token)
        .set_client_id(ClientId::new("case-app".into()))
        .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new(BYE.into()).unwrap())
        .set_state(logout_state.clone())
        .http_get_url();
    let resp = http
        .get(logout_url.as_str())
        .header("cookie", format!("{SESSION_COOKIE}={session_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let back = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(back.starts_with(BYE), "{back}");
    assert_eq!(
        query_param(&back, "state").as_deref(),
        Some(logout_state.secret().as_str())
    );
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with(&format!("{SESSION_COOKIE}=")));
    assert!(
        !set_cookie.contains(&session_id),
        "the session id is rotated"
    );
    let sessions = Sessions::new(&*w.store, SessionPolicy::default());
    assert!(
        sessions.get(&session_id, w.clock.now()).is_err(),
        "the session ended"
    );

    // every grant and revocation is in the audit log
    let actions: Vec<String> = w.events_since(0).into_iter().map(|(a, _)| a).collect();
    for a in [
        "token.authorization_code",
        "token.refresh",
        "token.revoke",
        "session.logout",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    w.server.shutdown().await;
}
