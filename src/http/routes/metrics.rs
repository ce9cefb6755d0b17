//! `/metrics`: Prometheus text exposition.

use actix_web::{get, web, HttpResponse};

use crate::http::AppState;

/// Every `lark_*` family, exposed from the first scrape.
#[utoipa::path(tag = "health", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.prometheus.render())
}
