//! `POST /webhook/event`: the HTTP callback path, for when the long
//! connection is down (or the app is configured for callbacks).
//!
//! The request is checked (signature and freshness, decryption,
//! verification token) before anything is routed; a refused request is
//! answered with the reason, counted and logged, and never dispatched. A
//! valid event goes through the same `EventRouter` as the WebSocket path, so
//! an event that arrives both ways is handled once.

use std::time::SystemTime;

use actix_web::{post, web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::events::router::{EventSource, RouteEvent, RouteOutcome};
use crate::events::webhook::{parse_webhook, WebhookError, WebhookHeaders, WebhookInput};
use crate::http::error::ApiError;
use crate::http::AppState;

/// The platform's HTTP callback: URL challenge, or an (encrypted) event.
#[utoipa::path(tag = "platform",
    request_body(content = Object, description = "as the platform sends it: `{\"encrypt\": …}` or a plain envelope"),
    responses(
        (status = 200, description = "challenge echo, callback response, or `{\"msg\":\"success\"}`", body = Object),
        (status = 400, description = "undecryptable or malformed", body = crate::http::error::ErrorBody),
        (status = 401, description = "bad signature, stale timestamp or wrong token", body = crate::http::error::ErrorBody),
        (status = 500, description = "the handler failed; the platform will retry", body = Object),
        (status = 503, description = "callbacks not configured or disabled (an error body), or the database is unreachable and the platform will retry (`{\"msg\": …}`)", body = crate::http::error::ErrorBody),
))]
#[post("/webhook/event")]
pub async fn event(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let Some(config) = state.webhook.config.as_ref() else {
        return Err(ApiError::unavailable(
            "webhook_not_configured",
            "set LARK_ENCRYPT_KEY or LARK_VERIFICATION_TOKEN to accept HTTP callbacks",
        ));
    };
    if !state.webhook.enabled {
        return Err(ApiError::unavailable(
            "webhook_disabled",
            "HTTP callbacks are off (WEBSOCKET_FALLBACK_TO_HTTP=false)",
        ));
    }
    let headers = WebhookHeaders::from_pairs(
        req.headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
    );
    let input = parse_webhook(&headers, &body, config, SystemTime::now()).map_err(refused)?;
    let envelope = match input {
        WebhookInput::Challenge(challenge) => {
            return Ok(HttpResponse::Ok().json(json!({ "challenge": challenge })))
        }
        WebhookInput::Event(envelope) => envelope,
    };
    let routed = state
        .router
        .send(RouteEvent {
            payload: envelope.raw.to_vec(),
            source: EventSource::Webhook,
        })
        .await?;
    Ok(match routed.outcome {
        RouteOutcome::Handled(Some(body)) => HttpResponse::Ok().json(body),
        // A callback's body is its response: `{}` keeps the card as it is.
        RouteOutcome::Handled(None) | RouteOutcome::Duplicate | RouteOutcome::Unhandled
            if routed.callback =>
        {
            HttpResponse::Ok().json(json!({}))
        }
        RouteOutcome::Handled(None) | RouteOutcome::Duplicate | RouteOutcome::Unhandled => {
            HttpResponse::Ok().json(json!({"msg": "success"}))
        }
        // 500 makes the platform retry (15 s, 5 min, 1 h, 6 h).
        RouteOutcome::Failed(reason) => {
            HttpResponse::InternalServerError().json(json!({ "msg": reason }))
        }
        // Not recorded, so not acknowledged: any non-2xx makes the platform retry.
        RouteOutcome::Unavailable(reason) => {
            HttpResponse::ServiceUnavailable().json(json!({ "msg": reason }))
        }
        RouteOutcome::Rejected(reason) => {
            return Err(ApiError::bad_request("bad_envelope", reason));
        }
    })
}

fn refused(e: WebhookError) -> ApiError {
    crate::metrics::bad_input("webhook", e.code());
    tracing::warn!(reason = e.code(), error = %e, "refused a webhook request");
    match e {
        WebhookError::MissingHeaders
        | WebhookError::BadTimestamp
        | WebhookError::StaleTimestamp
        | WebhookError::BadSignature
        | WebhookError::BadToken => ApiError::Forbidden {
            code: e.code(),
            message: e.to_string(),
        },
        WebhookError::NoEncryptKey => ApiError::unavailable(e.code(), e.to_string()),
        WebhookError::Decrypt(_) | WebhookError::BadJson | WebhookError::Envelope(_) => {
            ApiError::bad_request(e.code(), e.to_string())
        }
    }
}
