//! The actix-web control surface: health, metrics, the admin API, and the
//! platform's HTTP entry points (webhook, OAuth callback).
//!
//! Routes know nothing of actors' internals: they hold addresses and the
//! `Db` handle in [`AppState`] and map module errors through
//! [`error::ApiError`].

pub mod admin_guard;
pub mod error;
pub mod openapi;
pub mod routes;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::sync::watch;
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use actix::Addr;

use crate::auth::card_auth::CardAuth;
use crate::auth::device_logins::DeviceLogins;
use crate::auth::registry::SessionRegistry;
use crate::db::Db;
use crate::domain::Secret;
use crate::events::router::EventRouter;
use crate::events::webhook::WebhookConfig;
use crate::metrics::HTTP_REQUESTS;
use crate::supervise::StatusBoard;
use crate::sync::user_info_sync::UserInfoSync;

/// What routes share. Addresses and handles only; no mutable state.
pub struct AppState {
    pub db: Db,
    pub board: StatusBoard,
    pub prometheus: PrometheusHandle,
    pub admin_token: Option<Secret>,
    pub readiness: Readiness,
    pub registry: Addr<SessionRegistry>,
    pub card_auth: Addr<CardAuth>,
    pub device_logins: Addr<DeviceLogins>,
    pub router: Addr<EventRouter>,
    /// Wakes the outbox after an operator's retry.
    pub forwarding: crate::forward::Forwarding,
    pub webhook: WebhookSettings,
    pub user_sync: Addr<UserInfoSync>,
    pub apaas: Addr<crate::apaas::apaas_client::ApaasClient>,
}

/// The HTTP callback path's settings.
pub struct WebhookSettings {
    /// `None` when neither an encrypt key nor a verification token is set:
    /// then nothing could tell a forged callback from a real one.
    pub config: Option<WebhookConfig>,
    /// `WEBSOCKET_FALLBACK_TO_HTTP`.
    pub enabled: bool,
}

/// Which path events can arrive on, and whether they can be recorded, for `/readyz`.
#[derive(Clone)]
pub struct Readiness {
    /// `true` while the long connection is up; `None` when there is none.
    pub ws_connected: Option<watch::Receiver<bool>>,
    /// `POST /webhook/event` is on (`WEBSOCKET_FALLBACK_TO_HTTP`) *and* has
    /// a secret to verify callbacks with; without one it answers 503, so
    /// it is no event path at all.
    pub webhook_accepts: bool,
    /// Why the dedup ledger cannot write, while it cannot. A read-only
    /// ping misses this (a locked SQLite file still answers reads), and
    /// an event that cannot be recorded is not acked.
    pub ledger: watch::Receiver<crate::events::ledger::LedgerHealth>,
    /// Where a failed readiness ping is reported, for `/admin/actors`.
    pub ledger_actor: Addr<crate::events::ledger::Ledger>,
}

#[derive(Debug, Serialize)]
pub struct EventPath {
    pub path: &'static str,
    #[serde(skip)]
    pub ready: bool,
}

impl Readiness {
    /// Where events can arrive now. The platform delivers through the one
    /// mode the developer console sets, so the webhook counts only because
    /// an app set to HTTP delivery (or moving between modes) uses it.
    pub fn event_path(&self) -> EventPath {
        let connected = self.ws_connected.as_ref().is_some_and(|rx| *rx.borrow());
        match (connected, self.webhook_accepts) {
            (true, _) => EventPath {
                path: "websocket",
                ready: true,
            },
            (false, true) => EventPath {
                path: "webhook",
                ready: true,
            },
            (false, false) => EventPath {
                path: "none",
                ready: false,
            },
        }
    }
}

/// Register every route. Each is a `#[utoipa::path]`-annotated handler
/// added with `.service`, which also adds it to the OpenAPI document; a
/// plain `.route` would escape the document, so there are none.
pub fn configure(cfg: &mut ServiceConfig) {
    use routes::*;
    cfg.app_data(error::json_config())
        .app_data(error::path_config())
        .app_data(error::query_config())
        .service(health::healthz)
        .service(health::readyz)
        .service(metrics::metrics)
        .service(openapi::openapi_json)
        .service(oauth::callback)
        .service(webhook::event)
        .service(
            scope("/admin")
                .wrap(actix_web::middleware::from_fn(require_admin))
                .service(admin::actors::list)
                .service(admin::actors::restart)
                .service(admin::apaas::ai)
                .service(admin::auth_cards::send)
                .service(admin::device_logins::start)
                .service(admin::sessions::list)
                .service(admin::sessions::get)
                .service(admin::sessions::revoke)
                .service(admin::outbox::list)
                .service(admin::outbox::retry)
                .service(admin::sync::start)
                .service(admin::sync::get),
        )
        .default_service(web::to(not_found));
}

async fn not_found(
    req: actix_web::HttpRequest,
) -> Result<actix_web::HttpResponse, error::ApiError> {
    Err(error::ApiError::not_found(
        "no_route",
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

async fn require_admin(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, Error> {
    match admin_guard::check(&req) {
        Ok(()) => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body),
        Err(e) => Ok(req.error_response(e)),
    }
}

/// Count every request by matched route pattern (never the raw path, which
/// would make label cardinality unbounded) and status.
pub async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    metrics::counter!(HTTP_REQUESTS, "route" => route, "status" => res.status().as_str().to_owned()).increment(1);
    Ok(res)
}
