//! `LarkClient`: one `reqwest` client for every open-platform call, and the
//! one place that turns the platform's answers into `Result<T, LarkError>`.
//!
//! The platform wraps answers in three shapes (§0 of the protocol notes):
//! the standard envelope `{"code":0,"msg","data":{..}}`, the flat token
//! answers with top-level fields, and the RFC 6749-style v2 OAuth answer
//! (top-level fields plus `code`, `error`, `error_description`). A failure
//! can hide in any of them, often behind HTTP 200, so every call goes
//! through one interpreter, which reads the body before the status.
//!
//! The client does not retry: whether a call is safe to repeat (sending a
//! message is not, without a `uuid`) is the caller's decision, made with
//! [`LarkError::is_transient`], [`LarkError::is_token_invalid`] and
//! [`LarkError::needs_reauth`].

use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::codes;
use crate::domain::BaseUrl;

/// Time allowed to open a TCP/TLS connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a whole request, body included. The platform answers
/// in well under a second; anything slower is treated as a transport fault.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to wait after a rate limit that did not say how long.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// How much of an unexpected body an error keeps, in characters.
const BODY_PREFIX_CHARS: usize = 200;

/// A failed call to the open platform.
#[derive(Debug, thiserror::Error)]
pub enum LarkError {
    /// The platform answered with a non-zero `code`.
    #[error("open platform error {code}: {msg}{}", log_suffix(.log_id))]
    Api {
        code: i64,
        msg: String,
        log_id: Option<String>,
    },
    /// 99991679: the user's token lacks a scope the call needs; only a new
    /// authorization asking for it helps. `scopes` are the ones the
    /// platform named (`error.permission_violations[].subject`), possibly
    /// none.
    #[error("the user has not granted {}: {msg}{}", scope_list(.scopes), log_suffix(.log_id))]
    ScopeNotGranted {
        scopes: Vec<String>,
        msg: String,
        log_id: Option<String>,
    },
    /// HTTP 429 or code 99991400; wait `retry_after` before the next call.
    #[error("rate limited by the open platform; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// A 5xx, or a body that is not a JSON object (an HTML error page, a
    /// proxy's answer, garbage).
    #[error("HTTP {status} from the open platform: {body_prefix:?}{}", log_suffix(.log_id))]
    Http {
        status: u16,
        body_prefix: String,
        log_id: Option<String>,
    },
    /// JSON that does not have the fields the endpoint promises.
    #[error("unexpected answer from the open platform: {source}{}", log_suffix(.log_id))]
    Decode {
        #[source]
        source: serde_json::Error,
        log_id: Option<String>,
    },
    /// Could not connect, or the request timed out.
    #[error("could not reach the open platform: {0}")]
    Transport(#[from] reqwest::Error),
}

fn scope_list(scopes: &[String]) -> String {
    if scopes.is_empty() {
        "a scope this call needs".to_owned()
    } else {
        format!("the scope {}", scopes.join(", "))
    }
}

fn log_suffix(log_id: &Option<String>) -> String {
    log_id
        .as_deref()
        .map(|id| format!(" (log id {id})"))
        .unwrap_or_default()
}

impl LarkError {
    /// The platform's error code, when it sent one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Api { code, .. } => Some(*code),
            Self::ScopeNotGranted { .. } => Some(codes::SCOPE_NOT_GRANTED),
            Self::RateLimited { .. } => Some(codes::RATE_LIMITED),
            _ => None,
        }
    }

    /// The `X-Tt-Logid` of the failed call, to quote to platform support.
    pub fn log_id(&self) -> Option<&str> {
        match self {
            Self::Api { log_id, .. }
            | Self::ScopeNotGranted { log_id, .. }
            | Self::Http { log_id, .. }
            | Self::Decode { log_id, .. } => log_id.as_deref(),
            _ => None,
        }
    }

    /// The bearer token was refused: drop it, get a new one, retry once.
    /// HTTP 401 without a platform code only comes from the gateway
    /// refusing the bearer (seen with user tokens), so it counts too.
    pub fn is_token_invalid(&self) -> bool {
        match self {
            Self::Api { code, .. } => codes::TOKEN_INVALID.contains(code),
            Self::Http { status, .. } => *status == 401,
            _ => false,
        }
    }

    /// Worth retrying later with the same input: the network, the
    /// platform's own faults, and rate limits.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport(e) => !e.is_builder(),
            Self::Http { status, .. } => *status >= 500,
            Self::Api { code, .. } => codes::REFRESH_TRANSIENT.contains(code),
            Self::RateLimited { .. } => true,
            Self::Decode { .. } | Self::ScopeNotGranted { .. } => false,
        }
    }

    /// The user's refresh token is spent for good: only a new
    /// authorization helps.
    pub fn needs_reauth(&self) -> bool {
        matches!(self, Self::Api { code, .. } if codes::NEEDS_REAUTH.contains(code))
    }
}

