//! The authorization request (OIDC Core §3.1.2.1), by GET query or POST form, and where its
//! answer goes.
//!
//! Errors about the client or the redirect URI are shown as a page and never redirect (the URI
//! cannot be trusted); every later error redirects to the checked URI with `error`, `state` and
//! `iss` (RFC 9207), as every success does.
//!
//! PKCE with `S256` is required of every client, confidential ones included. This departs on
//! purpose from the OpenID Foundation's Basic OP plan (where PKCE is optional): it closes code
//! injection for every client, as OAuth 2.1 does.

use serde_json::Value;
use tianping_core::Acr;

use crate::IdpError;
use crate::client::Client;
use crate::error::quoted;
use crate::form::{Params, encode_pairs};
use crate::jwt::MAX_JWT_BYTES;
use crate::pkce::CodeChallenge;

/// The longest `state`, `nonce` or `login_hint` accepted.
pub const MAX_PARAM_BYTES: usize = 1024;

/// The `prompt` values (space-separated; `none` alone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    /// `none`: no page may be shown.
    pub none: bool,
    /// `login`: sign in again even with a session.
    pub login: bool,
    /// `consent`: ask for consent again.
    pub consent: bool,
}

/// A page language.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UiLocale {
    /// Simplified Chinese (the default).
    #[default]
    ZhCn,
    /// English.
    En,
}

impl UiLocale {
    /// The BCP 47 tag.
    pub fn as_str(self) -> &'static str {
        match self {
            UiLocale::ZhCn => "zh-CN",
            UiLocale::En => "en",
        }
    }

    /// The first supported language of a `ui_locales` list (or an `Accept-Language`'s tags),
    /// else Chinese.
    pub fn choose(list: &str) -> Self {
        list.split([' ', ','])
            .map(|t| {
                t.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .find_map(|t| {
                if t == "zh" || t.starts_with("zh-") {
                    Some(UiLocale::ZhCn)
                } else if t == "en" || t.starts_with("en-") {
                    Some(UiLocale::En)
                } else {
                    None
                }
            })
            .unwrap_or_default()
    }
}

/// A claim asked for by the `claims` parameter (OIDC Core §5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedClaim {
    /// The claim name.
    pub name: String,
    /// Whether it is essential.
    pub essential: bool,
}

/// The `claims` parameter: what the ID token and UserInfo should carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimsRequest {
    /// Claims for the ID token.
    pub id_token: Vec<RequestedClaim>,
    /// Claims for UserInfo.
    pub userinfo: Vec<RequestedClaim>,
}

impl ClaimsRequest {
    fn parse(text: &str) -> Result<Self, IdpError> {
        let bad = IdpError::BadParameter {
            name: "claims",
            reason: "expected a JSON object of `id_token` and `userinfo` members",
        };
        let Ok(Value::Object(top)) = serde_json::from_str::<Value>(text) else {
            return Err(bad);
        };
        let mut out = Self::default();
        for (part, list) in [
            ("id_token", &mut out.id_token),
            ("userinfo", &mut out.userinfo),
        ] {
            match top.get(part) {
                None | Some(Value::Null) => {}
                Some(Value::Object(members)) => {
                    for (name, spec) in members {
                        let essential = match spec {
                            Value::Null => false,
                            Value::Object(o) => match o.get("essential") {
                                None => false,
                                Some(Value::Bool(b)) => *b,
                                Some(_) => return Err(bad),
                            },
                            _ => return Err(bad),
                        };
                        list.push(RequestedClaim {
                            name: quoted(name),
                            essential,
                        });
                    }
                }
                Some(_) => return Err(bad),
            }
        }
        Ok(out)
    }
}

