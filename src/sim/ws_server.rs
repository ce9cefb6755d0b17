//! The simulated long connection (§1.11 of the protocol notes): the
//! bootstrap route `POST /callback/ws/endpoint` and a WebSocket server on
//! its own loopback port speaking `pbbp2` frames.
//!
//! It behaves like the platform where the notes say how the platform
//! behaves: single-use tickets in the URL, pongs carrying the full
//! `ClientConfig`, events pushed as data frames (optionally fragmented), and
//! cluster-mode redelivery of anything not acked in time to whichever client
//! is connected. Tests script the rest through [`WsSim`]: refuse handshakes
//! with `handshake-*` headers, drop connections without a close frame, go
//! silent, and wait on conditions (acks, connections, pings) with a deadline
//! instead of sleeping.
//!
//! Every delivery is tracked by `message_id`, so a test can push thousands
//! of events through forced disconnects and then check each one was acked;
//! [`WsSim::stream`] drives a stream for benchmarks: as fast as a bound on
//! unacked events allows, or paced at a fixed rate, with each event's time
//! from first send to first ack.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::Message;

use super::state::lock;
use super::{fault_response, SimState};
use crate::ws::ack::AckPayload;
use crate::ws::client_config::ClientConfig;
use crate::ws::frame::{header, Frame, FrameKind, Header, MessageType, Method};

/// Fault route name of the bootstrap call.
pub const ROUTE_WS_ENDPOINT: &str = "ws_endpoint";
/// Path the WebSocket server accepts.
pub const WS_PATH: &str = "/ws/v2";
/// The `service_id` the simulator puts in connection URLs.
pub const SIM_SERVICE_ID: i32 = 11;
/// The platform re-pushes an event not acked within 3 s.
pub const DEFAULT_REDELIVERY_TIMEOUT: Duration = Duration::from_secs(3);

/// How one message is pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Push {
    /// `type` header: `Event` or `Card`.
    pub kind: MessageType,
    /// Split the payload over this many frames (at most one per byte).
    pub fragments: usize,
}

impl Default for Push {
    fn default() -> Self {
        Self {
            kind: MessageType::Event,
            fragments: 1,
        }
    }
}

/// An ack as the simulator received it.
#[derive(Debug, Clone)]
pub struct RecordedAck {
    pub message_id: String,
    /// The ack payload's `code`; 0 when the payload was not an ack JSON.
    pub code: u16,
    /// `data` decoded from base64 JSON, `None` when absent or undecodable.
    pub data: Option<Value>,
    /// The whole ack frame, to check echoed fields and headers.
    pub frame: Frame,
    /// Which connection (see [`WsSim::connections_total`]) carried it.
    pub connection: u64,
    pub at: Instant,
    /// Time since the message was first sent, when it was one we pushed.
    pub latency: Option<Duration>,
}

/// How [`WsSim::stream`] pushes its events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamPlan {
    pub events: usize,
    /// Never more than this many pushed and not yet acked; a push waits.
    pub max_in_flight: usize,
    /// Events per second, each pushed at its slot on a fixed schedule
    /// (several at once when the timer wakes late); `None` pushes as fast as
    /// `max_in_flight` lets through.
    pub rate: Option<f64>,
    /// Give up when nothing is acked for this long.
    pub stall: Duration,
}

/// Outcome of [`WsSim::stream`].
#[derive(Debug, Clone)]
pub struct StreamReport {
    pub pushed: usize,
    pub acked: usize,
    /// First push to last ack (or to the stall).
    pub elapsed: Duration,
    /// First send to first ack, for each acked event, in push order.
    pub latencies: Vec<Duration>,
    /// Events sent more than once (not acked within the redelivery timeout,
    /// or cut off with their connection).
    pub redelivered: usize,
}

/// Handle to the simulated long connection; cheap to clone.
#[derive(Clone)]
pub struct WsSim {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    next_id: AtomicU64,
    tickets: Mutex<HashSet<String>>,
    client_config: Mutex<ClientConfig>,
    refusals: Mutex<VecDeque<(u16, Option<i64>)>>,
    /// Acks still to be lost in transit (see [`WsSim::lose_acks`]).
    lost_acks: AtomicU64,
    silent: AtomicBool,
    redelivery_timeout: Mutex<Duration>,
    conns: Mutex<Vec<Conn>>,
    deliveries: Mutex<Deliveries>,
    acks: Mutex<Vec<RecordedAck>>,
    pings: AtomicU64,
    connections_total: AtomicU64,
    /// Bumped on every observable change; waiters watch it.
    changes: watch::Sender<u64>,
}

struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<Command>,
}

enum Command {
    Send(Vec<Frame>),
    Drop,
    /// Close abruptly after this many more data frames.
    DropAfter(u32),
}

#[derive(Default)]
struct Deliveries {
    messages: HashMap<String, Delivery>,
    /// Pushed while no client was connected.
    waiting: VecDeque<String>,
    /// Pushed and not acked yet: what redelivery looks at, so its scan costs
    /// the in-flight count rather than every message of a long stream.
    unacked: HashSet<String>,
    round_robin: usize,
}

