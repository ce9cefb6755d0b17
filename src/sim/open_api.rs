//! Simulated OpenAPI routes: app and tenant access tokens (§4 of the
//! protocol notes), plus what every simulated OpenAPI route shares: the
//! answer shapes, bearer checks and input validation.
//!
//! The other API areas live beside this file and hang off
//! [`OpenApiState`]: user OAuth in [`super::oauth`] (routes in
//! [`super::oauth_routes`]), IM in [`super::im`],
//! Aily in [`super::aily`]. [`routes`] registers all of them.
//!
//! Routes here, by fault name (for [`super::Recorder::inject`]):
//! `tenant_access_token`, `app_access_token`.
//!
//! Tokens carry their issue counter so tests can tell a cached token from a
//! refetched one. Every answer carries an `X-Tt-Logid` header, as the real
//! platform's do.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::state::lock;
use super::{aily, fault_response, im, oauth, oauth_routes, SimState};
use crate::lark::codes;

/// Lifetime the simulator gives app and tenant tokens, in seconds.
pub const APP_TOKEN_EXPIRE_SECONDS: i64 = 7200;

/// State of the simulated OpenAPI.
#[derive(Default)]
pub struct OpenApiState {
    issued: AtomicU64,
    /// Tokens issued so far, newest last; all remain valid until revoked.
    valid_tokens: Mutex<Vec<String>>,
    /// Users, authorization codes and user tokens.
    pub oauth: oauth::OAuthState,
    /// Messages the app sent.
    pub im: im::ImState,
    /// Aily sessions and runs.
    pub aily: aily::AilyState,
}

impl OpenApiState {
    /// Is this tenant/app token one the simulator issued?
    pub fn is_valid_app_token(&self, token: &str) -> bool {
        lock(&self.valid_tokens).iter().any(|t| t == token)
    }

    /// A live tenant access token (`t-...`)?
    pub fn is_valid_tenant_token(&self, token: &str) -> bool {
        token.starts_with("t-") && self.is_valid_app_token(token)
    }

    /// A live app access token (`a-...`)?
    pub fn is_valid_app_access_token(&self, token: &str) -> bool {
        token.starts_with("a-") && self.is_valid_app_token(token)
    }

    /// Invalidate every issued app/tenant token (the next call using one
    /// answers 99991663, or 99991664 where an app token is required).
    pub fn revoke_app_tokens(&self) {
        lock(&self.valid_tokens).clear();
    }

    fn issue(&self, prefix: &str) -> String {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("{prefix}-sim{n:06}");
        lock(&self.valid_tokens).push(token.clone());
        token
    }
}

/// Register the routes of every OpenAPI area.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/open-apis/auth/v3/tenant_access_token/internal",
        web::post().to(tenant_access_token),
    )
    .route(
        "/open-apis/auth/v3/app_access_token/internal",
        web::post().to(app_access_token),
    );
    oauth_routes::routes(cfg);
    im::routes(cfg);
    aily::routes(cfg);
}

/// What a simulated route answers.
pub(super) type Answer = Result<HttpResponse, Reject>;

/// A refusal in one of the platform's two error shapes: the envelope's
/// `{"code","msg"}`, or the v2 OAuth `{"code","error","error_description"}`.
#[derive(Debug)]
pub(super) struct Reject {
    status: u16,
    code: i64,
    msg: String,
    oauth_error: Option<&'static str>,
    /// The scope a 99991679 names, in `error.permission_violations`.
    missing_scope: Option<String>,
}

impl Reject {
    pub(super) fn new(status: u16, code: i64, msg: impl Into<String>) -> Self {
        Self {
            status,
            code,
            msg: msg.into(),
            oauth_error: None,
            missing_scope: None,
        }
    }

    /// 99991679: the user's token lacks `scope`. The body carries the
    /// scope as a permission violation, the error detail the SDKs model
    /// (oapi-sdk-go `core/apiresp.go`: `error.permission_violations[]` of
    /// `{type, subject, description}`); that the platform names the scope
    /// in `subject` for this code is unconfirmed, and the service also
    /// copes without it. The HTTP status is unconfirmed too; 400 is the
    /// platform's usual one for a coded refusal.
    pub(super) fn scope_not_granted(scope: &str) -> Self {
        Self {
            missing_scope: Some(scope.to_owned()),
            ..Self::bad(
                codes::SCOPE_NOT_GRANTED,
                format!(
                    "The user has not granted the app the scope {scope}; authorize again with it"
                ),
            )
        }
    }

    /// HTTP 400 with `code` and `msg`, the platform's usual refusal.
    pub(super) fn bad(code: i64, msg: impl Into<String>) -> Self {
        Self::new(400, code, msg)
    }

    /// A request field is missing or wrong.
    pub(super) fn field(msg: impl Into<String>) -> Self {
        Self::bad(codes::FIELD_VALIDATION_FAILED, msg)
    }

