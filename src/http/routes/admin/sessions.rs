//! `/admin/sessions`: list, show and revoke authorization sessions. Tokens
//! are never part of a response.

use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::registry::{GetSession, ListSessions, RevokeSession, SessionView};
use crate::domain::SessionState;
use crate::http::error::ApiError;
use crate::http::AppState;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only sessions in this state (`pending`, `completed`, …).
    pub state: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// Sessions, newest first; never tokens.
#[utoipa::path(tag = "admin", security(("bearer" = [])), params(ListQuery), responses(
    (status = 200, body = SessionList),
    (status = 400, body = crate::http::error::ErrorBody),
    (status = 401, body = crate::http::error::ErrorBody),
))]
#[get("/sessions")]
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query
        .state
        .as_deref()
        .map(str::parse::<SessionState>)
        .transpose()
        .map_err(|e| ApiError::bad_request("bad_state", e.to_string()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let sessions = state
        .registry
        .send(ListSessions {
            state: filter,
            limit,
        })
        .await??;
    Ok(HttpResponse::Ok().json(SessionList { sessions }))
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::bad_request(
            "bad_session_id",
            format!("`{raw}` is not a session id (a UUID)"),
        )
    })
}

fn unknown(id: Uuid) -> ApiError {
    ApiError::not_found("unknown_session", format!("no session {id}"))
}

/// One session; never its tokens.
#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "session id (UUID)")),
    responses(
        (status = 200, body = SessionView),
        (status = 400, body = crate::http::error::ErrorBody),
        (status = 401, body = crate::http::error::ErrorBody),
        (status = 404, body = crate::http::error::ErrorBody),
))]
#[get("/sessions/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session_id = parse_id(&id)?;
    let session = state.registry.send(GetSession { session_id }).await??;
    Ok(HttpResponse::Ok().json(session.ok_or_else(|| unknown(session_id))?))
}

/// Drop the session's tokens and mark it `revoked`.
#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "session id (UUID)")),
    responses(
        (status = 200, body = SessionView),
        (status = 400, body = crate::http::error::ErrorBody),
        (status = 401, body = crate::http::error::ErrorBody),
        (status = 404, body = crate::http::error::ErrorBody),
))]
#[post("/sessions/{id}/revoke")]
pub async fn revoke(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session_id = parse_id(&id)?;
    if !state.registry.send(RevokeSession { session_id }).await?? {
        return Err(unknown(session_id));
    }
    let session = state.registry.send(GetSession { session_id }).await??;
    Ok(HttpResponse::Ok().json(session))
}
