//! Start-up wiring, in one place: database, actors under supervision, the
//! HTTP control surface. `serve`, `demo` and the integration tests all build
//! the service through [`Application::build`].

use std::net::TcpListener;

use actix_web::{web, App, HttpServer};

use crate::auth::registry::SessionRegistry;
use crate::config::{ConfigError, Settings};
use crate::db::connection::build_pool;
use crate::db::{Db, DbError};
use crate::http::{self, AppState, Readiness};
use crate::metrics::MetricsError;
use crate::supervise::{self, StatusBoard};

/// Seconds the HTTP server waits for in-flight requests on shutdown.
const HTTP_SHUTDOWN_TIMEOUT_SECS: u64 = 4;

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
}

/// The running service.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    db: Db,
    board: StatusBoard,
}

impl Application {
    /// Check the settings, migrate, start the actors and bind the HTTP
    /// server (which serves once [`run_until_stopped`](Self::run_until_stopped)
    /// is awaited, or once spawned).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let _credentials = settings.require_for_serve()?;
        let pool = build_pool(&settings.database.url)?;
        let db = Db::start(pool);
        let applied = db.migrate().await?;
        tracing::info!(
            backend = settings.database.url.backend(),
            applied,
            "database ready"
        );

        let mut board = StatusBoard::default();
        let registry = supervise::spawn(SessionRegistry::new(db.clone()));
        board.register(&registry);

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
            readiness: Readiness {
                ws_connected: None,
                fallback_to_http: settings.ws.fallback_to_http,
            },
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(actix_web::middleware::from_fn(http::count_requests))
                .configure(http::configure)
        })
        .shutdown_timeout(HTTP_SHUTDOWN_TIMEOUT_SECS)
        .listen(listener)
        .map_err(bind_err)?
        .run();
        tracing::info!(port, "control surface listening");

        Ok(Self {
            port,
            server,
            db,
            board,
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

    /// A handle that stops the HTTP server (gracefully, or not).
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serve until SIGINT/SIGTERM (or a stop through the server handle). The
    /// HTTP server drains in-flight requests; the actors and the pool go when
    /// the caller's actix `System` ends.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
