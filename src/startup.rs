//! Start-up wiring, in one place: database, actors under supervision, the
//! HTTP control surface. `serve`, `demo` and the integration tests all build
//! the service through [`Application::build`].

use std::net::TcpListener;

use actix::Addr;
use actix_web::{web, App, HttpServer};
use utoipa_actix_web::AppExt;

use crate::apaas::apaas_client::{AiResult, AilyConfig, ApaasClient, CallAiApi};
use crate::apaas::error::ApaasError;
use crate::auth::card_auth::{CardAuth, CardAuthConfig, CARD_ACTION};
use crate::auth::card_updates::CardUpdater;
use crate::auth::device_logins::DeviceLogins;
use crate::auth::registry::SessionRegistry;
use crate::auth::vault::Vault;
use crate::config::{ConfigError, Settings};
use crate::db::connection::build_pool;
use crate::db::{Db, DbError};
use crate::device::error::DeviceError;
use crate::device::feishu::FeishuDeviceClient;
use crate::device::wire::DeviceClient;
use crate::events::ledger::Ledger;
use crate::events::replay::ReplayCache;
use crate::events::router::{EventHandler, EventRouter, Handlers};
use crate::events::webhook::WebhookConfig;
use crate::forward::card_callback::{self, CallbackSink};
use crate::forward::outbox::Outbox;
use crate::forward::sink::Sink;
use crate::forward::Forwarding;
use crate::http::{self, AppState, Readiness, WebhookSettings};
use crate::lark::client::{LarkClient, LarkError};
use crate::metrics::MetricsError;
use crate::platform::Platform;
use crate::refresh::app_token_cache::AppTokenCache;
use crate::refresh::token_refresher::{RefresherConfig, StartSchedule, TokenRefresher};
use crate::supervise::{self, StatusBoard};
use crate::sync::runner::{SyncOptions, SyncRunner};
use crate::sync::user_info_sync::UserInfoSync;
use crate::ws::connection::{Drain, WsConfig, WsConnection};

