//! `GET /admin/actors` and `POST /admin/actors/{name}/restart`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::http::error::ApiError;
use crate::http::AppState;

/// Each supervised actor: state, restarts, in-flight work, last error.
pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    let actors = state.board.collect().await;
    HttpResponse::Ok().json(json!({ "actors": actors }))
}

/// Make one actor fail and be restarted by its supervisor.
pub async fn restart(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if state
        .board
        .restart(&name, "requested through the admin API")
    {
        Ok(HttpResponse::Accepted().json(json!({"restarting": name.into_inner()})))
    } else {
        Err(ApiError::not_found(
            "unknown_actor",
            format!("no actor named `{name}`; GET /admin/actors lists them"),
        ))
    }
}
