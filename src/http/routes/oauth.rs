//! `GET /oauth/callback?code&state`: the end of the OAuth redirect flow.
//!
//! `state` must name a pending session; anything else is refused before
//! the database is written (a malformed state is refused before it is even
//! looked up).

use actix_web::{get, web, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::card_auth::CompleteOAuth;
use crate::auth::error::AuthError;
use crate::http::error::ApiError;
use crate::http::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    /// Set by the authorize page when the user declined.
    pub error: Option<String>,
}

/// Where the authorize page sends the user back; `state` is the session id.
#[utoipa::path(tag = "platform", params(CallbackQuery), responses(
    (status = 200, description = "authorized; a page the user can close", content_type = "text/html", body = String),
    (status = 400, description = "declined, bad or unknown state, missing code", body = crate::http::error::ErrorBody),
    (status = 409, description = "the session is no longer pending", body = crate::http::error::ErrorBody),
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
    let session_id = query
        .state
        .as_deref()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| {
            crate::metrics::bad_input("oauth", "bad_state");
            ApiError::bad_request("bad_state", "`state` is missing or is not a session id")
        })?;
    let code = query
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing_code", "`code` is missing"))?;
    let session = state
        .card_auth
        .send(CompleteOAuth {
            code,
            state: session_id,
        })
        .await?
        .map_err(|e| match e {
            AuthError::UnknownSession(_) => {
                crate::metrics::bad_input("oauth", "unknown_state");
                ApiError::bad_request(
                    "unknown_state",
                    "`state` does not name a pending authorization",
                )
            }
            other => ApiError::from(other),
        })?;
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
