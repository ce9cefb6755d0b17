//! `/healthz` (the process answers) and `/readyz` (it can do its job).

use actix_web::{get, web, HttpResponse};
use serde::Serialize;

use crate::http::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Alive {
    /// Always `ok`.
    pub status: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// `ok`, or why the database did not answer or cannot be written.
    pub database: String,
    /// Where events arrive: `websocket`, `webhook` or `none`.
    pub events: &'static str,
}

/// The process answers.
#[utoipa::path(tag = "health", responses((status = 200, body = Alive)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Alive { status: "ok" })
}

/// 200 when the database answers and takes writes, and events can arrive
/// (the long connection is up, or the webhook fallback is on); 503 with the
/// reasons otherwise.
#[utoipa::path(tag = "health", responses(
    (status = 200, description = "ready", body = Ready),
    (status = 503, description = "not ready, with the reasons", body = Ready),
))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db = state
        .db
        .ping()
        .await
        .map_err(|e| e.to_string())
        .and_then(|()| match state.readiness.ledger.borrow().as_ref() {
            None => Ok(()),
            Some(failing) => Err(format!("writes failing: {failing}")),
        });
    let events = state.readiness.event_path();
    let ready = db.is_ok() && events.ready;
    let body = Ready {
        status: if ready { "ready" } else { "not_ready" },
        database: match db {
            Ok(()) => "ok".to_owned(),
            Err(e) => e,
        },
        events: events.path,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
