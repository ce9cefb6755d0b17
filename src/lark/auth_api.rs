//! App and user authentication (§4 and §5 of the protocol notes).
//!
//! App side: `tenant_access_token` and `app_access_token` from the app's
//! credentials. User side: the OAuth authorize URL (with PKCE and a random
//! `state`), exchanging a redirect's code for a user token, refreshing user
//! tokens, and reading the user's profile.
//!
//! A user token refreshes at the endpoint family that issued it
//! ([`TokenFamily`]): tokens from the device flow (the card and device
//! logins) at the accounts host's `/oauth/v3/token`, as larksuite/cli does
//! (`internal/auth/uat_client.go`: JSON body `{grant_type, refresh_token,
//! client_id, client_secret}`); tokens from the redirect flow at
//! `/open-apis/authen/v2/oauth/token`, where their code was exchanged. The
//! v1 OIDC endpoints are not used: no flow of the service obtains a code
//! without a redirect any more (a card click carries none).

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::client::{encode_component, ApiRequest, LarkClient, LarkError};
use super::de::opt_string;
use crate::domain::{AuthMethod, Scopes};
use crate::telemetry::Masked;

/// The authorize page on the accounts host.
pub const AUTHORIZE_PATH: &str = "/open-apis/authen/v1/authorize";

const TENANT_TOKEN_PATH: &str = "/open-apis/auth/v3/tenant_access_token/internal";
const APP_TOKEN_PATH: &str = "/open-apis/auth/v3/app_access_token/internal";
const OAUTH_TOKEN_PATH: &str = "/open-apis/authen/v2/oauth/token";
/// The accounts host's token endpoint (device flow: polls and refreshes).
pub const ACCOUNTS_TOKEN_PATH: &str = "/oauth/v3/token";
const USER_INFO_PATH: &str = "/open-apis/authen/v1/user_info";

/// A tenant or app access token and how long it has left.
#[derive(Clone, PartialEq, Eq)]
pub struct AppToken {
    pub token: String,
    /// Time left when the platform answered.
    pub expire: Duration,
}

impl fmt::Debug for AppToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppToken")
            .field("token", &Masked(&self.token))
            .field("expire", &self.expire)
            .finish()
    }
}

/// A user access token, normalised from the token endpoints' answers.
#[derive(Clone, PartialEq, Eq)]
pub struct UserToken {
    pub access_token: String,
    /// Absent when the user did not grant `offline_access` (v2).
    pub refresh_token: Option<String>,
    pub expires_in: Duration,
    pub refresh_expires_in: Option<Duration>,
    pub scope: Option<String>,
    pub token_type: String,
}

impl fmt::Debug for UserToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserToken")
            .field("access_token", &Masked(&self.access_token))
            .field("refresh_token", &self.refresh_token.as_deref().map(Masked))
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("scope", &self.scope)
            .field("token_type", &self.token_type)
            .finish()
    }
}

/// The flat RFC 6749-style answer of v2 and of the accounts host; the
/// alias absorbs the older name of the refresh lifetime.
#[derive(Deserialize)]
struct UserTokenAnswer {
    access_token: String,
    #[serde(default, deserialize_with = "opt_string")]
    refresh_token: Option<String>,
    expires_in: u64,
    #[serde(default, alias = "refresh_token_expires_in")]
    refresh_expires_in: Option<u64>,
    #[serde(default, deserialize_with = "opt_string")]
    scope: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    token_type: Option<String>,
}

impl From<UserTokenAnswer> for UserToken {
    fn from(a: UserTokenAnswer) -> Self {
        let refresh_token = a.refresh_token;
        Self {
            access_token: a.access_token,
            // A lifetime without a token to go with it means nothing.
            refresh_expires_in: refresh_token
                .as_ref()
                .and(a.refresh_expires_in)
                .map(Duration::from_secs),
            refresh_token,
            expires_in: Duration::from_secs(a.expires_in),
            scope: a.scope,
            token_type: a.token_type.unwrap_or_else(|| "Bearer".to_owned()),
        }
    }
}

