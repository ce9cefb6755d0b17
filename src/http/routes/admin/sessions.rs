//! `/admin/sessions`: list, show and revoke authorization sessions. Tokens
//! are never part of a response.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::auth::registry::{GetSession, ListSessions, RevokeSession};
use crate::domain::SessionState;
use crate::http::error::ApiError;
use crate::http::AppState;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub state: Option<String>,
    pub limit: Option<i64>,
}

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
    Ok(HttpResponse::Ok().json(json!({ "sessions": sessions })))
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

pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session_id = parse_id(&id)?;
    let session = state.registry.send(GetSession { session_id }).await??;
    Ok(HttpResponse::Ok().json(session.ok_or_else(|| unknown(session_id))?))
}

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
