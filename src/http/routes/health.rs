//! `/healthz` (the process answers) and `/readyz` (it can do its job).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::http::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 when the database answers and events can arrive (the long connection
/// is up, or the webhook fallback is on); 503 with the reasons otherwise.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db = state.db.ping().await;
    let events = state.readiness.event_path();
    let ready = db.is_ok() && events.ready;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": match &db { Ok(()) => "ok".to_owned(), Err(e) => e.to_string() },
        "events": events.path,
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
