//! Simulated user OAuth routes (§5 of the protocol notes), over the
//! bookkeeping in [`super::oauth`].
//!
//! Routes, by fault name:
//! - `authorize`: `GET /open-apis/authen/v1/authorize` (the accounts page).
//!   Redirects (302) to `redirect_uri?code&state` for the user a test
//!   [signed in](super::oauth::OAuthState::sign_in); answers a plain login
//!   page without one.
//! - `oauth_token`: the v2 endpoint (credentials in the body, flat answers,
//!   errors in the RFC 6749 shape).
//! - `user_info`: `GET /open-apis/authen/v1/user_info` (user token bearer).
//!
//! The accounts host's `refresh_token` grant ([`accounts_refresh`]) is
//! answered on the device flow's token route (`super::feishu_device`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::oauth::{Generation, Issued};
use super::open_api::{
    bearer, enter, flat, json_body, ok, optional, query_map, required, Answer, Reject,
};
use super::SimState;
use crate::lark::codes;

/// Register the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/open-apis/authen/v1/authorize", web::get().to(authorize))
        .route(
            "/open-apis/authen/v2/oauth/token",
            web::post().to(oauth_token),
        )
        .route("/open-apis/authen/v1/user_info", web::get().to(user_info));
}

/// Route `authorize`.
async fn authorize(req: HttpRequest, state: web::Data<SimState>) -> Answer {
    if let Some(r) = enter(&state, "authorize", &req, &[]).await {
        return Ok(r);
    }
    let query = query_map(&req);
    let param = |key: &str| query.get(key).map(String::as_str).filter(|v| !v.is_empty());
    if param("client_id") != Some(state.app_id.as_str()) {
        return Err(Reject::bad(
            codes::OAUTH_INVALID_CLIENT,
            "unknown client_id",
        ));
    }
    let redirect_uri = param("redirect_uri")
        .ok_or_else(|| Reject::bad(codes::OAUTH_INVALID_REQUEST, "redirect_uri is required"))?;
    let mut target = url::Url::parse(redirect_uri)
        .map_err(|_| Reject::bad(codes::OAUTH_INVALID_REQUEST, "redirect_uri is not a URL"))?;
    let challenge = param("code_challenge");
    if challenge.is_some() && param("code_challenge_method") != Some("S256") {
        return Err(Reject::bad(
            codes::OAUTH_INVALID_REQUEST,
            "code_challenge_method must be S256",
        ));
    }
    let scope = param("scope").unwrap_or("");
    let Some(code) = state
        .open_api
        .oauth
        .authorize(scope, redirect_uri, challenge)
    else {
        return Ok(HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body("<html><body>Log in to continue</body></html>"));
    };
    {
        let mut pairs = target.query_pairs_mut();
        pairs.append_pair("code", &code);
        if let Some(s) = param("state") {
            pairs.append_pair("state", s);
        }
    }
    Ok(HttpResponse::Found()
        .insert_header(("location", target.as_str()))
        .finish())
}

fn token_data(issued: &Issued) -> Value {
    let mut data = json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
    });
    if let Some(refresh) = &issued.refresh_token {
        data["refresh_token"] = json!(refresh);
    }
    data
}

/// Route `oauth_token` (v2): errors in the RFC 6749 shape.
async fn oauth_token(req: HttpRequest, body: web::Bytes, state: web::Data<SimState>) -> Answer {
    if let Some(r) = enter(&state, "oauth_token", &req, &body).await {
        return Ok(r);
    }
    let body = json_body(&req, &body).map_err(|r| r.into_oauth("invalid_request"))?;
    let field = |key| required(&body, key).map_err(|r| r.into_oauth("invalid_request"));
    let (client_id, client_secret) = (field("client_id")?, field("client_secret")?);
    if client_id != state.app_id || client_secret != state.app_secret {
        return Err(Reject::bad(
            codes::OAUTH_INVALID_CLIENT,
            "client_id or client_secret is invalid",
        )
        .into_oauth("invalid_client"));
    }
    let oauth = &state.open_api.oauth;
    let issued = match field("grant_type")? {
        "authorization_code" => oauth.exchange_code_v2(
            field("code")?,
            optional(&body, "redirect_uri"),
            optional(&body, "code_verifier"),
        ),
        "refresh_token" => oauth.refresh(field("refresh_token")?, Generation::V2),
        other => {
            return Err(Reject::bad(
                codes::OAUTH_INVALID_REQUEST,
                format!("grant_type `{other}` is not supported"),
            )
            .into_oauth("unsupported_grant_type"))
        }
    }
    .map_err(|r| r.into_oauth("invalid_grant"))?;
    Ok(flat(v2_token_answer(&issued)))
}

/// The flat v2 token answer (`code: 0` on success), shared with Feishu's
/// device flow, which answers on the same shape.
pub(super) fn v2_token_answer(issued: &Issued) -> Value {
    let mut answer = token_data(issued);
    answer["code"] = json!(0);
    if issued.refresh_token.is_some() {
        answer["refresh_token_expires_in"] = json!(issued.refresh_expires_in);
    }
    answer
}

/// Route `user_info`.
async fn user_info(req: HttpRequest, state: web::Data<SimState>) -> Answer {
    if let Some(r) = enter(&state, "user_info", &req, &[]).await {
        return Ok(r);
    }
    Ok(ok(state.open_api.oauth.profile(bearer(&req)?)?))
}

/// The accounts host's `refresh_token` grant on `POST /oauth/v3/token`, as
/// larksuite/cli sends it (`internal/auth/uat_client.go`, `refreshOnce`): a
/// JSON body `{grant_type, refresh_token, client_id, client_secret}`; the
/// answer is flat like v2's (`refreshResponse`: `code`, `access_token`,
/// `expires_in`, `refresh_token`, `refresh_token_expires_in`, `scope`,
/// `error`, `error_description`). Only tokens this host issued refresh
/// here; each is single use and rotates.
pub(super) fn accounts_refresh(state: &SimState, req: &HttpRequest, body: &[u8]) -> Answer {
    let body = json_body(req, body).map_err(|r| r.into_oauth("invalid_request"))?;
    let field = |key| required(&body, key).map_err(|r| r.into_oauth("invalid_request"));
    let (client_id, client_secret) = (field("client_id")?, field("client_secret")?);
    if client_id != state.app_id || client_secret != state.app_secret {
        return Err(Reject::bad(
            codes::OAUTH_INVALID_CLIENT,
            "client_id or client_secret is invalid",
        )
        .into_oauth("invalid_client"));
    }
    if field("grant_type")? != "refresh_token" {
        return Err(Reject::bad(
            codes::OAUTH_INVALID_REQUEST,
            "a JSON body carries the refresh_token grant only",
        )
        .into_oauth("unsupported_grant_type"));
    }
    let issued = state
        .open_api
        .oauth
        .refresh(field("refresh_token")?, Generation::Accounts)
        .map_err(|r| r.into_oauth("invalid_grant"))?;
    Ok(flat(v2_token_answer(&issued)))
}
