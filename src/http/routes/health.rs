//! `/healthz` (the process answers) and `/readyz` (it can do its job).

use actix_web::{get, web, HttpResponse};
use serde::Serialize;

use crate::events::ledger::DatabaseUnreachable;
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
    /// `ok`, or `unavailable` when the database did not answer or cannot be
    /// written. The reason is never shown here (this route needs no
    /// credentials): it goes to the log and to the `event_ledger` entry of
    /// `/admin/actors`.
    pub database: &'static str,
    /// Where events arrive: `websocket`, `webhook` or `none`.
    pub events: &'static str,
    /// `POST /webhook/event` is enabled and has a secret to verify with.
    pub webhook_accepts: bool,
}

/// The process answers.
#[utoipa::path(tag = "health", responses((status = 200, body = Alive)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Alive { status: "ok" })
}

/// 200 when the database answers and takes writes, and events can arrive
/// (the long connection is up, or the webhook is enabled and configured
/// with an encrypt key or verification token); 503 with the reasons
/// otherwise.
#[utoipa::path(tag = "health", responses(
    (status = 200, description = "ready", body = Ready),
    (status = 503, description = "not ready, with the reasons", body = Ready),
))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db_ok = match state.db.ping().await {
        // The ledger logged and recorded its own failure when it had it.
        Ok(()) => state.readiness.ledger.borrow().is_none(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: the database did not answer");
            state.readiness.ledger_actor.do_send(DatabaseUnreachable {
                error: e.to_string(),
            });
            false
        }
    };
    let events = state.readiness.event_path();
    let ready = db_ok && events.ready;
    let body = Ready {
        status: if ready { "ready" } else { "not_ready" },
        database: if db_ok { "ok" } else { "unavailable" },
        events: events.path,
        webhook_accepts: state.readiness.webhook_accepts,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
