//! `GET /oauth/callback?code&state`: the end of the OAuth redirect flow
//! (see `auth::redirect`).
//!
//! `state` must be one the service issued for a pending `oauth_redirect`
//! session; anything else is refused without writing (a malformed state is
//! refused before it is even looked up), and no refusal fails the session.

use crate::auth::card_auth::CompleteOAuth;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::lark::auth_api::RedirectState;
use actix_web::{get, web, HttpResponse};
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    /// Set by the authorize page when the user declined.
    pub error: Option<String>,
}

/// Where the authorize page sends the user's browser back with the code.
#[utoipa::path(tag = "platform", params(CallbackQuery), responses(
    (status = 200, description = "authorized; a page the user can close", content_type = "text/html", body = String),
    (status = 400, description = "declined, bad, unknown or already used state, missing code, a code the platform refused", body = crate::http::error::ErrorBody),
    (status = 409, description = "the session is no longer pending, or another account approved", body = crate::http::error::ErrorBody),
    (status = 502, description = "the platform refused the code", body = crate::http::error::ErrorBody),
))]
#[get("/oauth/callback")]
pub async fn callback(
    state: web::Data<AppState>,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    if let Some(error) = query.error {
        return Err(ApiError::bad_request(
            "authorization_declined",
            format!("the authorize page answered `{error}`"),
        ));
    }
    let redirect_state = query
        .state
        .as_deref()
        .and_then(RedirectState::parse)
        .ok_or_else(|| {
            crate::metrics::bad_input("oauth", "bad_state");
            ApiError::bad_request(
                "bad_state",
                "`state` is missing or is not one this service issued",
            )
        })?;
    let code = query
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing_code", "`code` is missing"))?;
    let session = state
        .card_auth
        .send(CompleteOAuth {
            code,
            state: redirect_state,
        })
        .await??;
    let name = html_escape(session.user_name.as_deref().unwrap_or("you"));
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><meta charset=utf-8><title>Authorized</title>\
             <p>Authorized as {name}. You can close this window.</p>"
        )))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
