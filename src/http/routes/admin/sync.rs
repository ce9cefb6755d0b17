//! `POST /admin/sync` and `GET /admin/sync/{id}`: run the user-info sync
//! now, and follow a run.

use actix_web::{get, post, web, HttpResponse};
use serde::Serialize;

use crate::http::error::{ApiError, ErrorBody};
use crate::http::AppState;
use crate::sync::error::SyncError;
use crate::sync::run_view::{SyncRunView, Trigger};
use crate::sync::user_info_sync::{GetRun, StartSync};

/// A run that was started.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncStarted {
    pub run_id: i64,
    /// Where to follow it.
    pub status_url: String,
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::AlreadyRunning(_) => Self::conflict("sync_running", e.to_string()),
            SyncError::Db(db) => db.into(),
            SyncError::Mailbox(m) => m.into(),
            SyncError::Lock(_) => Self::Internal(e.to_string()),
        }
    }
}

/// Start a user-info sync now. Only one runs at a time: while one runs,
/// the answer is 409 naming it.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 202, body = SyncStarted),
    (status = 401, body = ErrorBody),
    (status = 409, description = "a run is in progress; the message names it", body = ErrorBody),
))]
#[post("/sync")]
pub async fn start(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let run_id = state
        .user_sync
        .send(StartSync {
            trigger: Trigger::Admin,
        })
        .await??;
    Ok(HttpResponse::Accepted().json(SyncStarted {
        run_id,
        status_url: format!("/admin/sync/{run_id}"),
    }))
}

/// A run's status, progress and counts.
#[utoipa::path(tag = "admin", security(("bearer" = [])), params(("id" = i64, Path, description = "the run id")), responses(
    (status = 200, body = SyncRunView),
    (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody),
))]
#[get("/sync/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<web::Json<SyncRunView>, ApiError> {
    let id = id.into_inner();
    state
        .user_sync
        .send(GetRun { id })
        .await??
        .map(web::Json)
        .ok_or_else(|| ApiError::not_found("unknown_sync_run", format!("no sync run {id}")))
}