/// The user's profile from `GET /open-apis/authen/v1/user_info`. Fields that
/// need scopes the user did not grant are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    pub open_id: String,
    #[serde(default, deserialize_with = "opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub en_name: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub avatar_url: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub union_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub user_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub enterprise_email: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub mobile: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub tenant_key: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub employee_no: Option<String>,
}

/// A PKCE code verifier (RFC 7636): kept with the pending session, sent
/// with the code exchange; its S256 challenge goes into the authorize URL.
#[derive(Clone, PartialEq, Eq)]
pub struct PkceVerifier(String);

impl PkceVerifier {
    /// 32 random bytes, base64url: 43 characters, the RFC's minimum length
    /// and 256 bits of entropy.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accept a stored verifier if it is one RFC 7636 allows:
    /// 43 to 128 characters of `[A-Za-z0-9-._~]`.
    pub fn parse(s: &str) -> Option<Self> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
        ((43..=128).contains(&s.len()) && s.chars().all(allowed)).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `BASE64URL(SHA256(verifier))`, for `code_challenge_method=S256`.
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for PkceVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PkceVerifier({})", Masked(&self.0))
    }
}

/// What goes into an authorize URL.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizeRequest<'a> {
    pub app_id: &'a str,
    pub redirect_uri: &'a str,
    /// Requested scopes (`offline_access` among them).
    pub scopes: &'a Scopes,
    /// Comes back on the redirect; ties it to the session.
    pub state: &'a RedirectState,
    pub pkce: &'a PkceVerifier,
}

/// The `state` of an authorize request: 256 random bits, base64url. It
/// travels through the user's browser and back to `/oauth/callback`, where
/// it finds the session; the service stores only its [hash](Self::hash),
/// and never uses the session id for it (that id appears in logs and card
/// values, so anyone who saw one could forge a callback).
#[derive(Clone, PartialEq, Eq)]
pub struct RedirectState(String);

impl RedirectState {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accept a `state` from a callback if it has the shape ours have
    /// (43 base64url characters); anything else cannot be one of ours.
    pub fn parse(s: &str) -> Option<Self> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_".contains(c);
        (s.len() == 43 && s.chars().all(allowed)).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Hex SHA-256: what the session row keeps.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for RedirectState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedirectState({})", Masked(&self.0))
    }
}

/// The token endpoint that issued a user token, and so the one its refresh
/// token goes back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFamily {
    /// The accounts host's `/oauth/v3/token`: device-flow tokens (the card
    /// and device logins).
    Accounts,
    /// `/open-apis/authen/v2/oauth/token`: redirect-flow tokens.
    OAuthV2,
}

impl From<AuthMethod> for TokenFamily {
    fn from(method: AuthMethod) -> Self {
        match method {
            AuthMethod::WebsocketCard | AuthMethod::DeviceCode => Self::Accounts,
            AuthMethod::OauthRedirect => Self::OAuthV2,
        }
    }
}

#[derive(Deserialize)]
struct TenantTokenAnswer {
    tenant_access_token: String,
    expire: u64,
}

#[derive(Deserialize)]
struct AppTokenAnswer {
    app_access_token: String,
    expire: u64,
}

impl LarkClient {
    /// `POST /open-apis/auth/v3/tenant_access_token/internal`.
    pub async fn tenant_access_token(
        &self,
        app_id: &str,
        app_secret: &str,
    ) -> Result<AppToken, LarkError> {
        let req = ApiRequest::post(TENANT_TOKEN_PATH)
            .json(json!({"app_id": app_id, "app_secret": app_secret}));
        let a: TenantTokenAnswer = self.flat(req).await?;
        Ok(AppToken {
            token: a.tenant_access_token,
            expire: Duration::from_secs(a.expire),
        })
    }