/// A checked authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// The client.
    pub client_id: String,
    /// The redirect URI, one the client registered.
    pub redirect_uri: String,
    /// Whether `redirect_uri` was in the request (the token request must then repeat it).
    pub redirect_uri_sent: bool,
    /// The scopes asked for that the client may have (`openid` always among them).
    pub scope: Vec<String>,
    /// `state`, echoed back.
    pub state: Option<String>,
    /// `nonce`, put in the ID token.
    pub nonce: Option<String>,
    /// The PKCE challenge.
    pub code_challenge: CodeChallenge,
    /// `prompt`.
    pub prompt: Prompt,
    /// `max_age`, in seconds.
    pub max_age: Option<u64>,
    /// `id_token_hint`, not yet checked (see `TokenIssuer::verify_id_token_hint`).
    pub id_token_hint: Option<String>,
    /// `login_hint`.
    pub login_hint: Option<String>,
    /// The known `acr_values`, in order of preference.
    pub acr_values: Vec<Acr>,
    /// The page language.
    pub ui_locale: UiLocale,
    /// The `claims` parameter.
    pub claims: ClaimsRequest,
}

/// Where an error about an authorization request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// Shown as a page by the provider: the client or redirect URI is unknown or unchecked.
    Page(IdpError),
    /// Sent back to the client's checked redirect URI.
    Redirect(ErrorRedirect),
}

impl AuthorizeError {
    /// The error, wherever it goes.
    pub fn error(&self) -> &IdpError {
        match self {
            AuthorizeError::Page(e) => e,
            AuthorizeError::Redirect(r) => &r.error,
        }
    }
}

/// An error answer redirected to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRedirect {
    /// The checked redirect URI.
    pub redirect_uri: String,
    /// The error.
    pub error: IdpError,
    /// The request's `state`.
    pub state: Option<String>,
    /// This provider's issuer, for `iss` (RFC 9207).
    pub iss: String,
}

impl ErrorRedirect {
    /// The `Location` to redirect to.
    pub fn location(&self) -> String {
        let mut pairs = vec![("error", self.error.code().as_str())];
        let description = self.error.to_string();
        pairs.push(("error_description", description.as_str()));
        if let Some(s) = &self.state {
            pairs.push(("state", s));
        }
        pairs.push(("iss", &self.iss));
        append_query(&self.redirect_uri, &encode_pairs(pairs))
    }
}

/// The `Location` of a successful authorization response: `code`, `state` and `iss`.
pub fn success_location(redirect_uri: &str, code: &str, state: Option<&str>, iss: &str) -> String {
    let mut pairs = vec![("code", code)];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", iss));
    append_query(redirect_uri, &encode_pairs(pairs))
}

fn append_query(uri: &str, query: &str) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{query}")
}

fn bounded<'a>(p: &'a Params, name: &'static str, max: usize) -> Result<Option<&'a str>, IdpError> {
    match p.get(name)? {
        Some(v) if v.len() > max => Err(IdpError::BadParameter {
            name,
            reason: "too long",
        }),
        other => Ok(other),
    }
}

fn parse_prompt(text: &str) -> Result<Prompt, IdpError> {
    let mut p = Prompt::default();
    for v in text.split(' ').filter(|v| !v.is_empty()) {
        match v {
            "none" => p.none = true,
            "login" => p.login = true,
            "consent" => p.consent = true,
            // accepted and meaningless here: one account per session
            "select_account" => {}
            _ => {
                return Err(IdpError::BadParameter {
                    name: "prompt",
                    reason: "expected `none`, `login` or `consent`",
                });
            }
        }
    }
    if p.none && (p.login || p.consent) {
        return Err(IdpError::BadParameter {
            name: "prompt",
            reason: "`none` cannot be combined",
        });
    }
    Ok(p)
}

