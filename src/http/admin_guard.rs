//! The bearer-token check in front of `/admin/*`.
//!
//! Unset `ADMIN_TOKEN` disables the admin API (503 with a hint) rather than
//! leaving it open. The comparison is constant-time so response timing does
//! not reveal how much of a guess was right. The `Bearer` scheme is matched
//! without regard to case, as RFC 9110 §11.1 says auth schemes are, so
//! `bearer …` from a client that lowercases headers works too.

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
        .and_then(bearer_token)
        .ok_or(ApiError::Unauthorized)?;
    if bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        crate::metrics::bad_input("admin", "wrong_token");
        Err(ApiError::Unauthorized)
    }
}

/// The token of an `Authorization: Bearer <token>` value, whatever the
/// case of the scheme and however many spaces follow it.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_scheme_is_matched_in_any_case() {
        for value in ["Bearer abc", "bearer abc", "BEARER  abc", " bEaReR abc "] {
            assert_eq!(bearer_token(value), Some("abc"), "{value:?}");
        }
        for value in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", ""] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }
}