/// One call to make: method, path under the open-platform base, optional
/// bearer token, query and JSON body. Deliberately not `Debug`: bodies
/// carry secrets.
pub struct ApiRequest<'a> {
    method: Method,
    host: Host,
    path: String,
    bearer: Option<&'a str>,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
}

impl<'a> ApiRequest<'a> {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            host: Host::Open,
            path: path.into(),
            bearer: None,
            query: Vec::new(),
            body: None,
        }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }

    pub fn patch(path: impl Into<String>) -> Self {
        Self::new(Method::PATCH, path)
    }

    /// Send it to the accounts host instead of the open platform (the
    /// device flow's token endpoint lives there).
    pub fn on_accounts(mut self) -> Self {
        self.host = Host::Accounts;
        self
    }

    /// Send `Authorization: Bearer <token>`.
    pub fn bearer(mut self, token: &'a str) -> Self {
        self.bearer = Some(token);
        self
    }

    pub fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    /// Send this JSON body with `Content-Type: application/json; charset=utf-8`.
    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

/// Which base URL a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    Open,
    Accounts,
}

/// How a successful answer carries its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `{"code":0,"msg":..,"data":{..}}`: the payload is `data`.
    Envelope,
    /// Token endpoints: the payload is the whole object.
    Flat,
}

/// The open-platform HTTP client. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct LarkClient {
    http: reqwest::Client,
    open_base: BaseUrl,
    accounts_base: BaseUrl,
}

impl LarkClient {
    /// A client for these bases: `open_base` serves `/open-apis/...`,
    /// `accounts_base` the OAuth pages users' browsers visit.
    pub fn new(open_base: BaseUrl, accounts_base: BaseUrl) -> Result<Self, LarkError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // API calls never redirect; following one would hand the bearer
            // token to whatever host the redirect names.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("lark-service/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            open_base,
            accounts_base,
        })
    }

    pub fn open_base(&self) -> &BaseUrl {
        &self.open_base
    }

    pub fn accounts_base(&self) -> &BaseUrl {
        &self.accounts_base
    }

    /// Make a call whose answer is the standard envelope; returns `data`.
    pub async fn envelope<T: DeserializeOwned>(&self, req: ApiRequest<'_>) -> Result<T, LarkError> {
        self.execute(req, Shape::Envelope).await
    }

    /// Make a call whose answer is a flat object (token endpoints).
    pub async fn flat<T: DeserializeOwned>(&self, req: ApiRequest<'_>) -> Result<T, LarkError> {
        self.execute(req, Shape::Flat).await
    }

    async fn execute<T: DeserializeOwned>(
        &self,
        req: ApiRequest<'_>,
        shape: Shape,
    ) -> Result<T, LarkError> {
        let base = match req.host {
            Host::Open => &self.open_base,
            Host::Accounts => &self.accounts_base,
        };
        let mut builder = self.http.request(req.method.clone(), base.join(&req.path));
        if !req.query.is_empty() {
            builder = builder.query(&req.query);
        }
        if let Some(token) = req.bearer {
            builder = builder.bearer_auth(token);
        }
        if let Some(body) = &req.body {
            builder = builder
                .header(CONTENT_TYPE, "application/json; charset=utf-8")
                .body(body.to_string());
        }
        let response = builder.send().await?;
        let meta = ResponseMeta::from_parts(response.status().as_u16(), response.headers());
        let body = response.bytes().await?;
        tracing::debug!(
            method = %req.method,
            path = %req.path,
            status = meta.status,
            log_id = meta.log_id.as_deref().unwrap_or(""),
            "open platform call"
        );
        interpret(meta, &body, shape)
    }
}

/// What [`interpret`] needs from the response head.
#[derive(Debug, Clone)]
struct ResponseMeta {
    status: u16,
    log_id: Option<String>,
    retry_after: Duration,
}

impl ResponseMeta {
    fn from_parts(status: u16, headers: &HeaderMap) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let seconds = |name: &str| text(name).and_then(|v| v.trim().parse::<u64>().ok());
        Self {
            status,
            log_id: text("x-tt-logid")
                .or_else(|| text("x-request-id"))
                .map(str::to_owned),
            retry_after: seconds("x-ogw-ratelimit-reset")
                .or_else(|| seconds("retry-after"))
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_RETRY_AFTER),
        }
    }
}

