//! A simulated HTTP forwarding sink on loopback: the operator's endpoint
//! that forwarded events are POSTed to.
//!
//! Tests and benchmarks script it to fail a fraction of requests, go down
//! (answer 503 to everything), be slow, or answer with a redirect (a sink
//! that moved, or a host trying to bounce requests elsewhere), and read back
//! which event ids and bodies it accepted. It checks every request's signature the way the README tells
//! an endpoint to, and counts the ones that fail.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use rand::Rng;
use serde_json::Value;

use super::state::lock;
use super::SimError;
use crate::forward::http_sink::{self, HEADER_EVENT_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};

#[derive(Default)]
struct SinkState {
    secret: String,
    fail_ratio: Mutex<f64>,
    down: AtomicBool,
    delay: Mutex<Duration>,
    reply: Mutex<Option<Value>>,
    redirect: Mutex<Option<String>>,
    /// The bodies of accepted requests, in order.
    bodies: Mutex<Vec<Value>>,
    /// Event ids of accepted requests and when they came, in order,
    /// duplicates included.
    received: Mutex<Vec<(String, Instant)>>,
    requests: AtomicU64,
    bad_requests: AtomicU64,
}

/// A running sink. Dropping it stops the server.
pub struct EventSink {
    url: String,
    state: Arc<SinkState>,
    server: actix_web::dev::ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl EventSink {
    /// Start on a random loopback port, verifying signatures with `secret`.
    pub fn start(secret: &str) -> Result<Self, SimError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/events", listener.local_addr()?);
        let state = Arc::new(SinkState {
            secret: secret.to_owned(),
            ..SinkState::default()
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let data = web::Data::from(state.clone());
        let thread = std::thread::Builder::new()
            .name("lark-sim-sink".into())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .default_service(web::to(receive))
                    })
                    .workers(2)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .listen(listener);
                    let Ok(server) = server.map(|s| s.run()) else {
                        return;
                    };
                    if tx.send(server.handle()).is_ok() {
                        let _ = server.await;
                    }
                });
            })?;
        let server = rx.recv().map_err(|_| SimError::NotReady)?;
        Ok(Self {
            url,
            state,
            server,
            thread: Some(thread),
        })
    }

    /// Where to POST.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Answer this fraction of requests (0..=1) with 500, at random.
    pub fn set_fail_ratio(&self, ratio: f64) {
        *lock(&self.state.fail_ratio) = ratio;
    }

    /// Answer every request with 503 while `down`.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Wait this long before answering.
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.state.delay) = delay;
    }

    /// The JSON body of successful answers (a card-callback response).
    pub fn set_reply(&self, reply: Value) {
        *lock(&self.state.reply) = Some(reply);
    }

    /// Answer every request with `307 Temporary Redirect` to `location`
    /// (`None`: answer normally again).
    pub fn set_redirect(&self, location: Option<&str>) {
        *lock(&self.state.redirect) = location.map(str::to_owned);
    }

    /// The JSON bodies accepted so far, in order.
    pub fn payloads(&self) -> Vec<Value> {
        lock(&self.state.bodies).clone()
    }

    /// Event ids accepted so far, in order, duplicates included.
    pub fn received(&self) -> Vec<String> {
        lock(&self.state.received)
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Accepted requests with their arrival times (for latency figures).
    pub fn arrivals(&self) -> Vec<(String, Instant)> {
        lock(&self.state.received).clone()
    }

    pub fn received_count(&self) -> usize {
        lock(&self.state.received).len()
    }

    /// Requests seen, accepted or not.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests with a bad signature or without an event id.
    pub fn bad_requests(&self) -> u64 {
        self.state.bad_requests.load(Ordering::SeqCst)
    }
}

impl Drop for EventSink {
    fn drop(&mut self) {
        drop(self.server.stop(false));
        drop(self.thread.take());
    }
}

async fn receive(req: HttpRequest, body: web::Bytes, state: web::Data<SinkState>) -> HttpResponse {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let delay = *lock(&state.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if state.down.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    if let Some(location) = lock(&state.redirect).clone() {
        return HttpResponse::TemporaryRedirect()
            .insert_header(("location", location))
            .finish();
    }
    let fail_ratio = *lock(&state.fail_ratio);
    if fail_ratio > 0.0 && rand::thread_rng().gen_bool(fail_ratio.min(1.0)) {
        return HttpResponse::InternalServerError().finish();
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(timestamp), Some(event_id)) = (
        header(HEADER_SIGNATURE),
        header(HEADER_TIMESTAMP),
        header(HEADER_EVENT_ID),
    ) else {
        state.bad_requests.fetch_add(1, Ordering::SeqCst);
        return HttpResponse::BadRequest().finish();
    };
    if !http_sink::verify(&state.secret, timestamp, &body, signature) {
        state.bad_requests.fetch_add(1, Ordering::SeqCst);
        return HttpResponse::Unauthorized().finish();
    }
    lock(&state.received).push((event_id.to_owned(), Instant::now()));
    if let Ok(payload) = serde_json::from_slice(&body) {
        lock(&state.bodies).push(payload);
    }
    match lock(&state.reply).clone() {
        Some(reply) => HttpResponse::Ok().json(reply),
        None => HttpResponse::NoContent().finish(),
    }
}
