//! `POST /admin/auth-cards`: create a session and send the user the card.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::auth::card::AuthCardOptions;
use crate::auth::card_auth::SendAuthCard;
use crate::http::error::ApiError;
use crate::http::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthCardRequest {
    /// The user's open_id (`ou_…`).
    pub user_id: String,
    #[serde(default)]
    pub options: AuthCardOptions,
}

/// `{session_id, message_id, expires_at}` with 201.
pub async fn send(
    state: web::Data<AppState>,
    body: web::Json<AuthCardRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let sent = state
        .card_auth
        .send(SendAuthCard {
            open_id: body.user_id,
            options: body.options,
        })
        .await??;
    Ok(HttpResponse::Created().json(sent))
}