/// Seconds the HTTP server waits for in-flight requests on shutdown.
const HTTP_SHUTDOWN_TIMEOUT_SECS: u64 = 4;
/// How long shutdown waits for the long connection's events in flight:
/// a handler's timeout plus a ledger write that waits out SQLite's busy
/// timeout, with room to spare, and well inside a typical 30 s grace period.
const WS_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("HTTP_BIND: cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("HTTP client: {0}")]
    Http(#[from] LarkError),
    #[error("device login client: {0}")]
    DeviceClient(#[from] DeviceError),
    #[error("OpenAPI document: {0}")]
    OpenApi(#[from] serde_json::Error),
}

/// Builds the service, with the embedding program's own event handlers.
/// `lark-service serve` is this builder with none; `examples/echo_bot.rs`
/// is a runnable bot that replies through the IM API.
///
/// ```no_run
/// # async fn run(settings: lark_service::config::Settings) -> Result<(), Box<dyn std::error::Error>> {
/// use lark_service::startup::Service;
/// let app = Service::builder(settings)
///     .on("im.message.receive_v1", |event: std::sync::Arc<lark_service::events::envelope::Envelope>| async move {
///         tracing::info!(event_id = %event.event_id, "got a message");
///         Ok(None)
///     })
///     .build()
///     .await?;
/// app.run_until_stopped().await?;
/// # Ok(()) }
/// ```
pub struct Service;

impl Service {
    pub fn builder(settings: Settings) -> ServiceBuilder {
        ServiceBuilder {
            settings,
            handlers: Handlers::default(),
            platform: Platform::default(),
        }
    }
}

/// See [`Service::builder`].
pub struct ServiceBuilder {
    settings: Settings,
    handlers: Handlers,
    platform: Platform,
}

impl ServiceBuilder {
    /// The service's platform client, for handlers that call the open
    /// platform (e.g. to reply); usable once [`build`](Self::build) is done.
    /// `examples/echo_bot.rs` shows it in use.
    pub fn platform(&self) -> Platform {
        self.platform.clone()
    }

    /// Handle events of `event_type` in-process. The handler's `Ok(Some(json))`
    /// is the callback response (for card actions: toast and/or card).
    pub fn on(mut self, event_type: impl Into<String>, handler: impl EventHandler) -> Self {
        self.handlers = self.handlers.on(event_type, handler);
        self
    }

    pub async fn build(self) -> Result<Application, StartupError> {
        Application::start(self.settings, self.handlers, self.platform).await
    }
}

/// The actors every command that touches users needs: database, app
/// tokens, sessions, the card flow, token refreshes and AI calls. `serve`
/// adds the event path, the refresher's schedule and the HTTP server on
/// top; one-shot commands (`send-auth-card`, `sessions`, `ai`) use these
/// alone, with tokens refreshed only on demand.
pub struct Core {
    pub db: Db,
    pub app_tokens: Addr<AppTokenCache>,
    pub registry: Addr<SessionRegistry>,
    pub card_auth: Addr<CardAuth>,
    pub device_logins: Addr<DeviceLogins>,
    pub refresher: Addr<TokenRefresher>,
    pub apaas: Addr<ApaasClient>,
    pub lark: LarkClient,
    pub board: StatusBoard,
}

impl Core {
    /// Check the credentials, migrate, and start the core actors.
    pub async fn start(settings: &Settings) -> Result<Self, StartupError> {
        let credentials = settings.require_for_serve()?;
        let pool = build_pool(&settings.database.url)?;
        let db = Db::start(pool);
        let applied = db.migrate().await?;
        tracing::info!(
            backend = settings.database.url.backend(),
            applied,
            "database ready"
        );

        let mut board = StatusBoard::default();
        let lark = LarkClient::new(
            settings.lark.domain.clone(),
            settings.lark.accounts_domain.clone(),
        )?;
        let vault = credentials.vault();

        let app_tokens = supervise::spawn(AppTokenCache::new(
            lark.clone(),
            credentials.app_id.clone(),
            credentials.app_secret.clone(),
        ));
        board.register(&app_tokens);
        let registry = supervise::spawn(SessionRegistry::new(
            db.clone(),
            vault.clone(),
            credentials.app_id.clone(),
            settings.auth.session_ttl,
        ));
        board.register(&registry);
        let device_logins = supervise::spawn(DeviceLogins::new(
            FeishuDeviceClient::new(
                DeviceClient::new()?,
                settings.lark.accounts_domain.clone(),
                &credentials.app_id,
                credentials.app_secret.expose(),
            ),
            settings.oauth.scopes.clone(),
            lark.clone(),
            registry.clone(),
            CardUpdater::new(lark.clone(), app_tokens.clone()),
        ));
        board.register(&device_logins);
        let card_auth = supervise::spawn(CardAuth::new(
            CardAuthConfig {
                app_id: credentials.app_id.clone(),
                app_secret: credentials.app_secret.clone(),
                redirect_uri: settings.oauth.redirect_uri.clone(),
                scopes: settings.oauth.scopes.clone(),
            },
            lark.clone(),
            registry.clone(),
            app_tokens.clone(),
            device_logins.clone(),
        ));
        board.register(&card_auth);
        let refresher = supervise::spawn(TokenRefresher::new(
            RefresherConfig {
                app_id: credentials.app_id.clone(),
                app_secret: credentials.app_secret.clone(),
                ahead: settings.auth.refresh_ahead,
                interval: settings.auth.refresh_interval,
                concurrency: settings.auth.refresh_concurrency,
                send_auth_card: settings.auth.refresh_sends_auth_card,
            },
            db.clone(),
            vault,
            lark.clone(),
            Some(card_auth.clone()),
        ));
        board.register(&refresher);
        let apaas = supervise::spawn(ApaasClient::new(
            AilyConfig {
                app_id: settings.aily.app_id.clone(),
                skill_id: settings.aily.skill_id.clone(),
                run_timeout: settings.aily.run_timeout,
                poll_interval: settings.aily.poll_interval,
            },
            lark.clone(),
            registry.clone(),
            refresher.clone(),
            Some(card_auth.clone()).filter(|_| settings.auth.refresh_sends_auth_card),
        ));
        board.register(&apaas);
        Ok(Self {
            db,
            app_tokens,
            registry,
            card_auth,
            device_logins,
            refresher,
            apaas,
            lark,
            board,
        })
    }

    /// Ask the AI as `user_id` (an `open_id`), with that user's own token.
    pub async fn call_ai_api(&self, user_id: &str, prompt: &str) -> Result<AiResult, ApaasError> {
        call_ai_api(&self.apaas, user_id, prompt).await
    }
}

/// Ask the AI as `user_id` through `apaas`: the quickstart's `call_ai_api`.
pub async fn call_ai_api(
    apaas: &Addr<ApaasClient>,
    user_id: &str,
    prompt: &str,
) -> Result<AiResult, ApaasError> {
    apaas
        .send(CallAiApi {
            user_id: user_id.to_owned(),
            prompt: prompt.to_owned(),
        })
        .await?
}

/// The running service.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    db: Db,
    board: StatusBoard,
    router: Addr<EventRouter>,
    apaas: Addr<ApaasClient>,
    ws: Addr<WsConnection>,
}

impl Application {
    /// Check the settings, migrate, start the actors and bind the HTTP
    /// server (which serves once [`run_until_stopped`](Self::run_until_stopped)
    /// is awaited, or once spawned).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Service::builder(settings).build().await
    }

    async fn start(
        settings: Settings,
        handlers: Handlers,
        platform: Platform,
    ) -> Result<Self, StartupError> {
        let Core {
            db,
            app_tokens,
            registry,
            card_auth,
            device_logins,
            refresher,
            apaas,
            lark,
            mut board,
        } = Core::start(&settings).await?;
        platform.bind(lark.clone(), app_tokens);
        refresher.do_send(StartSchedule);
        let credentials = settings.require_for_serve()?;
        let user_sync = supervise::spawn(UserInfoSync::new(
            sync_runner(&settings, &db, &lark, &credentials.vault(), &refresher),
            settings
                .sync
                .enabled
                .then(|| settings.sync.schedule.clone()),
        ));
        board.register(&user_sync);
        let forwarding = Forwarding::new(settings.forward.clone());
        let sinks = connect_sinks(&forwarding).await?;
        let callback_sink = sinks
            .iter()
            .find(|(config, _)| config.accepts(CARD_ACTION))
            .map(|(config, sink)| CallbackSink {
                name: config.name.clone(),
                sink: sink.clone(),
            });
        let handlers = handlers.on(
            CARD_ACTION,
            card_callback::handler(card_auth.clone(), callback_sink),
        );
        let outbox = supervise::spawn(Outbox::new(db.clone(), forwarding.clone(), sinks));
        board.register(&outbox);
        let ledger = Ledger::new(db.clone());
        let ledger_health = ledger.health();
        let ledger = supervise::spawn(ledger);
        board.register(&ledger);
        let router = supervise::spawn(EventRouter::new(
            handlers,
            ledger.clone(),
            forwarding.clone(),
        ));
        board.register(&router);
        let (connected_tx, connected_rx) = tokio::sync::watch::channel(false);
        let ws = supervise::spawn(WsConnection::new(
            WsConfig {
                domain: settings.lark.domain.clone(),
                app_id: credentials.app_id.clone(),
                app_secret: credentials.app_secret.clone(),
                heartbeat_interval: settings.ws.heartbeat_interval,
                max_reconnect_retries: settings.ws.max_reconnect_retries,
            },
            router.clone(),
            connected_tx,
        ));
        board.register(&ws);

        let prometheus = crate::metrics::install(&board.names())?;

        let bind_err = |source| StartupError::Bind {
            addr: settings.http.bind.to_string(),
            source,
        };
        let listener = TcpListener::bind(settings.http.bind).map_err(bind_err)?;
        let port = listener.local_addr().map_err(bind_err)?.port();

        let state = web::Data::new(AppState {
            db: db.clone(),
            board: board.clone(),
            prometheus,
            admin_token: settings.http.admin_token.clone(),
            registry: registry.clone(),
            card_auth: card_auth.clone(),
            device_logins,
            user_sync,
            apaas: apaas.clone(),
            router: router.clone(),
            forwarding,
            webhook: WebhookSettings {
                config: webhook_config(&settings),
                enabled: settings.ws.fallback_to_http,
                replay: ReplayCache::default(),
            },
            readiness: Readiness {
                ws_connected: Some(connected_rx.clone()),
                webhook_accepts: settings.ws.fallback_to_http
                    && webhook_config(&settings).is_some(),
                ledger: ledger_health,
                ledger_actor: ledger,
            },
        });
        let openapi = web::Data::new(http::openapi::Rendered(
            http::openapi::document().to_pretty_json()?,
        ));
        let server = HttpServer::new(move || {
            App::new()
                .into_utoipa_app()
                .app_data(state.clone())
                .app_data(openapi.clone())
                .configure(http::configure)
                .into_app()
                .wrap(actix_web::middleware::from_fn(http::count_requests))
        })
        .shutdown_timeout(HTTP_SHUTDOWN_TIMEOUT_SECS)
        // `serve` owns signal handling (see `run_until`), so embedding
        // programs and tests keep theirs.
        .disable_signals()
        .listen(listener)
        .map_err(bind_err)?
        .run();
        tracing::info!(port, "control surface listening");

        Ok(Self {
            port,
            server,
            db,
            board,
            router,
            apaas,
            ws,
        })
    }

    /// The port the control surface listens on (useful with `HTTP_BIND=…:0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn board(&self) -> &StatusBoard {
        &self.board
    }

    /// The event router, for feeding events in directly.
    pub fn router(&self) -> &Addr<EventRouter> {
        &self.router
    }

    /// The AI client: `call_ai_api(app.apaas(), user_id, prompt)`.
    pub fn apaas(&self) -> &Addr<ApaasClient> {
        &self.apaas
    }

    /// A handle that stops the HTTP server (gracefully, or not).
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serve until stopped through [`server_handle`](Self::server_handle).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    /// Serve until `shutdown` resolves, then stop gracefully: the HTTP server
    /// drains in-flight requests (up to a few seconds) while the long
    /// connection finishes and acks the events it took (see [`Drain`]); the
    /// actors and the pool go when the caller's actix `System` ends.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let ws = self.ws;
        let server = self.server;
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => result,
            () = shutdown => {
                tracing::info!("shutting down");
                let drain = async {
                    match tokio::time::timeout(WS_DRAIN_TIMEOUT, ws.send(Drain)).await {
                        Ok(_) => tracing::info!("long connection drained"),
                        Err(_) => tracing::warn!(
                            timeout = ?WS_DRAIN_TIMEOUT,
                            "events still in flight at shutdown; the platform will redeliver them"
                        ),
                    }
                };
                // The server future must keep being polled to carry out the stop.
                let (result, (), ()) =
                    futures_util::future::join3(server, handle.stop(true), drain).await;
                result
            }
        }
    }
}

