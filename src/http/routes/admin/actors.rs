//! `GET /admin/actors` and `POST /admin/actors/{name}/restart`.

use actix_web::{get, post, web, HttpResponse};
use serde::Serialize;

use crate::http::error::ApiError;
use crate::http::AppState;
use crate::supervise::ActorStatus;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActorList {
    pub actors: Vec<ActorStatus>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Restarting {
    pub restarting: String,
}

/// Each supervised actor: state, restarts, in-flight work, last error.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, body = ActorList),
    (status = 401, body = crate::http::error::ErrorBody),
))]
#[get("/actors")]
pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    let actors = state.board.collect().await;
    HttpResponse::Ok().json(ActorList { actors })
}

/// Make one actor fail and be restarted by its supervisor.
#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path, description = "as `GET /admin/actors` names it")),
    responses(
        (status = 202, body = Restarting),
        (status = 401, body = crate::http::error::ErrorBody),
        (status = 404, body = crate::http::error::ErrorBody),
))]
#[post("/actors/{name}/restart")]
pub async fn restart(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if state
        .board
        .restart(&name, "requested through the admin API")
    {
        Ok(HttpResponse::Accepted().json(Restarting {
            restarting: name.into_inner(),
        }))
    } else {
        Err(ApiError::not_found(
            "unknown_actor",
            format!("no actor named `{name}`; GET /admin/actors lists them"),
        ))
    }
}