/// Turn a response into the payload or the error it really is. The body
/// decides before the status does, because the platform reports most
/// failures as HTTP 200 or 400 with a code.
fn interpret<T: DeserializeOwned>(
    meta: ResponseMeta,
    body: &[u8],
    shape: Shape,
) -> Result<T, LarkError> {
    let ResponseMeta {
        status,
        log_id,
        retry_after,
    } = meta;
    let http_error = |log_id| LarkError::Http {
        status,
        body_prefix: body_prefix(body),
        log_id,
    };
    if status == 429 {
        return Err(LarkError::RateLimited { retry_after });
    }
    let mut object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        _ => return Err(http_error(log_id)),
    };
    let code = object.get("code").and_then(Value::as_i64).unwrap_or(0);
    if code == codes::RATE_LIMITED {
        return Err(LarkError::RateLimited { retry_after });
    }
    if status >= 500 {
        return Err(http_error(log_id));
    }
    if code == codes::SCOPE_NOT_GRANTED {
        return Err(LarkError::ScopeNotGranted {
            scopes: violated_scopes(&object),
            msg: error_message(&object),
            log_id,
        });
    }
    if code != 0 {
        return Err(LarkError::Api {
            code,
            msg: error_message(&object),
            log_id,
        });
    }
    if !(200..300).contains(&status) {
        return Err(http_error(log_id));
    }
    let payload = match shape {
        Shape::Envelope => object.remove("data").unwrap_or(Value::Null),
        Shape::Flat => Value::Object(object),
    };
    serde_json::from_value(payload).map_err(|source| LarkError::Decode { source, log_id })
}

/// The scopes a refusal names: the `subject` of each
/// `error.permission_violations` entry, the shape the SDKs model
/// (oapi-sdk-go `core/apiresp.go`, `CodeErrorPermissionViolation`). Whether
/// 99991679 always fills it in is unconfirmed, so subjects that are not
/// scope names (`x:y`) are skipped and none at all is an answer too.
fn violated_scopes(object: &serde_json::Map<String, Value>) -> Vec<String> {
    let violations = object
        .get("error")
        .and_then(|e| e.get("permission_violations"))
        .and_then(Value::as_array);
    let mut scopes: Vec<String> = Vec::new();
    for subject in violations
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("subject")?.as_str())
    {
        let is_scope = subject.contains(':')
            && subject
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ":._-".contains(c));
        if is_scope && !scopes.iter().any(|s| s == subject) {
            scopes.push(subject.to_owned());
        }
    }
    scopes
}

