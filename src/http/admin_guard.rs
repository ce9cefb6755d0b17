//! The bearer-token check in front of `/admin/*`.
//!
//! Unset `ADMIN_TOKEN` disables the admin API (503 with a hint) rather than
//! leaving it open. The comparison is constant-time so response timing does
//! not reveal how much of a guess was right.

use actix_web::dev::ServiceRequest;
use actix_web::web;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;

/// Check the request's `Authorization: Bearer …` against `ADMIN_TOKEN`.
pub fn check(req: &ServiceRequest) -> Result<(), ApiError> {
    let expected = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.admin_token.clone())
        .ok_or_else(|| {
            ApiError::unavailable(
                "admin_disabled",
                "the admin API is disabled: set ADMIN_TOKEN and send it as `Authorization: Bearer <token>`",
            )
        })?;
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    if bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        crate::metrics::bad_input("admin", "wrong_token");
        Err(ApiError::Unauthorized)
    }
}