/// A client per configured sink. A sink that cannot even be set up is a
/// configuration problem, named like the ones `FORWARD_SINKS` parsing finds.
async fn connect_sinks(
    forwarding: &Forwarding,
) -> Result<Vec<(crate::forward::config::SinkConfig, std::sync::Arc<Sink>)>, StartupError> {
    let mut sinks = Vec::new();
    for config in &forwarding.settings().sinks {
        let sink = Sink::connect(config)
            .await
            .map_err(|e| ConfigError::Invalid {
                var: crate::forward::config::VAR,
                message: format!("sink `{}`: {e}", config.name),
            })?;
        tracing::info!(sink = %config.name, kind = config.kind_label(), events = ?config.events, "forwarding events");
        sinks.push((config.clone(), std::sync::Arc::new(sink)));
    }
    Ok(sinks)
}

/// The user-info sync runner over the service's database and client.
pub fn sync_runner(
    settings: &Settings,
    db: &Db,
    lark: &LarkClient,
    vault: &Vault,
    refresher: &Addr<TokenRefresher>,
) -> SyncRunner {
    SyncRunner::new(
        db.clone(),
        lark.clone(),
        vault.clone(),
        settings.database.url.clone(),
        SyncOptions::default(),
        refresher.clone(),
    )
}

/// The callback secrets, if any are configured.
fn webhook_config(settings: &Settings) -> Option<WebhookConfig> {
    let encrypt_key = settings
        .lark
        .encrypt_key
        .as_ref()
        .map(|s| s.expose().to_owned());
    let verification_token = settings
        .lark
        .verification_token
        .as_ref()
        .map(|s| s.expose().to_owned());
    (encrypt_key.is_some() || verification_token.is_some()).then_some(WebhookConfig {
        encrypt_key,
        verification_token,
    })
}