    /// `POST /open-apis/auth/v3/app_access_token/internal`.
    pub async fn app_access_token(
        &self,
        app_id: &str,
        app_secret: &str,
    ) -> Result<AppToken, LarkError> {
        let req = ApiRequest::post(APP_TOKEN_PATH)
            .json(json!({"app_id": app_id, "app_secret": app_secret}));
        let a: AppTokenAnswer = self.flat(req).await?;
        Ok(AppToken {
            token: a.app_access_token,
            expire: Duration::from_secs(a.expire),
        })
    }

    /// The v2 authorize URL on the accounts host (§5.1), where the user's
    /// browser is sent to grant access.
    pub fn authorize_url(&self, req: &AuthorizeRequest<'_>) -> String {
        let scope = req.scopes.to_param();
        let challenge = req.pkce.challenge();
        let params = [
            ("client_id", req.app_id),
            ("response_type", "code"),
            ("redirect_uri", req.redirect_uri),
            ("scope", &scope),
            ("state", req.state.as_str()),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ];
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", encode_component(v)))
            .collect();
        format!(
            "{}?{}",
            self.accounts_base().join(AUTHORIZE_PATH),
            query.join("&")
        )
    }

    /// v2 code exchange, for codes from the OAuth redirect flow:
    /// `redirect_uri` and `code_verifier` must match the authorize request.
    pub async fn exchange_code_v2(
        &self,
        app_id: &str,
        app_secret: &str,
        code: &str,
        redirect_uri: &str,
        code_verifier: &PkceVerifier,
    ) -> Result<UserToken, LarkError> {
        let body = json!({
            "grant_type": "authorization_code",
            "client_id": app_id,
            "client_secret": app_secret,
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier.as_str(),
        });
        let a: UserTokenAnswer = self
            .flat(ApiRequest::post(OAUTH_TOKEN_PATH).json(body))
            .await?;
        Ok(a.into())
    }

    /// Refresh at the endpoint family that issued the token. The old
    /// refresh token is spent whether or not the answer arrives: store the
    /// returned one before anything else. An answer without a refresh token
    /// keeps the presented one, as larksuite/cli does (`uat_client.go`).
    pub async fn refresh_user_token(
        &self,
        family: TokenFamily,
        app_id: &str,
        app_secret: &str,
        refresh_token: &str,
    ) -> Result<UserToken, LarkError> {
        let body = json!({
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": app_id,
            "client_secret": app_secret,
        });
        let req = match family {
            TokenFamily::Accounts => ApiRequest::post(ACCOUNTS_TOKEN_PATH).on_accounts(),
            TokenFamily::OAuthV2 => ApiRequest::post(OAUTH_TOKEN_PATH),
        };
        let a: UserTokenAnswer = self.flat(req.json(body)).await?;
        let mut token = UserToken::from(a);
        if token.refresh_token.is_none() {
            token.refresh_token = Some(refresh_token.to_owned());
        }
        Ok(token)
    }

