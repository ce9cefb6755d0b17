//! `POST /admin/auth-cards`: create a session and send the user the card.

use actix_web::{post, web, HttpResponse};
use serde::Deserialize;

use crate::auth::card::AuthCardOptions;
use crate::auth::card_auth::SendAuthCard;
use crate::http::error::ApiError;
use crate::http::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthCardRequest {
    /// The user's open_id (`ou_…`).
    pub user_id: String,
    #[serde(default)]
    pub options: AuthCardOptions,
}

/// Create a pending session and send the user the authorization card.
#[utoipa::path(tag = "admin", security(("bearer" = [])), request_body = AuthCardRequest, responses(
    (status = 201, body = crate::auth::card_auth::AuthCardSent),
    (status = 400, description = "bad options or body", body = crate::http::error::ErrorBody),
    (status = 401, body = crate::http::error::ErrorBody),
    (status = 502, description = "the platform refused the message", body = crate::http::error::ErrorBody),
))]
#[post("/auth-cards")]
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