    /// The same refusal in the RFC 6749 shape of the v2 token endpoint,
    /// with `error` as its `error` (a refusal already in that shape keeps
    /// its own).
    pub(super) fn into_oauth(self, error: &'static str) -> Self {
        Self {
            oauth_error: self.oauth_error.or(Some(error)),
            ..self
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.msg)
    }
}

impl ResponseError for Reject {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST)
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self.oauth_error {
            Some(error) => {
                json!({"code": self.code, "error": error, "error_description": self.msg})
            }
            None => json!({"code": self.code, "msg": self.msg}),
        };
        let body = match &self.missing_scope {
            Some(scope) => {
                let mut body = body;
                body["error"] = json!({"permission_violations": [{
                    "type": "action_scope_required",
                    "subject": scope,
                    "description": "the user access token lacks this scope",
                }]});
                body
            }
            None => body,
        };
        HttpResponse::build(self.status_code())
            .insert_header(log_id())
            .json(body)
    }
}

/// A fresh `X-Tt-Logid` header.
fn log_id() -> (&'static str, String) {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    ("X-Tt-Logid", format!("sim{n:012}"))
}

/// HTTP 200 with a flat JSON body (token endpoints).
pub(super) fn flat(body: Value) -> HttpResponse {
    HttpResponse::Ok().insert_header(log_id()).json(body)
}

/// HTTP 200 with the standard envelope around `data`.
pub(super) fn ok(data: Value) -> HttpResponse {
    flat(json!({"code": 0, "msg": "success", "data": data}))
}

/// Record the request and answer a queued fault for `route`, if any.
pub(super) async fn enter(
    state: &SimState,
    route: &'static str,
    req: &HttpRequest,
    body: &[u8],
) -> Option<HttpResponse> {
    state.recorder.record(req, body);
    fault_response(state, route).await
}

/// The bearer token of the request, or the platform's 99991661.
pub(super) fn bearer(req: &HttpRequest) -> Result<&str, Reject> {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Reject::bad(
                codes::AUTHORIZATION_MISSING,
                "Authorization header missing or empty",
            )
        })
}

/// The request must carry a live tenant access token.
pub(super) fn require_tenant_token(state: &SimState, req: &HttpRequest) -> Result<(), Reject> {
    let token = bearer(req)?;
    if state.open_api.is_valid_tenant_token(token) {
        Ok(())
    } else {
        Err(Reject::bad(
            codes::ACCESS_TOKEN_INVALID,
            "Invalid access token for authorization. Please make a request with token attached.",
        ))
    }
}

/// A JSON object body sent as `application/json`, as the platform demands.
pub(super) fn json_body(
    req: &HttpRequest,
    body: &[u8],
) -> Result<serde_json::Map<String, Value>, Reject> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Err(Reject::field(format!(
            "content-type must be application/json, got `{content_type}`"
        )));
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(Reject::field("body is not a JSON object")),
    }
}

/// The query string, decoded.
pub(super) fn query_map(req: &HttpRequest) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

/// A required, non-empty string field.
pub(super) fn required<'a>(
    object: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Result<&'a str, Reject> {
    optional(object, key).ok_or_else(|| Reject::field(format!("{key} is required")))
}

/// An optional string field; empty counts as absent.
pub(super) fn optional<'a>(
    object: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Option<&'a str> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Milliseconds since the epoch, as the platform's string timestamps.
pub(super) fn now_ms() -> String {
    chrono::Utc::now().timestamp_millis().to_string()
}

#[derive(Deserialize)]
struct Credentials {
    app_id: String,
    app_secret: String,
}

fn check_credentials(state: &SimState, body: &[u8]) -> Result<(), Reject> {
    match serde_json::from_slice::<Credentials>(body) {
        Ok(c) if c.app_id == state.app_id && c.app_secret == state.app_secret => Ok(()),
        Ok(_) => Err(Reject::new(
            200,
            codes::APP_CREDENTIALS_INVALID,
            "app_id or app_secret is invalid",
        )),
        Err(e) => Err(Reject::bad(9499, format!("bad request: {e}"))),
    }
}

/// Route `tenant_access_token`.
async fn tenant_access_token(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> Answer {
    if let Some(r) = enter(&state, "tenant_access_token", &req, &body).await {
        return Ok(r);
    }
    check_credentials(&state, &body)?;
    let token = state.open_api.issue("t");
    Ok(flat(
        json!({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": APP_TOKEN_EXPIRE_SECONDS}),
    ))
}

/// Route `app_access_token`.
async fn app_access_token(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> Answer {
    if let Some(r) = enter(&state, "app_access_token", &req, &body).await {
        return Ok(r);
    }
    check_credentials(&state, &body)?;
    let app = state.open_api.issue("a");
    let tenant = state.open_api.issue("t");
    Ok(flat(
        json!({"code": 0, "msg": "ok", "app_access_token": app, "expire": APP_TOKEN_EXPIRE_SECONDS, "tenant_access_token": tenant}),
    ))
}
