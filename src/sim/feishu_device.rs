//! Feishu's own device flow on the simulated accounts host
//! (`lark-open-platform.md` §8.4), as larksuite/cli
//! `internal/auth/device_flow.go` speaks it:
//! - `POST /oauth/v1/device_authorization` (`RequestDeviceAuthorization`):
//!   HTTP Basic `app_id:app_secret`, form `client_id` + `scope`; answers
//!   RFC 8628 fields (`device_code`, `user_code`, `verification_uri`,
//!   `verification_uri_complete`, `expires_in`, `interval`). The real
//!   verification page's address is not in any source we have
//!   (**unconfirmed**); ours is on the simulator's own origin.
//! - `POST /oauth/v3/token` (`PollDeviceToken`): form `grant_type`
//!   (device_code), `device_code`, `client_id`, `client_secret`; answers
//!   `authorization_pending`, `slow_down` (a poll sooner than the
//!   interval), `access_denied`, `expired_token`, or the flat token answer.
//!   The reference client ignores the HTTP status and reads `error`, so the
//!   status we answer (400) is immaterial.
//! - The same `POST /oauth/v3/token` with a JSON body: the `refresh_token`
//!   grant (larksuite/cli `uat_client.go`), see [`accounts_refresh`].
//!
//! Grants share the device server's book, so
//! [`DeviceServerState::approve_as`](super::device_server::DeviceServerState::approve_as),
//! `approve` and `deny` decide them and `advance` ages them. The tokens
//! are the approving account's, whoever the code was asked for: that is
//! what the service must check.
//!
//! Route names: `feishu_device_authorization`, `feishu_device_token`.

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::json;

use super::device_server::{form, intercept, origin, poll, DEVICE_CODE_GRANT};
use super::oauth_routes::{accounts_refresh, v2_token_answer};
use super::SimState;

pub const FEISHU_DEVICE_AUTHORIZATION_PATH: &str = "/oauth/v1/device_authorization";
pub const FEISHU_TOKEN_PATH: &str = "/oauth/v3/token";

/// Register the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        FEISHU_DEVICE_AUTHORIZATION_PATH,
        web::post().to(device_authorization),
    )
    .route(FEISHU_TOKEN_PATH, web::post().to(token));
}

fn invalid_client() -> HttpResponse {
    HttpResponse::Unauthorized().json(
        json!({"error": "invalid_client", "error_description": "app_id or app_secret is invalid"}),
    )
}

/// Route `feishu_device_authorization`.
async fn device_authorization(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> HttpResponse {
    if let Some(r) = intercept(&state, &req, &body, "feishu_device_authorization").await {
        return r;
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", state.app_id, state.app_secret))
    );
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let mut form = form(&body);
    if basic != Some(expected.as_str())
        || form.get("client_id").map(String::as_str) != Some(state.app_id.as_str())
    {
        return invalid_client();
    }
    let scope = form.remove("scope").filter(|s| !s.is_empty());
    let code = state.device.new_grant(&state.app_id, scope);
    HttpResponse::Ok().json(code.to_json(&origin(&state, &req)))
}

/// Route `feishu_device_token`: flat RFC 6749 answers (`code: 0` on success).
async fn token(req: HttpRequest, body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    if let Some(r) = intercept(&state, &req, &body, "feishu_device_token").await {
        return r;
    }
    // Refreshes come as JSON (larksuite/cli `uat_client.go`), polls as a form.
    let json = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        return match accounts_refresh(&state, &req, &body) {
            Ok(answer) => answer,
            Err(refusal) => actix_web::ResponseError::error_response(&refusal),
        };
    }
    let form = form(&body);
    let field = |k: &str| form.get(k).map_or("", String::as_str);
    if field("client_id") != state.app_id || field("client_secret") != state.app_secret {
        return invalid_client();
    }
    if field("grant_type") != DEVICE_CODE_GRANT {
        return HttpResponse::BadRequest()
            .json(json!({"code": 20001, "error": "unsupported_grant_type"}));
    }
    let device_code = field("device_code");
    let (status, answer) = poll(&state.device, &state.app_id, device_code);
    // The grant is the user's own: tokens the open platform accepts for
    // whoever approved it on the accounts site.
    let (status, answer) = match status {
        200 => {
            let scope = answer["scope"].as_str().unwrap_or_default();
            let approver = state.device.approver(device_code);
            match state
                .open_api
                .oauth
                .grant_device_login(scope, approver.as_deref())
            {
                Some(issued) => (200, v2_token_answer(&issued)),
                None => (
                    400,
                    json!({"error": "access_denied", "error_description": "nobody is signed in to approve"}),
                ),
            }
        }
        _ => (status, answer),
    };
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(status).json(answer)
}