/// `msg` of the envelope, or `error: error_description` of the OAuth shape.
fn error_message(object: &serde_json::Map<String, Value>) -> String {
    let text = |key| {
        object
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    match (text("msg"), text("error"), text("error_description")) {
        (Some(msg), _, _) => msg.to_owned(),
        (None, Some(error), Some(description)) => format!("{error}: {description}"),
        (None, error, description) => error.or(description).unwrap_or("").to_owned(),
    }
}

fn body_prefix(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .take(BODY_PREFIX_CHARS)
        .collect()
}

/// Percent-encode `s` for a URL path segment or query value: everything
/// but RFC 3986 unreserved characters. Ids from events and users go into
/// paths, and must not be able to add segments of their own.
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Data {
        value: i64,
    }

    fn meta(status: u16) -> ResponseMeta {
        ResponseMeta {
            status,
            log_id: Some("log-1".into()),
            retry_after: Duration::from_secs(7),
        }
    }

    fn envelope(status: u16, body: &str) -> Result<Data, LarkError> {
        interpret(meta(status), body.as_bytes(), Shape::Envelope)
    }

    #[test]
    fn envelope_data_is_returned() {
        let data = envelope(200, r#"{"code":0,"msg":"success","data":{"value":3}}"#).unwrap();
        assert_eq!(data, Data { value: 3 });
    }

    #[test]
    fn flat_answers_are_read_whole() {
        let data: Data = interpret(meta(200), br#"{"code":0,"value":4}"#, Shape::Flat).unwrap();
        assert_eq!(data, Data { value: 4 });
    }

    #[test]
    fn non_zero_code_is_an_api_error_even_with_http_200() {
        let err = envelope(200, r#"{"code":99991663,"msg":"invalid token"}"#).unwrap_err();
        assert!(
            matches!(&err, LarkError::Api { code: 99991663, msg, .. } if msg == "invalid token")
        );
        assert!(err.is_token_invalid());
        assert_eq!(err.log_id(), Some("log-1"));
        assert!(err.to_string().contains("log id log-1"));
    }

    #[test]
    fn oauth_errors_keep_their_description() {
        let err = envelope(
            400,
            r#"{"code":20073,"error":"invalid_grant","error_description":"refresh token used"}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&err, LarkError::Api { code: 20073, msg, .. } if msg == "invalid_grant: refresh token used")
        );
        assert!(err.needs_reauth());
        assert!(!err.is_transient());
    }

    #[test]
    fn a_scope_not_granted_names_the_scopes_the_platform_names() {
        let err = envelope(
            400,
            r#"{"code":99991679,"msg":"user not authorized scope","error":{"permission_violations":[{"type":"action_privilege_required","subject":"aily:run:write"},{"subject":"not a scope"},{"subject":"aily:run:write"}]}}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&err, LarkError::ScopeNotGranted { scopes, .. } if scopes == &["aily:run:write"])
        );
        assert_eq!(err.code(), Some(99991679));
        assert!(!err.is_transient() && !err.is_token_invalid() && !err.needs_reauth());
        assert!(err.to_string().contains("aily:run:write"), "{err}");
        let bare = envelope(400, r#"{"code":99991679,"msg":"no scope"}"#).unwrap_err();
        assert!(matches!(&bare, LarkError::ScopeNotGranted { scopes, .. } if scopes.is_empty()));
    }

    #[test]
    fn rate_limits_are_recognised_by_status_or_code() {
        let by_status = envelope(429, "<html>slow down</html>").unwrap_err();
        assert!(
            matches!(by_status, LarkError::RateLimited { retry_after } if retry_after == Duration::from_secs(7))
        );
        let by_code = envelope(400, r#"{"code":99991400,"msg":"limit"}"#).unwrap_err();
        assert!(matches!(by_code, LarkError::RateLimited { .. }));
        assert!(by_code.is_transient());
    }

    #[test]
    fn garbage_and_html_are_http_errors() {
        for (status, body) in [
            (200, "<html>oops</html>"),
            (502, "bad gateway"),
            (200, "[1,2]"),
            (200, ""),
        ] {
            let err = envelope(status, body).unwrap_err();
            assert!(
                matches!(err, LarkError::Http { status: s, .. } if s == status),
                "{body}"
            );
        }
        assert!(envelope(502, "x").unwrap_err().is_transient());
        assert!(!envelope(200, "x").unwrap_err().is_transient());
    }

    #[test]
    fn server_errors_are_http_errors_even_with_json() {
        let err = envelope(500, r#"{"code":1000040343,"msg":"internal"}"#).unwrap_err();
        assert!(matches!(err, LarkError::Http { status: 500, .. }));
        assert!(err.is_transient());
    }

    #[test]
    fn json_of_the_wrong_shape_is_a_decode_error() {
        let err = envelope(200, r#"{"code":0,"data":{"value":"three"}}"#).unwrap_err();
        assert!(matches!(err, LarkError::Decode { .. }));
        let err = envelope(200, r#"{"code":0,"msg":"no data"}"#).unwrap_err();
        assert!(matches!(err, LarkError::Decode { .. }));
    }

    #[test]
    fn client_errors_without_a_code_are_http_errors() {
        let err = envelope(401, r#"{"message":"unauthorized"}"#).unwrap_err();
        assert!(matches!(err, LarkError::Http { status: 401, .. }));
        assert!(err.is_token_invalid());
    }

    #[test]
    fn body_prefix_is_bounded_and_utf8_safe() {
        let body = "é".repeat(1000);
        assert_eq!(
            body_prefix(body.as_bytes()).chars().count(),
            BODY_PREFIX_CHARS
        );
    }

    #[test]
    fn classifier_codes() {
        let api = |code| LarkError::Api {
            code,
            msg: String::new(),
            log_id: None,
        };
        for code in [99991663, 99991664, 99991668, 99991677] {
            assert!(api(code).is_token_invalid());
        }
        for code in [20024, 20026, 20037, 20064, 20073, 20074] {
            assert!(api(code).needs_reauth());
            assert!(!api(code).is_token_invalid());
            assert!(!api(code).is_transient());
        }
        for code in [20050, 20072] {
            assert!(api(code).is_transient());
            assert!(!api(code).needs_reauth());
        }
        assert!(!api(230001).is_transient());
    }

    #[test]
    fn rate_limit_headers_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ogw-ratelimit-reset", "12".parse().unwrap());
        headers.insert("X-Tt-Logid", "abc".parse().unwrap());
        let meta = ResponseMeta::from_parts(429, &headers);
        assert_eq!(meta.retry_after, Duration::from_secs(12));
        assert_eq!(meta.log_id.as_deref(), Some("abc"));
        let meta = ResponseMeta::from_parts(429, &HeaderMap::new());
        assert_eq!(meta.retry_after, DEFAULT_RETRY_AFTER);
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("om_1-2.3~x"), "om_1-2.3~x");
        assert_eq!(encode_component("../a b/é"), "..%2Fa%20b%2F%C3%A9");
    }
}
