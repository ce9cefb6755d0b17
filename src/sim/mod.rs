//! A simulated Feishu/Lark open platform on loopback.
//!
//! Tests, benchmarks and `lark-service demo` all talk to this instead of the
//! real platform. It runs on its own thread with its own actix `System`, so
//! it behaves like a remote peer: the service under test shares no runtime
//! with it, and dropping the [`Simulator`] stops it.
//!
//! Routes follow `lark-open-platform.md`; every route records what it
//! received (see [`state::Recorder`]) and honours faults a test queued.

pub mod aily;
pub mod card_click;
pub mod device_server;
pub mod event_sink;
pub mod feishu_device;
pub mod im;
pub mod oauth;
pub mod oauth_routes;
pub mod open_api;
pub mod seed;
pub mod state;
pub mod user_message;
pub mod ws_server;

use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;

use actix_web::{web, App, HttpResponse, HttpServer};

pub use state::{Fault, RecordedRequest, Recorder};
pub use ws_server::WsSim;

/// The app credentials the simulator accepts unless told otherwise.
/// The id matches `^cli_[0-9a-f]{16}$`, which the Node SDK insists on.
pub const SIM_APP_ID: &str = "cli_a1b2c3d4e5f60718";
pub const SIM_APP_SECRET: &str = "sim-app-secret";

/// Everything the simulated platform knows, shared by its routes.
pub struct SimState {
    pub app_id: String,
    pub app_secret: String,
    pub recorder: Recorder,
    pub open_api: open_api::OpenApiState,
    pub device: device_server::DeviceServerState,
    pub ws: ws_server::WsSim,
}

impl SimState {
    fn new(app_id: &str, app_secret: &str, ws_addr: std::net::SocketAddr) -> Self {
        Self {
            app_id: app_id.to_owned(),
            app_secret: app_secret.to_owned(),
            recorder: Recorder::default(),
            open_api: open_api::OpenApiState::default(),
            device: device_server::DeviceServerState::default(),
            ws: ws_server::WsSim::new(ws_addr),
        }
    }
}

/// A running simulator. Dropping it stops the server.
pub struct Simulator {
    base_url: String,
    state: Arc<SimState>,
    server: actix_web::dev::ServerHandle,
    thread: Option<JoinHandle<()>>,
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("could not bind the simulator to 127.0.0.1: {0}")]
    Bind(#[from] std::io::Error),
    #[error("the simulator thread exited before it was ready")]
    NotReady,
}

impl Simulator {
    /// Start on a random loopback port with the default app credentials.
    pub fn start() -> Result<Self, SimError> {
        Self::start_with(SIM_APP_ID, SIM_APP_SECRET)
    }

    /// Start on a random loopback port accepting these app credentials.
    pub fn start_with(app_id: &str, app_secret: &str) -> Result<Self, SimError> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let ws_listener = TcpListener::bind("127.0.0.1:0")?;
        ws_listener.set_nonblocking(true)?;
        let state = Arc::new(SimState::new(app_id, app_secret, ws_listener.local_addr()?));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("lark-sim".into())
            .spawn(move || {
                let system = actix_rt::System::new();
                system.block_on(async move {
                    thread_state.ws.serve(ws_listener);
                    let data = web::Data::from(thread_state);
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                            .configure(open_api::routes)
                            .configure(device_server::routes)
                            .configure(feishu_device::routes)
                            .configure(ws_server::routes)
                            .default_service(web::to(not_found))
                    })
                    .workers(1)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .listen(listener);
                    let server = match server {
                        Ok(s) => s.run(),
                        Err(_) => return,
                    };
                    if tx.send(server.handle()).is_err() {
                        return;
                    }
                    let _ = server.await;
                });
            })?;
        let server = rx.recv().map_err(|_| SimError::NotReady)?;
        Ok(Self {
            base_url,
            state,
            server,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`, for both `LARK_DOMAIN` and `LARK_ACCOUNTS_DOMAIN`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The shared state, for scripting faults and reading what was recorded.
    pub fn state(&self) -> &Arc<SimState> {
        &self.state
    }

    /// The simulated long connection.
    pub fn ws(&self) -> &WsSim {
        &self.state.ws
    }

    /// The request log.
    pub fn recorder(&self) -> &Recorder {
        &self.state.recorder
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        // `stop` only signals; the thread finishes on its own once the
        // server has drained. Waiting here would block an async test.
        drop(self.server.stop(false));
        if let Some(thread) = self.thread.take() {
            drop(thread);
        }
    }
}

async fn not_found(
    req: actix_web::HttpRequest,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> HttpResponse {
    state.recorder.record(&req, &body);
    HttpResponse::NotFound().json(serde_json::json!({"code": 404, "msg": "not found"}))
}

/// Answer a queued fault for `route`, if one is queued. Routes call this
/// first; `None` means "answer normally".
pub async fn fault_response(state: &SimState, route: &'static str) -> Option<HttpResponse> {
    match state.recorder.take_fault(route)? {
        Fault::Respond { status, body } => {
            let status = actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
            Some(HttpResponse::build(status).json(body))
        }
        Fault::RateLimit { reset_seconds } => Some(
            HttpResponse::TooManyRequests()
                .insert_header(("x-ogw-ratelimit-limit", "50"))
                .insert_header(("x-ogw-ratelimit-reset", reset_seconds.to_string()))
                .json(
                    serde_json::json!({"code": 99991400, "msg": "request trigger frequency limit"}),
                ),
        ),
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
    }
}