/// Parses and checks an authorization request from its query (GET) or form body (POST).
/// `find_client` looks a client up by id. Unknown parameters are ignored; a parameter read here
/// that appears twice is refused.
pub fn parse_authorization(
    raw: &[u8],
    issuer: &str,
    find_client: &dyn Fn(&str) -> Option<Client>,
) -> Result<(AuthorizationRequest, Client), AuthorizeError> {
    let page = AuthorizeError::Page;
    let params = Params::parse(raw).map_err(page)?;
    let client_id = params.require("client_id").map_err(page)?;
    let client =
        find_client(client_id).ok_or_else(|| page(IdpError::UnknownClient(quoted(client_id))))?;
    let sent = params.get("redirect_uri").map_err(page)?;
    let redirect_uri = match sent {
        Some(uri) if client.matches_redirect(uri) => uri.to_owned(),
        Some(uri) => return Err(page(IdpError::RedirectUriNotRegistered(quoted(uri)))),
        None => match client.redirect_uris.as_slice() {
            [only] => only.clone(),
            _ => return Err(page(IdpError::RedirectUriRequired)),
        },
    };
    // From here on the redirect URI is trusted: errors go back to the client.
    let mut back = ErrorRedirect {
        redirect_uri: redirect_uri.clone(),
        error: IdpError::MalformedForm,
        state: None,
        iss: issuer.to_owned(),
    };
    let state = match bounded(&params, "state", MAX_PARAM_BYTES) {
        Ok(s) => s.map(str::to_owned),
        Err(e) => {
            back.error = e;
            return Err(AuthorizeError::Redirect(back));
        }
    };
    back.state.clone_from(&state);
    let redirect = |e: IdpError| {
        let mut b = back.clone();
        b.error = e;
        AuthorizeError::Redirect(b)
    };
    let request = (|| {
        if params.get("request")?.is_some() {
            return Err(IdpError::RequestObjectNotSupported);
        }
        if params.get("request_uri")?.is_some() {
            return Err(IdpError::RequestUriNotSupported);
        }
        let response_type = params.require("response_type")?;
        if response_type != "code" {
            return Err(IdpError::UnsupportedResponseType(quoted(response_type)));
        }
        if let Some(mode) = params.get("response_mode")? {
            if mode != "query" {
                return Err(IdpError::BadParameter {
                    name: "response_mode",
                    reason: "only `query` is supported",
                });
            }
        }
        let asked: Vec<&str> = params
            .require("scope")?
            .split(' ')
            .filter(|s| !s.is_empty())
            .collect();
        if !asked.contains(&"openid") {
            return Err(IdpError::OpenidScopeMissing);
        }
        // Scope values not understood are ignored (OIDC Core §3.1.2.1).
        let mut scope: Vec<String> = Vec::new();
        for s in asked {
            if client.may_ask(s) && !scope.iter().any(|x| x == s) {
                scope.push(s.to_owned());
            }
        }
        let code_challenge = CodeChallenge::from_request(
            params.get("code_challenge")?,
            params.get("code_challenge_method")?,
        )?;
        let prompt = params
            .get("prompt")?
            .map(parse_prompt)
            .transpose()?
            .unwrap_or_default();
        let max_age = match params.get("max_age")? {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .ok()
                    .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or(IdpError::BadParameter {
                        name: "max_age",
                        reason: "expected a number of seconds",
                    })?,
            ),
        };
        let acr_values = params
            .get("acr_values")?
            .map(|v| v.split(' ').filter_map(|a| a.parse::<Acr>().ok()).collect())
            .unwrap_or_default();
        let claims = params
            .get("claims")?
            .map(ClaimsRequest::parse)
            .transpose()?
            .unwrap_or_default();
        Ok(AuthorizationRequest {
            client_id: client.id.clone(),
            redirect_uri: redirect_uri.clone(),
            redirect_uri_sent: sent.is_some(),
            scope,
            state: state.clone(),
            nonce: bounded(&params, "nonce", MAX_PARAM_BYTES)?.map(str::to_owned),
            code_challenge,
            prompt,
            max_age,
            id_token_hint: bounded(&params, "id_token_hint", MAX_JWT_BYTES)?.map(str::to_owned),
            login_hint: bounded(&params, "login_hint", MAX_PARAM_BYTES)?.map(str::to_owned),
            acr_values,
            ui_locale: params
                .get("ui_locales")?
                .map(UiLocale::choose)
                .unwrap_or_default(),
            claims,
        })
    })()
    .map_err(redirect)?;
    Ok((request, client))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use crate::client::tests::{native_client, web_client};

    const ISS: &str = "https://idp.private.example";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn find(id: &str) -> Option<Client> {
        [web_client(), native_client()]
            .into_iter()
            .find(|c| c.id == id)
    }

    fn base() -> String {
        format!(
            "response_type=code&client_id=case-app&redirect_uri=https%3A%2F%2Fcase.example%2Fcb&scope=openid+profile&state=af0ifjsldkj&nonce=n-0S6&code_challenge={CHALLENGE}&code_challenge_method=S256"
        )
    }

    fn parse(q: &str) -> Result<AuthorizationRequest, AuthorizeError> {
        parse_authorization(q.as_bytes(), ISS, &find).map(|(r, _)| r)
    }

    fn redirected(q: &str) -> ErrorRedirect {
        match parse(q) {
            Err(AuthorizeError::Redirect(r)) => r,
            other => panic!("expected a redirect, got {other:?}"),
        }
    }

    fn paged(q: &str) -> IdpError {
        match parse(q) {
            Err(AuthorizeError::Page(e)) => e,
            other => panic!("expected a page, got {other:?}"),
        }
    }

    #[test]
    fn happy_path_and_reversed_order() {
        let r = parse(&base()).unwrap();
        assert_eq!(r.client_id, "case-app");
        assert_eq!(r.scope, ["openid", "profile"]);
        assert_eq!(r.state.as_deref(), Some("af0ifjsldkj"));
        assert_eq!(r.nonce.as_deref(), Some("n-0S6"));
        assert_eq!(r.code_challenge.as_str(), CHALLENGE);
        assert_eq!(r.ui_locale, UiLocale::ZhCn);
        let q = base();
        let mut parts: Vec<&str> = q.split('&').collect();
        parts.reverse();
        let reversed = parse(&parts.join("&").replace("openid+profile", "profile+openid")).unwrap();
        assert_eq!(reversed.scope, ["profile", "openid"]);
        assert_eq!(reversed.redirect_uri, r.redirect_uri);
    }

    #[test]
    fn optional_parameters_cause_no_error() {
        let q = format!(
            "{}&display=popup&login_hint=judge-0001&ui_locales=fr+en-GB&claims_locales=en&acr_values=otp+gold&max_age=10000&prompt=login&unknown=1&claims=%7B%22id_token%22%3A%7B%22acr%22%3A%7B%22essential%22%3Atrue%7D%7D%2C%22userinfo%22%3A%7B%22email%22%3Anull%7D%7D",
            base()
        );
        let r = parse(&q).unwrap();
        assert_eq!(r.login_hint.as_deref(), Some("judge-0001"));
        assert_eq!(r.ui_locale, UiLocale::En);
        assert_eq!(r.acr_values, [Acr::Otp]);
        assert_eq!(r.max_age, Some(10000));
        assert!(r.prompt.login && !r.prompt.none);
        assert_eq!(
            r.claims.id_token,
            [RequestedClaim {
                name: "acr".into(),
                essential: true
            }]
        );
        assert_eq!(
            r.claims.userinfo,
            [RequestedClaim {
                name: "email".into(),
                essential: false
            }]
        );
        // nonce is optional in the code flow
        assert_eq!(
            parse(&base().replace("&nonce=n-0S6", "")).unwrap().nonce,
            None
        );
    }

    #[test]
    fn bad_client_or_redirect_uri_is_a_page_never_a_redirect() {
        assert_eq!(
            paged(&base().replace("client_id=case-app", "client_id=nobody")),
            IdpError::UnknownClient("nobody".into())
        );
        assert_eq!(
            paged(&base().replace("client_id=case-app&", "")),
            IdpError::MissingParameter("client_id")
        );
        assert!(matches!(
            paged(&base().replace("case.example%2Fcb", "evil.example%2Fcb")),
            IdpError::RedirectUriNotRegistered(_)
        ));
        assert!(matches!(
            paged(&format!("{}&redirect_uri=x", base())),
            IdpError::DuplicateParameter(_)
        ));
        assert!(matches!(
            paged(&format!("{}&client_id=desk-app", base())),
            IdpError::DuplicateParameter(_)
        ));
        assert_eq!(paged("client_id=case-app&%zz"), IdpError::MalformedForm);
        // one registered URI may be left out; a client with two must send one
        let one = base().replace("redirect_uri=https%3A%2F%2Fcase.example%2Fcb&", "");
        assert!(!parse(&one).unwrap().redirect_uri_sent);
        let two = one.replace("client_id=case-app", "client_id=desk-app");
        assert_eq!(paged(&two), IdpError::RedirectUriRequired);
    }

    #[test]
    fn later_errors_redirect_with_state_and_iss() {
        let r = redirected(&base().replace("response_type=code&", ""));
        assert_eq!(r.error, IdpError::MissingParameter("response_type"));
        let loc = r.location();
        assert!(
            loc.starts_with("https://case.example/cb?error=invalid_request&error_description="),
            "{loc}"
        );
        assert!(
            loc.ends_with("&state=af0ifjsldkj&iss=https%3A%2F%2Fidp.private.example"),
            "{loc}"
        );
        let cases = [
            (
                base().replace("response_type=code", "response_type=token"),
                ErrorCode::UnsupportedResponseType,
            ),
            (
                base().replace("openid+profile", "profile"),
                ErrorCode::InvalidScope,
            ),
            (
                format!("{}&request=eyJhbGciOiJub25lIn0.e30.", base()),
                ErrorCode::RequestNotSupported,
            ),
            (
                format!("{}&request_uri=https%3A%2F%2Frp%2Fr", base()),
                ErrorCode::RequestUriNotSupported,
            ),
            (
                base().replace(
                    "&code_challenge_method=S256",
                    "&code_challenge_method=plain",
                ),
                ErrorCode::InvalidRequest,
            ),
            (
                base().replace(&format!("&code_challenge={CHALLENGE}"), ""),
                ErrorCode::InvalidRequest,
            ),
            (format!("{}&nonce=again", base()), ErrorCode::InvalidRequest),
            (
                format!("{}&prompt=none+login", base()),
                ErrorCode::InvalidRequest,
            ),
            (format!("{}&max_age=-1", base()), ErrorCode::InvalidRequest),
            (
                format!("{}&max_age=%2B5", base()),
                ErrorCode::InvalidRequest,
            ),
            (
                format!("{}&claims=%5B%5D", base()),
                ErrorCode::InvalidRequest,
            ),
            (
                format!("{}&response_mode=fragment", base()),
                ErrorCode::InvalidRequest,
            ),
        ];
        for (q, code) in cases {
            let r = redirected(&q);
            assert_eq!(r.error.code(), code, "{q}");
            assert_eq!(r.state.as_deref(), Some("af0ifjsldkj"));
        }
        // a duplicated state cannot be echoed: the error goes back without one
        let r = redirected(&format!("{}&state=2", base()));
        assert_eq!(r.state, None);
        assert!(matches!(r.error, IdpError::DuplicateParameter(_)));
    }

    #[test]
    fn success_location_carries_iss() {
        assert_eq!(
            success_location("https://rp/cb?x=1", "c0de", Some("s t"), ISS),
            "https://rp/cb?x=1&code=c0de&state=s%20t&iss=https%3A%2F%2Fidp.private.example"
        );
        assert_eq!(
            success_location("https://rp/cb", "c", None, "i"),
            "https://rp/cb?code=c&iss=i"
        );
    }

    #[test]
    fn ui_locales() {
        assert_eq!(UiLocale::choose("zh-CN en"), UiLocale::ZhCn);
        assert_eq!(UiLocale::choose("en-US,zh;q=0.8"), UiLocale::En);
        assert_eq!(UiLocale::choose("fr de"), UiLocale::ZhCn);
        assert_eq!(UiLocale::En.as_str(), "en");
    }
}