    /// `GET /open-apis/authen/v1/user_info` as the user.
    pub async fn user_info(&self, user_access_token: &str) -> Result<UserInfo, LarkError> {
        self.envelope(ApiRequest::get(USER_INFO_PATH).bearer(user_access_token))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BaseUrl;

    #[test]
    fn pkce_challenge_matches_the_rfc_example() {
        // RFC 7636, appendix B.
        let verifier = PkceVerifier::parse("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
        assert_eq!(
            verifier.challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_verifiers_are_valid_and_distinct() {
        let a = PkceVerifier::generate();
        let b = PkceVerifier::generate();
        assert_eq!(a.as_str().len(), 43);
        assert!(PkceVerifier::parse(a.as_str()).is_some());
        assert_ne!(a, b);
        assert!(PkceVerifier::parse("short").is_none());
        assert!(PkceVerifier::parse(&"a+".repeat(30)).is_none());
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn authorize_url_carries_every_parameter() {
        let client = LarkClient::new(
            BaseUrl::parse("https://open.feishu.cn").unwrap(),
            BaseUrl::parse("https://accounts.feishu.cn").unwrap(),
        )
        .unwrap();
        let verifier = PkceVerifier::generate();
        let state = RedirectState::generate();
        let url = client.authorize_url(&AuthorizeRequest {
            app_id: "cli_a1b2c3d4e5f60718",
            redirect_uri: "https://svc.example.com/oauth/callback?x=1",
            scopes: &Scopes::parse("contact:user.base:readonly").unwrap(),
            state: &state,
            pkce: &verifier,
        });
        let parsed = url::Url::parse(&url).unwrap();
        assert_eq!(parsed.host_str(), Some("accounts.feishu.cn"));
        assert_eq!(parsed.path(), AUTHORIZE_PATH);
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], "cli_a1b2c3d4e5f60718");
        assert_eq!(q["response_type"], "code");
        assert_eq!(
            q["redirect_uri"],
            "https://svc.example.com/oauth/callback?x=1"
        );
        assert_eq!(q["scope"], "contact:user.base:readonly offline_access");
        assert_eq!(q["state"], state.as_str());
        assert_eq!(q["code_challenge"], verifier.challenge());
        assert_eq!(q["code_challenge_method"], "S256");
        assert!(url.contains("scope=contact%3Auser.base%3Areadonly%20offline_access"));
    }

    #[test]
    fn states_are_random_hashed_and_checked_for_shape() {
        let (a, b) = (RedirectState::generate(), RedirectState::generate());
        assert_ne!(a, b);
        assert_eq!(RedirectState::parse(a.as_str()), Some(a.clone()));
        assert_eq!(a.hash().len(), 64);
        assert_ne!(a.hash(), b.hash());
        assert!(!a.hash().contains(a.as_str()));
        assert!(RedirectState::parse("3f2c9a4e-6b1d-4c8e-9f00-1234567890ab").is_none());
        assert!(RedirectState::parse(&"a".repeat(44)).is_none());
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn each_method_refreshes_at_the_family_that_issued_its_tokens() {
        assert_eq!(
            TokenFamily::from(AuthMethod::WebsocketCard),
            TokenFamily::Accounts
        );
        assert_eq!(
            TokenFamily::from(AuthMethod::DeviceCode),
            TokenFamily::Accounts
        );
        assert_eq!(
            TokenFamily::from(AuthMethod::OauthRedirect),
            TokenFamily::OAuthV2
        );
    }

    #[test]
    fn no_refresh_token_without_offline_access() {
        let a: UserTokenAnswer = serde_json::from_str(
            r#"{"access_token":"u-1","expires_in":7200,"refresh_token_expires_in":5}"#,
        )
        .unwrap();
        let t = UserToken::from(a);
        assert_eq!(t.refresh_token, None);
        assert_eq!(t.refresh_expires_in, None);
        assert_eq!(t.token_type, "Bearer");
    }

    #[test]
    fn tokens_never_show_in_debug() {
        let t = UserToken {
            access_token: "u-7dCz4TabcdefghijkLMNOP".into(),
            refresh_token: Some("ur-9xYz12abcdefghijkLMNOP".into()),
            expires_in: Duration::from_secs(1),
            refresh_expires_in: None,
            scope: None,
            token_type: "Bearer".into(),
        };
        let shown = format!("{t:?}");
        assert!(shown.contains("u-7d***"));
        assert!(!shown.contains("abcdefghijk"));
    }

    #[test]
    fn user_info_tolerates_missing_and_empty_fields() {
        let info: UserInfo =
            serde_json::from_str(r#"{"open_id":"ou_1","name":"Ada","email":"","mobile":null}"#)
                .unwrap();
        assert_eq!(info.name.as_deref(), Some("Ada"));
        assert_eq!(info.email, None);
        assert_eq!(info.mobile, None);
    }
}
