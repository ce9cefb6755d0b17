//! `/admin/outbox`: the forwarding queue, dead letters first of all, and
//! the one repair an operator needs: retry a dead letter once its sink is
//! fixed. Payloads are not shown (they may hold user content).

use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::db::models::outbox_event::{self, OutboxEvent, STATES};
use crate::http::error::ApiError;
use crate::http::AppState;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only rows in this state: `pending`, `delivered` or `dead`.
    pub state: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OutboxList {
    pub rows: Vec<OutboxEvent>,
}

/// Outbox rows, newest first (`?state=dead` for the dead letters).
#[utoipa::path(tag = "admin", security(("bearer" = [])), params(ListQuery), responses(
    (status = 200, body = OutboxList),
    (status = 400, body = crate::http::error::ErrorBody),
    (status = 401, body = crate::http::error::ErrorBody),
))]
#[get("/outbox")]
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.state.clone();
    if let Some(s) = &filter {
        if !STATES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(
                "bad_state",
                format!("`{s}` is not one of {}", STATES.join(", ")),
            ));
        }
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let rows = state
        .db
        .read(move |c| outbox_event::list(c, filter.as_deref(), limit))
        .await?;
    Ok(HttpResponse::Ok().json(OutboxList { rows }))
}

/// What a retry request found.
enum Retried {
    Pending(Box<OutboxEvent>),
    NotDead,
    NoSuchRow,
    /// The row's sink is not configured (any more): retrying would leave
    /// the row pending with nobody to deliver it.
    SinkRemoved(String),
}

/// Make a dead letter pending again, with a fresh set of attempts.
#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "outbox row id")),
    responses(
        (status = 200, body = OutboxEvent),
        (status = 400, body = crate::http::error::ErrorBody),
        (status = 401, body = crate::http::error::ErrorBody),
        (status = 404, body = crate::http::error::ErrorBody),
        (status = 409, body = crate::http::error::ErrorBody),
))]
#[post("/outbox/{id}/retry")]
pub async fn retry(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad_request("bad_outbox_id", format!("`{id}` is not an outbox row id"))
    })?;
    let configured: Vec<String> = state
        .forwarding
        .settings()
        .sinks
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let outcome = state
        .db
        .write(move |c| {
            Ok(match outbox_event::sink_of(c, id)? {
                None => Retried::NoSuchRow,
                Some(sink) if !configured.contains(&sink) => Retried::SinkRemoved(sink),
                Some(_) => outbox_event::retry(c, id)?
                    .map_or(Retried::NotDead, |row| Retried::Pending(Box::new(row))),
            })
        })
        .await?;
    match outcome {
        Retried::Pending(row) => {
            state.forwarding.wake();
            Ok(HttpResponse::Ok().json(row))
        }
        Retried::NotDead => Err(ApiError::conflict(
            "not_dead",
            format!("outbox row {id} is not a dead letter; only dead letters are retried"),
        )),
        Retried::SinkRemoved(sink) => Err(ApiError::conflict(
            "sink_removed",
            format!(
                "outbox row {id} is for sink `{sink}`, which is not configured: \
                 add it to FORWARD_SINKS again to retry its rows"
            ),
        )),
        Retried::NoSuchRow => Err(ApiError::not_found(
            "unknown_outbox_row",
            format!("no outbox row {id}"),
        )),
    }
}
