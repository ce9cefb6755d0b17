//! `POST /admin/apaas/ai`: ask the AI as a user, with that user's token.

use actix_web::{post, web};
use serde::Deserialize;

use crate::apaas::apaas_client::AiResult;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AiRequest {
    /// The user's open_id (`ou_…`); the call runs with their token.
    pub user_id: String,
    pub prompt: String,
}

/// Run the prompt on the Aily app (`AILY_APP_ID`) as the user and answer
/// the reply. A user with no usable token gets 409 `auth_required`: send
/// them an auth card (`POST /admin/auth-cards`).
#[utoipa::path(tag = "admin", security(("bearer" = [])), request_body = AiRequest, responses(
    (status = 200, body = AiResult),
    (status = 400, description = "empty prompt or bad user id", body = ErrorBody),
    (status = 401, body = ErrorBody),
    (status = 409, description = "`auth_required`: the user must authorize (again)", body = ErrorBody),
    (status = 429, description = "the platform's rate limit; see Retry-After", body = ErrorBody),
    (status = 502, description = "the run failed, or the platform refused", body = ErrorBody),
    (status = 503, description = "AILY_APP_ID unset, or a component is restarting", body = ErrorBody),
    (status = 504, description = "the run did not finish within AILY_RUN_TIMEOUT_SECONDS", body = ErrorBody),
))]
#[post("/apaas/ai")]
pub async fn ai(
    state: web::Data<AppState>,
    body: web::Json<AiRequest>,
) -> Result<web::Json<AiResult>, ApiError> {
    let body = body.into_inner();
    let result = crate::startup::call_ai_api(&state.apaas, &body.user_id, &body.prompt).await?;
    Ok(web::Json(result))
}
