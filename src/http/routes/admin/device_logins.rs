//! `POST /admin/device-logins`: authorize a user by device code, for users
//! the bot cannot message or who sign in on another device.

use actix_web::{post, web, HttpResponse};
use serde::Deserialize;

use crate::auth::device_logins::{DeviceLoginStarted, StartDeviceLogin};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::AppState;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceLoginRequest {
    /// The user's open_id (`ou_…`); when set, only their approval counts.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// Start a device login: show the user the code and link; the session
/// completes in the background once they approve.
#[utoipa::path(tag = "admin", security(("bearer" = [])), request_body = DeviceLoginRequest, responses(
    (status = 201, body = DeviceLoginStarted),
    (status = 400, body = ErrorBody),
    (status = 401, body = ErrorBody),
    (status = 502, description = "the accounts host refused", body = ErrorBody),
))]
#[post("/device-logins")]
pub async fn start(
    state: web::Data<AppState>,
    body: web::Json<DeviceLoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let open_id = body.into_inner().user_id.filter(|id| !id.trim().is_empty());
    let started = state
        .device_logins
        .send(StartDeviceLogin { open_id })
        .await??;
    Ok(HttpResponse::Created().json(started))
}