struct Delivery {
    /// Dropped once acked, so long streams do not hold every payload.
    payload: Vec<u8>,
    push: Push,
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
    attempts: u32,
    ack_latency: Option<Duration>,
    /// In `Deliveries::waiting`, so redelivery must not queue it twice.
    queued: bool,
}

impl WsSim {
    /// State for a WebSocket server that will listen on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            inner: Arc::new(Inner {
                addr,
                next_id: AtomicU64::new(1),
                tickets: Mutex::default(),
                client_config: Mutex::new(ClientConfig::default()),
                refusals: Mutex::default(),
                lost_acks: AtomicU64::new(0),
                silent: AtomicBool::new(false),
                redelivery_timeout: Mutex::new(DEFAULT_REDELIVERY_TIMEOUT),
                conns: Mutex::default(),
                deliveries: Mutex::default(),
                acks: Mutex::default(),
                pings: AtomicU64::new(0),
                connections_total: AtomicU64::new(0),
                changes: watch::channel(0).0,
            }),
        }
    }

    /// Start accepting connections and redelivering. Must run inside the
    /// simulator's runtime; the tasks end when that runtime does.
    pub fn serve(&self, listener: std::net::TcpListener) {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "simulated WebSocket listener unusable");
                return;
            }
        };
        let sim = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(sim.clone().connection(stream));
            }
        });
        let sim = self.clone();
        tokio::spawn(async move {
            loop {
                // A tick well under the timeout keeps redelivery close to it.
                let tick = (sim.redelivery_timeout() / 5)
                    .clamp(Duration::from_millis(5), Duration::from_millis(200));
                tokio::time::sleep(tick).await;
                sim.redeliver_due(Instant::now());
            }
        });
    }

    /// `127.0.0.1:PORT` of the WebSocket server.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    // ---- scripting ----

    /// Push an event envelope as `type=event` data frame(s); returns its `message_id`.
    pub fn push_event(&self, envelope: &Value) -> String {
        self.push(envelope.to_string().into_bytes(), Push::default())
    }

    /// Push a card callback envelope as a `type=card` data frame.
    pub fn push_card(&self, envelope: &Value) -> String {
        let push = Push {
            kind: MessageType::Card,
            ..Push::default()
        };
        self.push(envelope.to_string().into_bytes(), push)
    }

    /// Push any payload; it goes to a connected client now, or to the next
    /// one that connects.
    pub fn push(&self, payload: Vec<u8>, push: Push) -> String {
        let message_id = format!("sim-msg-{}", self.next_id());
        {
            let mut d = lock(&self.inner.deliveries);
            d.messages.insert(
                message_id.clone(),
                Delivery {
                    payload,
                    push,
                    first_sent: None,
                    last_sent: None,
                    attempts: 0,
                    ack_latency: None,
                    queued: true,
                },
            );
            d.unacked.insert(message_id.clone());
            d.waiting.push_back(message_id.clone());
        }
        self.flush_waiting();
        message_id
    }

    /// How long an unacked message waits before it is sent again.
    pub fn set_redelivery_timeout(&self, timeout: Duration) {
        *lock(&self.inner.redelivery_timeout) = timeout;
    }

    fn redelivery_timeout(&self) -> Duration {
        *lock(&self.inner.redelivery_timeout)
    }

    /// The config every following pong carries (all four keys).
    pub fn set_client_config(&self, config: ClientConfig) {
        *lock(&self.inner.client_config) = config;
    }

    /// Stop (or resume) answering pings, like a peer that went quiet.
    pub fn set_silent(&self, silent: bool) {
        self.inner.silent.store(silent, Ordering::SeqCst);
    }

    /// Refuse the next `times` handshakes with this `handshake-status` (also
    /// the HTTP status) and, if given, `handshake-autherrcode`.
    pub fn refuse_handshakes(&self, times: usize, status: u16, auth_err_code: Option<i64>) {
        lock(&self.inner.refusals).extend(std::iter::repeat_n((status, auth_err_code), times));
    }

    /// Lose the next `n` acks in transit: a network fault, not platform
    /// behaviour. They are not recorded, so their messages stay unacked and
    /// are re-pushed after the redelivery timeout, as the platform re-pushes
    /// what it got no ack for within 3 s (see the module doc).
    pub fn lose_acks(&self, n: u64) {
        self.inner.lost_acks.fetch_add(n, Ordering::SeqCst);
    }

    /// Close every open connection now, without a close frame.
    pub fn drop_connections(&self) {
        self.command_all(|| Command::Drop);
    }

    /// Close every open connection, without a close frame, after it has
    /// sent `frames` more data frames (so `1` cuts a fragmented message).
    pub fn drop_after_frames(&self, frames: u32) {
        self.command_all(|| Command::DropAfter(frames));
    }

    fn command_all(&self, command: impl Fn() -> Command) {
        for conn in lock(&self.inner.conns).iter() {
            // A closed receiver means that connection is already gone.
            let _ = conn.tx.send(command());
        }
    }

    // ---- observing ----

    /// Connections accepted so far (handshake completed).
    pub fn connections_total(&self) -> u64 {
        self.inner.connections_total.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        lock(&self.inner.conns).len()
    }

    /// Pings received so far.
    pub fn pings(&self) -> u64 {
        self.inner.pings.load(Ordering::SeqCst)
    }

    /// Every ack received, in order.
    pub fn acks(&self) -> Vec<RecordedAck> {
        lock(&self.inner.acks).clone()
    }

    pub fn ack_count(&self) -> usize {
        lock(&self.inner.acks).len()
    }

    /// Pushed messages not acked yet.
    pub fn unacked(&self) -> usize {
        lock(&self.inner.deliveries).unacked.len()
    }

    /// How many times a pushed message was sent (0 while waiting for a client).
    pub fn attempts(&self, message_id: &str) -> u32 {
        lock(&self.inner.deliveries)
            .messages
            .get(message_id)
            .map_or(0, |d| d.attempts)
    }

    /// Wait until `condition` holds, re-checking on every change; `false`
    /// if it still does not hold after `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&WsSim) -> bool,
    ) -> bool {
        let mut changes = self.inner.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return condition(self),
            }
        }
    }

    pub async fn wait_for_acks(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.ack_count() >= n).await
    }

    pub async fn wait_for_connections(&self, n: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.connections_total() >= n)
            .await
    }

    pub async fn wait_for_pings(&self, n: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.pings() >= n).await
    }

    /// Wait until every pushed message has been acked.
    pub async fn wait_all_acked(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.unacked() == 0).await
    }

    /// Push `n` events built by `envelope(i)`, keeping at most
    /// `max_in_flight` unacked, then wait for the rest. Assumes nothing else
    /// is in flight. Stops early if no progress is made within `stall`.
    pub async fn stream_events(
        &self,
        n: usize,
        max_in_flight: usize,
        stall: Duration,
        mut envelope: impl FnMut(usize) -> Value,
    ) -> StreamReport {
        let plan = StreamPlan {
            events: n,
            max_in_flight,
            rate: None,
            stall,
        };
        self.stream(plan, |i| envelope(i).to_string().into_bytes())
            .await
    }

    /// Push `plan.events` events whose envelope JSON is `payload(i)`, then
    /// wait until all are acked. Assumes nothing else is in flight. A stream
    /// that stops making progress for `plan.stall` ends early with what it has.
    pub async fn stream(
        &self,
        plan: StreamPlan,
        mut payload: impl FnMut(usize) -> Vec<u8>,
    ) -> StreamReport {
        let start = Instant::now();
        let interval = plan
            .rate
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(1.0 / r));
        let max_in_flight = plan.max_in_flight.max(1);
        let mut ids = Vec::with_capacity(plan.events);
        for i in 0..plan.events {
            if let Some(interval) = interval {
                // Slots are fixed from the start, so a late wake-up pushes the
                // events it overslept at once instead of drifting the rate.
                let due = start + interval.mul_f64(i as f64);
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                }
            }
            if !self
                .wait_until(plan.stall, |s| s.unacked() < max_in_flight)
                .await
            {
                break;
            }
            ids.push(self.push(payload(i), Push::default()));
        }
        self.wait_until(plan.stall, |s| s.unacked() == 0).await;
        let elapsed = start.elapsed();
        let d = lock(&self.inner.deliveries);
        let sent: Vec<&Delivery> = ids.iter().filter_map(|id| d.messages.get(id)).collect();
        let latencies: Vec<Duration> = sent.iter().filter_map(|m| m.ack_latency).collect();
        StreamReport {
            pushed: ids.len(),
            acked: latencies.len(),
            elapsed,
            latencies,
            redelivered: sent.iter().filter(|m| m.attempts > 1).count(),
        }
    }

    // ---- internals ----

    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::SeqCst)
    }

    fn changed(&self) {
        self.inner.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn issue_ticket(&self) -> (u64, String) {
        let device_id = self.next_id();
        let ticket = format!("sim-ticket-{}", uuid::Uuid::new_v4().simple());
        lock(&self.inner.tickets).insert(ticket.clone());
        (device_id, ticket)
    }

    /// The handshake callback's decision.
    fn admit(&self, req: &Request) -> Result<(), Refused> {
        if req.uri().path() != WS_PATH {
            return Err(Refused::new(404, None, "no such path"));
        }
        let ticket = req
            .uri()
            .query()
            .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "ticket"))
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        // A ticket is spent by any attempt that presents it, refused or not.
        let known = lock(&self.inner.tickets).remove(&ticket);
        if let Some((status, code)) = lock(&self.inner.refusals).pop_front() {
            return Err(Refused::new(status, code, "refused by the simulator"));
        }
        if !known {
            return Err(Refused::new(514, None, "ticket unknown or already used"));
        }
        Ok(())
    }

    async fn connection(self, stream: TcpStream) {
        // tungstenite fixes the callback's error type, large as it is.
        #[allow(clippy::result_large_err)]
        let callback = |req: &Request, resp: Response| match self.admit(req) {
            Ok(()) => Ok(resp),
            Err(refused) => Err(refused.into_response()),
        };
        let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
            return;
        };
        let id = self.next_id();
        let (tx, mut rx) = mpsc::unbounded_channel();
        lock(&self.inner.conns).push(Conn { id, tx });
        self.inner.connections_total.fetch_add(1, Ordering::SeqCst);
        self.changed();
        self.flush_waiting();

        let (mut sink, mut source) = ws.split();
        let mut drop_after: Option<u32> = None;
        'conn: loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(Command::Send(frames)) => {
                        for frame in frames {
                            if drop_after == Some(0) {
                                break 'conn;
                            }
                            if sink.send(Message::Binary(frame.encode().into())).await.is_err() {
                                break 'conn;
                            }
                            drop_after = drop_after.map(|n| n.saturating_sub(1));
                        }
                        if drop_after == Some(0) {
                            break 'conn;
                        }
                    }
                    Some(Command::DropAfter(0)) | Some(Command::Drop) | None => break 'conn,
                    Some(Command::DropAfter(n)) => drop_after = Some(n),
                },
                incoming = source.next() => match incoming {
                    Some(Ok(Message::Binary(bytes))) => {
                        if let Some(reply) = self.on_client_frame(id, &bytes) {
                            if sink.send(Message::Binary(reply.encode().into())).await.is_err() {
                                break 'conn;
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break 'conn,
                    Some(Ok(_)) => {}
                },
            }
        }
        // Dropping both halves closes the TCP stream with no close frame,
        // which is what a crashed or cut-off platform node looks like.
        lock(&self.inner.conns).retain(|c| c.id != id);
        self.changed();
    }

    /// Handle a frame from a client; returns the reply to send, if any.
    fn on_client_frame(&self, connection: u64, bytes: &[u8]) -> Option<Frame> {
        let frame = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "simulator got an undecodable frame");
                return None;
            }
        };
        match (frame.kind(), frame.method()) {
            (FrameKind::Ping, _) => {
                self.inner.pings.fetch_add(1, Ordering::SeqCst);
                self.changed();
                if self.inner.silent.load(Ordering::SeqCst) {
                    return None;
                }
                let config = lock(&self.inner.client_config).to_json();
                Some(Frame::pong(frame.service, Some(config)))
            }
            (_, Some(Method::Data)) => {
                let lost = self
                    .inner
                    .lost_acks
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if !lost {
                    self.record_ack(connection, frame);
                }
                None
            }
            _ => None,
        }
    }

    fn record_ack(&self, connection: u64, frame: Frame) {
        let at = Instant::now();
        let message_id = frame
            .header(header::MESSAGE_ID)
            .unwrap_or_default()
            .to_owned();
        let payload = frame
            .payload
            .as_deref()
            .and_then(|p| AckPayload::from_json(p).ok());
        let code = payload.as_ref().map_or(0, |p| p.code);
        let data = payload.and_then(|p| p.data_json().ok().flatten());
        let latency = {
            let mut d = lock(&self.inner.deliveries);
            let mut first_ack = false;
            let latency = d.messages.get_mut(&message_id).and_then(|m| {
                let latency = at.saturating_duration_since(m.first_sent?);
                if m.ack_latency.is_none() {
                    m.ack_latency = Some(latency);
                    m.payload = Vec::new();
                    first_ack = true;
                }
                Some(latency)
            });
            if first_ack {
                d.unacked.remove(&message_id);
            }
            latency
        };
        lock(&self.inner.acks).push(RecordedAck {
            message_id,
            code,
            data,
            frame,
            connection,
            at,
            latency,
        });
        self.changed();
    }

    /// Send messages pushed while nobody was connected.
    fn flush_waiting(&self) {
        loop {
            let next = {
                let mut d = lock(&self.inner.deliveries);
                if self.open_connections() == 0 {
                    return;
                }
                match d.waiting.pop_front() {
                    Some(id) => {
                        // Out of the queue now: if the connection goes before
                        // `send`, it must queue the message again.
                        if let Some(m) = d.messages.get_mut(&id) {
                            m.queued = false;
                        }
                        id
                    }
                    None => return,
                }
            };
            self.send(&next, Instant::now());
        }
    }

    /// Send again every message whose last send is older than the timeout.
    fn redeliver_due(&self, now: Instant) {
        let timeout = self.redelivery_timeout();
        let due: Vec<String> = {
            let d = lock(&self.inner.deliveries);
            d.unacked
                .iter()
                .filter(|id| {
                    d.messages.get(*id).is_some_and(|m| {
                        !m.queued
                            && m.last_sent
                                .is_some_and(|t| now.saturating_duration_since(t) >= timeout)
                    })
                })
                .cloned()
                .collect()
        };
        for id in due {
            tracing::debug!(message_id = %id, "simulator redelivering an unacked message");
            self.send(&id, now);
        }
    }

    /// Send one message to one connected client, round-robin, as the
    /// platform's cluster mode does. With no client it waits for one.
    fn send(&self, message_id: &str, now: Instant) {
        let mut d = lock(&self.inner.deliveries);
        let conns = lock(&self.inner.conns);
        let pick = d.round_robin % conns.len().max(1);
        d.round_robin = d.round_robin.wrapping_add(1);
        let Some(m) = d.messages.get_mut(message_id) else {
            return;
        };
        if m.ack_latency.is_some() {
            m.queued = false;
            return;
        }
        if conns.is_empty() {
            if !m.queued {
                m.queued = true;
                d.waiting.push_back(message_id.to_owned());
            }
            return;
        }
        m.queued = false;
        m.first_sent.get_or_insert(now);
        m.last_sent = Some(now);
        m.attempts += 1;
        let frames = self.frames(message_id, &m.payload, m.push);
        // If the connection just closed, the timeout sends it again elsewhere.
        let _ = conns[pick].tx.send(Command::Send(frames));
    }

    fn frames(&self, message_id: &str, payload: &[u8], push: Push) -> Vec<Frame> {
        let parts = push.fragments.clamp(1, payload.len().max(1));
        let size = payload.len().div_ceil(parts).max(1);
        let chunks: Vec<&[u8]> = if payload.is_empty() {
            vec![payload]
        } else {
            payload.chunks(size).collect()
        };
        let sum = chunks.len().to_string();
        let trace_id = format!("sim-trace-{}", self.next_id());
        chunks
            .into_iter()
            .enumerate()
            .map(|(seq, chunk)| {
                let id = self.next_id();
                Frame {
                    seq_id: id,
                    log_id: id,
                    service: SIM_SERVICE_ID,
                    method: Method::Data.as_i32(),
                    headers: vec![
                        Header::new(header::TYPE, push.kind.as_str()),
                        Header::new(header::MESSAGE_ID, message_id),
                        Header::new(header::SUM, sum.clone()),
                        Header::new(header::SEQ, seq.to_string()),
                        Header::new(header::TRACE_ID, trace_id.clone()),
                    ],
                    payload: Some(chunk.to_vec()),
                    ..Frame::default()
                }
            })
            .collect()
    }
}

