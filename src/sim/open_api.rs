//! Simulated OpenAPI routes: app and tenant access tokens (§4 of the
//! protocol notes). Tokens carry their issue counter so tests can tell a
//! cached token from a refetched one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::state::lock;
use super::{fault_response, SimState};

/// Lifetime the simulator gives app and tenant tokens, in seconds.
pub const APP_TOKEN_EXPIRE_SECONDS: i64 = 7200;

/// State of the token routes.
#[derive(Default)]
pub struct OpenApiState {
    issued: AtomicU64,
    /// Tokens issued so far, newest last; all remain valid until revoked.
    valid_tokens: Mutex<Vec<String>>,
}

impl OpenApiState {
    /// Is this tenant/app token one the simulator issued?
    pub fn is_valid_app_token(&self, token: &str) -> bool {
        lock(&self.valid_tokens).iter().any(|t| t == token)
    }

    /// Invalidate every issued app/tenant token (the next call using one
    /// answers 99991663).
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

/// Register the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/open-apis/auth/v3/tenant_access_token/internal",
        web::post().to(tenant_access_token),
    )
    .route(
        "/open-apis/auth/v3/app_access_token/internal",
        web::post().to(app_access_token),
    );
}

#[derive(Deserialize)]
struct Credentials {
    app_id: String,
    app_secret: String,
}

fn check_credentials(state: &SimState, body: &[u8]) -> Result<(), Box<HttpResponse>> {
    match serde_json::from_slice::<Credentials>(body) {
        Ok(c) if c.app_id == state.app_id && c.app_secret == state.app_secret => Ok(()),
        Ok(_) => Err(Box::new(HttpResponse::Ok().json(
            json!({"code": 99991543, "msg": "app_id or app_secret is invalid"}),
        ))),
        Err(e) => Err(Box::new(
            HttpResponse::BadRequest()
                .json(json!({"code": 9499, "msg": format!("bad request: {e}")})),
        )),
    }
}

/// Route `tenant_access_token`.
async fn tenant_access_token(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> HttpResponse {
    state.recorder.record(&req, &body);
    if let Some(r) = fault_response(&state, "tenant_access_token").await {
        return r;
    }
    if let Err(r) = check_credentials(&state, &body) {
        return *r;
    }
    let token = state.open_api.issue("t");
    HttpResponse::Ok().json(json!({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": APP_TOKEN_EXPIRE_SECONDS}))
}

/// Route `app_access_token`.
async fn app_access_token(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> HttpResponse {
    state.recorder.record(&req, &body);
    if let Some(r) = fault_response(&state, "app_access_token").await {
        return r;
    }
    if let Err(r) = check_credentials(&state, &body) {
        return *r;
    }
    let app = state.open_api.issue("a");
    let tenant = state.open_api.issue("t");
    HttpResponse::Ok().json(json!({"code": 0, "msg": "ok", "app_access_token": app, "expire": APP_TOKEN_EXPIRE_SECONDS, "tenant_access_token": tenant}))
}