/// A handshake answered with a non-101 status and `handshake-*` headers.
struct Refused {
    status: u16,
    auth_err_code: Option<i64>,
    msg: &'static str,
}

impl Refused {
    fn new(status: u16, auth_err_code: Option<i64>, msg: &'static str) -> Self {
        Self {
            status,
            auth_err_code,
            msg,
        }
    }

    fn into_response(self) -> ErrorResponse {
        let mut response = ErrorResponse::new(Some(self.msg.to_owned()));
        *response.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::FORBIDDEN);
        let headers = response.headers_mut();
        headers.insert("handshake-status", self.status.into());
        headers.insert("handshake-msg", HeaderValue::from_static(self.msg));
        if let Some(code) = self.auth_err_code {
            headers.insert("handshake-autherrcode", code.into());
        }
        response
    }
}

/// Register the bootstrap route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/callback/ws/endpoint", web::post().to(ws_endpoint));
}

#[derive(Deserialize)]
struct EndpointBody {
    #[serde(rename = "AppID")]
    app_id: String,
    #[serde(rename = "AppSecret")]
    app_secret: String,
}

/// Route `ws_endpoint`.
async fn ws_endpoint(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> HttpResponse {
    state.recorder.record(&req, &body);
    if let Some(r) = fault_response(&state, ROUTE_WS_ENDPOINT).await {
        return r;
    }
    match serde_json::from_slice::<EndpointBody>(&body) {
        Ok(c) if c.app_id == state.app_id && c.app_secret == state.app_secret => {}
        Ok(_) => {
            return HttpResponse::Ok()
                .json(json!({"code": 99991543, "msg": "app_id or app_secret is invalid"}))
        }
        Err(e) => {
            return HttpResponse::BadRequest()
                .json(json!({"code": 9499, "msg": format!("bad request: {e}")}))
        }
    }
    let ws = &state.ws;
    let (device_id, ticket) = ws.issue_ticket();
    // Real URLs start with `fpid=`; the Node SDK misreads whichever key comes first.
    let url = format!(
        "ws://{}{WS_PATH}?fpid=1&device_id={device_id}&service_id={SIM_SERVICE_ID}&ticket={ticket}",
        ws.addr()
    );
    let config = lock(&ws.inner.client_config).to_update();
    HttpResponse::Ok()
        .json(json!({"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": config}}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BaseUrl;
    use crate::sim::{Fault, Simulator, SIM_APP_ID, SIM_APP_SECRET};
    use crate::ws::ack::{ack_frame, AckStatus};
    use crate::ws::endpoint::{fetch_endpoint, EndpointError, HandshakeRefusal, RefusalKind};
    use crate::ws::fragments::FragmentBuffer;
    use crate::ws::{ClientConfigUpdate, Endpoint};
    use tokio::net::TcpStream;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

    const WAIT: Duration = Duration::from_secs(5);

    struct Client {
        ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
        service_id: i32,
    }

    impl Client {
        async fn connect(sim: &Simulator) -> Client {
            Self::connect_to(sim.base_url()).await
        }

        async fn connect_to(base: &str) -> Client {
            let ep = endpoint_at(base).await.unwrap();
            let (ws, _) = tokio_tungstenite::connect_async(ep.url.as_str())
                .await
                .unwrap();
            Client {
                ws,
                service_id: ep.service_id,
            }
        }

        async fn send(&mut self, frame: &Frame) {
            self.ws
                .send(Message::Binary(frame.encode().into()))
                .await
                .unwrap();
        }

        /// The next frame, `None` if the socket ended or nothing came in time.
        async fn next(&mut self, within: Duration) -> Option<Frame> {
            loop {
                match tokio::time::timeout(within, self.ws.next()).await.ok()?? {
                    Ok(Message::Binary(b)) => return Some(Frame::decode(&b).unwrap()),
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        }

        /// Receive a whole data message: (frame that completed it, payload).
        async fn message(&mut self) -> (Frame, Vec<u8>) {
            let mut buf = FragmentBuffer::default();
            loop {
                let frame = self.next(WAIT).await.expect("a data frame");
                let pos = frame.fragment_position().unwrap();
                let payload = frame.payload.clone().unwrap_or_default();
                let whole = buf
                    .push(pos.message_id, pos.sum, pos.seq, payload, Instant::now())
                    .unwrap();
                if let Some(whole) = whole {
                    return (frame, whole);
                }
            }
        }

        async fn ack(&mut self, frame: &Frame, payload: AckPayload) {
            self.send(&ack_frame(frame, &payload, Duration::from_millis(3)))
                .await;
        }
    }

    async fn endpoint(sim: &Simulator) -> Result<Endpoint, EndpointError> {
        endpoint_at(sim.base_url()).await
    }

    async fn endpoint_at(base: &str) -> Result<Endpoint, EndpointError> {
        let base = BaseUrl::parse(base).unwrap();
        fetch_endpoint(&base, SIM_APP_ID, SIM_APP_SECRET).await
    }

    fn envelope(id: &str) -> Value {
        json!({"schema": "2.0", "header": {"event_id": id, "event_type": "im.message.receive_v1",
               "create_time": "1608725989000", "token": "vt", "app_id": SIM_APP_ID, "tenant_key": "t"},
               "event": {"message": {"content": "x".repeat(100)}}})
    }

    #[tokio::test]
    async fn bootstrap_issues_a_url_whose_first_key_is_fpid() {
        let sim = Simulator::start().unwrap();
        let ep = endpoint(&sim).await.unwrap();
        let prefix = format!("ws://{}/ws/v2?fpid=1&device_id=", sim.ws().addr());
        assert!(ep.url.starts_with(&prefix), "{}", ep.url);
        assert_eq!(ep.service_id, SIM_SERVICE_ID);
        assert_eq!(ep.client_config, ClientConfig::default().to_update());

        let req = &sim.recorder().requests_to("/callback/ws/endpoint")[0];
        assert_eq!(req.header("locale"), Some("zh"));
        assert_eq!(
            req.json(),
            json!({"AppID": SIM_APP_ID, "AppSecret": SIM_APP_SECRET})
        );

        let base = BaseUrl::parse(sim.base_url()).unwrap();
        let err = fetch_endpoint(&base, SIM_APP_ID, "wrong")
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{err:?}");

        sim.recorder().inject(
            ROUTE_WS_ENDPOINT,
            Fault::Respond {
                status: 200,
                body: json!({"code": 1000040343, "msg": "internal error"}),
            },
            1,
        );
        sim.recorder().inject(
            ROUTE_WS_ENDPOINT,
            Fault::Respond {
                status: 503,
                body: json!({}),
            },
            1,
        );
        assert!(matches!(
            endpoint(&sim).await,
            Err(EndpointError::Busy { .. })
        ));
        assert!(matches!(
            endpoint(&sim).await,
            Err(EndpointError::Status(503))
        ));
        assert!(endpoint(&sim).await.is_ok());
    }

    #[tokio::test]
    async fn ping_is_answered_with_the_full_client_config() {
        let sim = Simulator::start().unwrap();
        let mut client = Client::connect(&sim).await;
        client.send(&Frame::ping(client.service_id)).await;
        let pong = client.next(WAIT).await.unwrap();
        assert_eq!(pong.kind(), FrameKind::Pong);
        let config: Value = serde_json::from_slice(pong.payload.as_deref().unwrap()).unwrap();
        assert_eq!(
            config,
            json!({"ReconnectCount": -1, "ReconnectInterval": 120, "ReconnectNonce": 30, "PingInterval": 120})
        );

        let pushed = ClientConfig {
            ping_interval: Duration::from_secs(5),
            ..ClientConfig::default()
        };
        sim.ws().set_client_config(pushed);
        client.send(&Frame::ping(client.service_id)).await;
        let pong = client.next(WAIT).await.unwrap();
        let update = ClientConfigUpdate::from_json(pong.payload.as_deref().unwrap()).unwrap();
        assert_eq!(ClientConfig::default().updated(&update), pushed);
        assert!(sim.ws().wait_for_pings(2, WAIT).await);

        sim.ws().set_silent(true);
        client.send(&Frame::ping(client.service_id)).await;
        assert!(sim.ws().wait_for_pings(3, WAIT).await);
        assert!(client.next(Duration::from_millis(300)).await.is_none());
    }

    #[tokio::test]
    async fn fragmented_event_is_reassembled_and_its_ack_recorded() {
        let sim = Simulator::start().unwrap();
        // Pushed before anyone is connected: delivered on connect.
        let push = Push {
            kind: MessageType::Event,
            fragments: 3,
        };
        let id = sim
            .ws()
            .push(envelope("ev-1").to_string().into_bytes(), push);
        let mut client = Client::connect(&sim).await;
        let (last, payload) = client.message().await;
        assert_eq!(last.header("sum"), Some("3"));
        assert_eq!(last.header("message_id"), Some(id.as_str()));
        assert!(last.header("trace_id").is_some());
        assert_eq!(
            serde_json::from_slice::<Value>(&payload).unwrap(),
            envelope("ev-1")
        );

        client
            .ack(&last, AckPayload::callback(AckStatus::Ok, None))
            .await;
        assert!(sim.ws().wait_for_acks(1, WAIT).await);
        let ack = &sim.ws().acks()[0];
        assert_eq!(ack.message_id, id);
        assert_eq!(ack.code, 200);
        assert_eq!(ack.data, Some(json!({})));
        assert_eq!(ack.frame.header("biz_rt"), Some("3"));
        assert_eq!(ack.frame.seq_id, last.seq_id);
        assert!(ack.latency.is_some());
        assert_eq!(sim.ws().unacked(), 0);
        assert_eq!(sim.ws().attempts(&id), 1);
    }

    #[tokio::test]
    async fn card_frames_carry_type_card() {
        let sim = Simulator::start().unwrap();
        let mut client = Client::connect(&sim).await;
        sim.ws().push_card(&envelope("card-1"));
        let (frame, _) = client.message().await;
        assert_eq!(frame.kind(), FrameKind::Card);
    }

    #[tokio::test]
    async fn unacked_event_is_redelivered() {
        let sim = Simulator::start().unwrap();
        sim.ws().set_redelivery_timeout(Duration::from_millis(100));
        let mut client = Client::connect(&sim).await;
        let id = sim.ws().push_event(&envelope("ev-2"));
        let (first, _) = client.message().await;
        let (second, _) = client.message().await;
        assert_eq!(second.header("message_id"), Some(id.as_str()));
        assert_ne!(first.seq_id, second.seq_id);
        client
            .ack(&second, AckPayload::event(AckStatus::Ok, None))
            .await;
        assert!(sim.ws().wait_all_acked(WAIT).await);
        assert!(sim.ws().attempts(&id) >= 2);
    }

    #[tokio::test]
    async fn dropped_connection_ends_without_close_and_event_goes_to_the_next_client() {
        let sim = Simulator::start().unwrap();
        sim.ws().set_redelivery_timeout(Duration::from_millis(100));
        let mut client = Client::connect(&sim).await;
        assert!(
            sim.ws()
                .wait_until(WAIT, |s| s.open_connections() == 1)
                .await
        );
        sim.ws().drop_after_frames(1);
        let push = Push {
            kind: MessageType::Event,
            fragments: 3,
        };
        let id = sim
            .ws()
            .push(envelope("ev-3").to_string().into_bytes(), push);
        let first = client.next(WAIT).await.unwrap();
        assert_eq!(first.header("seq"), Some("0"));
        // The socket ends with no close frame.
        match tokio::time::timeout(WAIT, client.ws.next()).await.unwrap() {
            Some(Err(_)) | None => {}
            other => panic!("expected an abrupt end, got {other:?}"),
        }
        assert!(
            sim.ws()
                .wait_until(WAIT, |s| s.open_connections() == 0)
                .await
        );

        let mut second = Client::connect(&sim).await;
        let (last, _) = second.message().await;
        assert_eq!(last.header("message_id"), Some(id.as_str()));
        second
            .ack(&last, AckPayload::event(AckStatus::Ok, None))
            .await;
        assert!(sim.ws().wait_all_acked(WAIT).await);
        assert_eq!(sim.ws().connections_total(), 2);
    }

    #[tokio::test]
    async fn refused_handshakes_carry_the_handshake_headers() {
        let sim = Simulator::start().unwrap();
        sim.ws().refuse_handshakes(1, 514, Some(1_000_040_350));
        sim.ws().refuse_handshakes(1, 403, None);
        for expected in [RefusalKind::ConnectionLimit, RefusalKind::Forbidden] {
            let ep = endpoint(&sim).await.unwrap();
            let err = tokio_tungstenite::connect_async(ep.url.as_str())
                .await
                .unwrap_err();
            let refusal = HandshakeRefusal::from_ws_error(&err).unwrap();
            assert_eq!(refusal.kind(), expected, "{refusal}");
            assert!(refusal.message.is_some());
        }
        // A ticket is single-use.
        let ep = endpoint(&sim).await.unwrap();
        let (_ws, _) = tokio_tungstenite::connect_async(ep.url.as_str())
            .await
            .unwrap();
        let err = tokio_tungstenite::connect_async(ep.url.as_str())
            .await
            .unwrap_err();
        let refusal = HandshakeRefusal::from_ws_error(&err).unwrap();
        assert_eq!(
            (refusal.status, refusal.kind()),
            (514, RefusalKind::Retryable)
        );
        assert_eq!(sim.ws().connections_total(), 1);
    }

    #[tokio::test]
    async fn stream_keeps_in_flight_bounded_and_reports_latency() {
        let sim = Simulator::start().unwrap();
        let mut client = Client::connect(&sim).await;
        let acker = tokio::spawn(async move {
            while let Some(frame) = client.next(WAIT).await {
                client
                    .ack(&frame, AckPayload::event(AckStatus::Ok, None))
                    .await;
            }
        });
        let report = sim
            .ws()
            .stream_events(300, 16, WAIT, |i| envelope(&format!("stream-{i}")))
            .await;
        assert_eq!((report.pushed, report.acked), (300, 300));
        assert_eq!(report.latencies.len(), 300);
        assert_eq!(report.redelivered, 0);
        assert_eq!(sim.ws().unacked(), 0);

        // Paced: 50 events at 500/s cannot be done before the 50th slot.
        let plan = StreamPlan {
            events: 50,
            max_in_flight: 1000,
            rate: Some(500.0),
            stall: WAIT,
        };
        let paced = sim
            .ws()
            .stream(plan, |i| {
                envelope(&format!("paced-{i}")).to_string().into_bytes()
            })
            .await;
        assert_eq!((paced.pushed, paced.acked), (50, 50));
        assert!(paced.elapsed >= Duration::from_millis(98), "{paced:?}");
        sim.ws().drop_connections();
        acker.await.unwrap();
    }

    #[tokio::test]
    async fn stream_that_gets_no_acks_ends_at_the_stall_limit() {
        let sim = Simulator::start().unwrap();
        let _silent_client = Client::connect(&sim).await;
        let plan = StreamPlan {
            events: 10,
            max_in_flight: 4,
            rate: None,
            stall: Duration::from_millis(300),
        };
        let report = sim
            .ws()
            .stream(plan, |i| {
                envelope(&format!("lost-{i}")).to_string().into_bytes()
            })
            .await;
        assert_eq!((report.pushed, report.acked), (4, 0));
        assert_eq!(sim.ws().unacked(), 4);
    }

    #[tokio::test]
    async fn every_event_is_acked_through_forced_disconnects() {
        let sim = Simulator::start().unwrap();
        sim.ws().set_redelivery_timeout(Duration::from_millis(200));
        let base = sim.base_url().to_owned();
        // A client that acks whole messages and reconnects whenever cut off.
        let client = tokio::spawn(async move {
            loop {
                let mut client = Client::connect_to(&base).await;
                let mut buf = FragmentBuffer::default();
                while let Some(frame) = client.next(Duration::from_secs(60)).await {
                    let pos = frame.fragment_position().unwrap();
                    let payload = frame.payload.clone().unwrap_or_default();
                    let pushed =
                        buf.push(pos.message_id, pos.sum, pos.seq, payload, Instant::now());
                    if let Ok(Some(_)) = pushed {
                        let ack = ack_frame(
                            &frame,
                            &AckPayload::event(AckStatus::Ok, None),
                            Duration::ZERO,
                        );
                        if client
                            .ws
                            .send(Message::Binary(ack.encode().into()))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
        let mut ids = HashSet::new();
        for i in 0..2000 {
            if i % 100 == 99 {
                // Cut the connection that replaced the last one cut off.
                let nth = (i / 100 + 1) as u64;
                let replaced =
                    |s: &WsSim| s.connections_total() >= nth && s.open_connections() == 1;
                assert!(sim.ws().wait_until(WAIT, replaced).await);
                sim.ws().drop_connections();
            }
            let push = Push {
                kind: MessageType::Event,
                fragments: 1 + i % 3,
            };
            ids.insert(sim.ws().push(
                envelope(&format!("bulk-{i}")).to_string().into_bytes(),
                push,
            ));
        }
        assert!(
            sim.ws().wait_all_acked(Duration::from_secs(60)).await,
            "{} unacked",
            sim.ws().unacked()
        );
        let acked: HashSet<String> = sim.ws().acks().into_iter().map(|a| a.message_id).collect();
        assert_eq!(acked, ids);
        assert!(sim.ws().connections_total() >= 21);
        client.abort();
    }
}
