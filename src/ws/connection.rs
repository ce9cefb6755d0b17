//! `WsConnection`: the app's long connection to the open platform.
//!
//! It owns one WebSocket at a time: fetches a fresh endpoint (the URL's
//! ticket is single-use), connects, pings every `PingInterval` and applies
//! the `ClientConfig` pongs carry, reassembles fragmented data frames, hands
//! each complete event to the [`EventRouter`] and writes the ack frame back
//! with the router's answer. A connection that sends nothing for
//! [`SILENCE_LIMIT`] ping intervals is treated as dead (the official Python
//! client never notices a silent peer).
//!
//! When the socket ends it reconnects on the platform's schedule (a random
//! wait within `ReconnectNonce`, then every `ReconnectInterval`) for one
//! burst of attempts (see [`super::reconnect`]); when the burst runs out the
//! actor stops and its supervisor restarts it after a backoff capped at
//! 5 minutes, which starts a new burst, so it never gives up. A refusal
//! (403, the connection limit, a rejected app secret) is retried every
//! [`REFUSED_RETRY`]: the actor is `refused`, with the reason in
//! `/admin/actors` and in `lark_ws_refused{reason}`.
//!
//! Events in flight when a socket drops are not acked on the next one: the
//! platform redelivers them and the dedup ledger drops what was handled.
//! Neither is an event the ledger could not record (the database is down):
//! it gets no ack at all, so the platform sends it again.
//!
//! On shutdown, [`Drain`] stops taking new events (unacked, they are
//! redelivered), lets the ones in flight finish, writes their acks, closes
//! the socket and only then answers, so a restart neither drops work that
//! was done nor leaves it unacked.

use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::ack::{ack_frame, AckPayload, AckStatus};
use super::client_config::{ClientConfig, ClientConfigUpdate};
use super::endpoint::{fetch_endpoint, Endpoint};
use super::fragments::FragmentBuffer;
use super::frame::{Frame, FrameKind};
use super::reconnect::{ReconnectSchedule, RefusedReason, REFUSED_RETRY};
use super::WsError;
use crate::domain::{BaseUrl, Secret};
use crate::events::router::{EventRouter, EventSource, RouteEvent, RouteOutcome, Routed};
use crate::metrics::{WS_CONNECTED, WS_FRAMES, WS_RECONNECTS, WS_REFUSED};
use crate::supervise::backoff::Backoff;
use crate::supervise::{ActorState, Lifecycle, Managed};

pub const NAME: &str = "ws_connection";

/// Ping intervals without any frame before the connection counts as dead.
pub const SILENCE_LIMIT: u32 = 3;
/// How long the WebSocket upgrade may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Outgoing frames queued for the writer; acks wait for room rather than
/// pile up without bound.
const WRITE_QUEUE: usize = 4096;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the connection needs from configuration.
#[derive(Clone)]
pub struct WsConfig {
    pub domain: BaseUrl,
    pub app_id: String,
    pub app_secret: Secret,
    /// Ping interval until the platform's ClientConfig says otherwise.
    pub heartbeat_interval: Duration,
    /// Attempts in one burst of reconnects (the platform's ReconnectCount,
    /// if smaller and not negative, wins); a restart starts the next burst.
    pub max_reconnect_retries: u32,
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Connected,
    /// Waiting before the next attempt.
    Waiting,
    /// The platform refuses the app; the next attempt is [`REFUSED_RETRY`] away.
    Refused,
    /// Shutting down: no new events, no reconnects (see [`Drain`]).
    Draining,
}

/// Stop taking events, finish those in flight and write their acks, then
/// close the socket. Answers once all that is done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

/// One live socket's state; dropped as a whole when it ends.
struct Live {
    generation: u64,
    endpoint_device_id: String,
    service_id: i32,
    writer: mpsc::Sender<Message>,
    /// Ends once the writer has sent what was queued and closed the socket.
    writer_done: tokio::task::JoinHandle<()>,
    reader: SpawnHandle,
    heartbeat: SpawnHandle,
    last_frame: Instant,
    connected_at: chrono::DateTime<chrono::Utc>,
}

pub struct WsConnection {
    config: WsConfig,
    router: Addr<EventRouter>,
    client_config: ClientConfig,
    phase: Phase,
    live: Option<Live>,
    generation: u64,
    schedule: Option<ReconnectSchedule>,
    /// Why the platform refuses us, until a connection succeeds.
    refused: Option<RefusedReason>,
    fragments: FragmentBuffer,
    in_flight: u64,
    /// Callers of [`Drain`] waiting for it to finish.
    drain_waiters: Vec<oneshot::Sender<()>>,
    connected_tx: watch::Sender<bool>,
    lifecycle: Lifecycle,
}

impl WsConnection {
    pub fn new(
        config: WsConfig,
        router: Addr<EventRouter>,
        connected_tx: watch::Sender<bool>,
    ) -> Self {
        let client_config = ClientConfig {
            ping_interval: config.heartbeat_interval,
            ..ClientConfig::default()
        };
        Self {
            config,
            router,
            client_config,
            phase: Phase::Connecting,
            live: None,
            generation: 0,
            schedule: None,
            refused: None,
            fragments: FragmentBuffer::default(),
            in_flight: 0,
            drain_waiters: Vec::new(),
            connected_tx,
            lifecycle: Lifecycle::new(NAME).with_backoff(Backoff::RECONNECT),
        }
    }

    fn set_connected(&mut self, connected: bool) {
        metrics::gauge!(WS_CONNECTED).set(if connected { 1.0 } else { 0.0 });
        self.connected_tx.send_replace(connected);
    }

    /// Fetch an endpoint and connect.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.phase == Phase::Draining {
            return;
        }
        self.phase = Phase::Connecting;
        let config = self.config.clone();
        // A failed handshake still hands back the bootstrap's ClientConfig:
        // the SDKs apply it as soon as the bootstrap answers (lark-oapi
        // `ws/client.py` `_get_conn_url`), so the retries follow it.
        let attempt = async move {
            let endpoint =
                fetch_endpoint(&config.domain, &config.app_id, config.app_secret.expose())
                    .await
                    .map_err(|e| (None, WsError::from(e)))?;
            let update = Some(endpoint.client_config);
            let (socket, _response) = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_tungstenite::connect_async(&endpoint.url),
            )
            .await
            .map_err(|_| (update, WsError::Silent(CONNECT_TIMEOUT)))?
            .map_err(|e| (update, WsError::from(e)))?;
            Ok::<_, (Option<ClientConfigUpdate>, WsError)>((endpoint, socket))
        };
        ctx.spawn(
            attempt
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok((endpoint, socket)) => act.connected(endpoint, socket, ctx),
                    Err((update, e)) => {
                        if let Some(update) = update {
                            act.client_config = act.client_config.updated(&update);
                        }
                        act.lost(e, ctx)
                    }
                }),
        );
    }

    fn connected(&mut self, endpoint: Endpoint, socket: Socket, ctx: &mut Context<Self>) {
        if self.phase == Phase::Draining {
            // Opened while shutting down: dropping it closes it unused.
            return;
        }
        self.client_config = self.client_config.updated(&endpoint.client_config);
        self.generation += 1;
        let (sink, stream) = socket.split();
        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        let writer_done = actix::spawn(write_loop(sink, queue));
        let reader = ctx.add_stream(tagged(stream, self.generation));
        let heartbeat = self.arm_heartbeat(ctx);
        tracing::info!(
            conn_id = %endpoint.device_id,
            service_id = endpoint.service_id,
            ping_interval = ?self.client_config.ping_interval,
            "WebSocket connected"
        );
        self.live = Some(Live {
            generation: self.generation,
            endpoint_device_id: endpoint.device_id,
            service_id: endpoint.service_id,
            writer,
            writer_done,
            reader,
            heartbeat,
            last_frame: Instant::now(),
            connected_at: chrono::Utc::now(),
        });
        self.phase = Phase::Connected;
        self.schedule = None;
        self.set_refused(None);
        self.set_connected(true);
        if self.lifecycle.state() != ActorState::Running {
            self.lifecycle.running();
        }
        // The SDKs ping right after connecting; the pong carries the config.
        self.send_ping();
    }

    /// Ping now and every interval; check for silence on each tick.
    fn arm_heartbeat(&mut self, ctx: &mut Context<Self>) -> SpawnHandle {
        let interval = self.client_config.ping_interval;
        ctx.run_interval(interval, move |act, ctx| {
            let silent_for = act.live.as_ref().map(|l| l.last_frame.elapsed());
            if let Some(silent) = silent_for.filter(|s| *s >= interval * SILENCE_LIMIT) {
                act.lost(WsError::Silent(silent), ctx);
                return;
            }
            act.fragments.expire(Instant::now());
            act.send_ping();
        })
    }

    fn send_ping(&mut self) {
        if let Some(live) = &self.live {
            let ping = Frame::ping(live.service_id);
            if live.writer.try_send(Message::binary(ping.encode())).is_ok() {
                count_frame("out", FrameKind::Ping);
            }
        }
    }

    /// The socket ended or could not be opened: tidy up and decide whether
    /// and when to try again.
    fn lost(&mut self, error: WsError, ctx: &mut Context<Self>) {
        if let Some(live) = self.live.take() {
            ctx.cancel_future(live.reader);
            ctx.cancel_future(live.heartbeat);
            tracing::warn!(conn_id = %live.endpoint_device_id, error = %error, "WebSocket lost");
        } else {
            tracing::warn!(error = %error, "WebSocket connect failed");
        }
        self.fragments.clear();
        self.set_connected(false);
        if self.phase == Phase::Draining {
            return;
        }
        let refusal = error.refusal();
        self.set_refused(refusal);
        if let Some(reason) = refusal {
            tracing::error!(
                reason = reason.as_str(),
                error = %error,
                retry_in = ?REFUSED_RETRY,
                "the platform refuses the long connection; check APP_ID/APP_SECRET and the app's connections in the developer console"
            );
            self.phase = Phase::Refused;
            self.schedule = None;
            self.lifecycle.refused(&error);
            metrics::counter!(WS_RECONNECTS).increment(1);
            ctx.run_later(REFUSED_RETRY, |act, ctx| act.connect(ctx));
            return;
        }
        self.lifecycle.degraded(&error);
        let config = self.client_config;
        let max = self.config.max_reconnect_retries;
        let schedule = self
            .schedule
            .get_or_insert_with(|| ReconnectSchedule::new(max, &config));
        match schedule.next_delay(&mut rand::thread_rng()) {
            Some(delay) => {
                self.phase = Phase::Waiting;
                metrics::counter!(WS_RECONNECTS).increment(1);
                tracing::info!(?delay, attempt = schedule.attempts(), "reconnecting");
                ctx.run_later(delay, |act, ctx| act.connect(ctx));
            }
            None => {
                // Stopping hands over to the supervisor, whose restart
                // (after `Backoff::RECONNECT`) starts the next burst.
                let error = WsError::BurstExhausted(schedule.attempts());
                tracing::warn!(error = %error, "reconnect burst used up");
                self.lifecycle.record_error(&error);
                ctx.stop();
            }
        }
    }

    /// Publish why the platform refuses us. Only a change is written, so a
    /// process running several connections (tests) keeps each one's value.
    fn set_refused(&mut self, reason: Option<RefusedReason>) {
        if self.refused == reason {
            return;
        }
        for r in [self.refused, reason].into_iter().flatten() {
            let value = if Some(r) == reason { 1.0 } else { 0.0 };
            metrics::gauge!(WS_REFUSED, "reason" => r.as_str()).set(value);
        }
        self.refused = reason;
    }

    fn on_frame(&mut self, bytes: &[u8], ctx: &mut Context<Self>) {
        let frame = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                crate::metrics::bad_input("websocket", "bad_frame");
                tracing::warn!(error = %e, len = bytes.len(), "dropped an undecodable frame");
                return;
            }
        };
        let kind = frame.kind();
        count_frame("in", kind);
        match kind {
            FrameKind::Pong => self.on_pong(&frame, ctx),
            FrameKind::Event | FrameKind::Card => self.on_data(frame, ctx),
            FrameKind::Ping => {}
            FrameKind::Unknown => {
                crate::metrics::bad_input("websocket", "unknown_frame");
                tracing::debug!(method = frame.method, type_ = ?frame.header("type"), "ignored a frame of unknown kind");
            }
        }
    }

    fn on_pong(&mut self, frame: &Frame, ctx: &mut Context<Self>) {
        let Some(update) = frame
            .payload
            .as_deref()
            .filter(|p| !p.is_empty())
            .and_then(|p| ClientConfigUpdate::from_json(p).ok())
        else {
            return;
        };
        let updated = self.client_config.updated(&update);
        if updated == self.client_config {
            return;
        }
        let ping_changed = updated.ping_interval != self.client_config.ping_interval;
        self.client_config = updated;
        tracing::info!(config = ?updated, "applied the platform's ClientConfig");
        if ping_changed {
            let heartbeat = self.arm_heartbeat(ctx);
            if let Some(live) = &mut self.live {
                let old = std::mem::replace(&mut live.heartbeat, heartbeat);
                ctx.cancel_future(old);
            }
        }
    }

    fn on_data(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        if self.phase == Phase::Draining {
            // Not routed and not acked: the platform redelivers it.
            return;
        }
        let started = Instant::now();
        let Some(generation) = self.live.as_ref().map(|l| l.generation) else {
            return;
        };
        let complete = match frame.fragment_position() {
            Ok(pos) => {
                let (id, sum, seq) = (pos.message_id.to_owned(), pos.sum, pos.seq);
                let payload = frame.payload.clone().unwrap_or_default();
                self.fragments
                    .push(&id, sum, seq, payload, started)
                    .map_err(WsError::from)
            }
            Err(e) => Err(WsError::from(e)),
        };
        let payload = match complete {
            Ok(Some(payload)) => payload,
            Ok(None) => return,
            Err(e) => {
                crate::metrics::bad_input("websocket", "bad_fragment");
                tracing::warn!(error = %e, "dropped a bad fragment");
                // Answer so the platform does not wait on it; 500 lets it retry.
                self.write_ack(
                    &frame,
                    generation,
                    AckPayload::event(AckStatus::Failed, None),
                    started,
                );
                return;
            }
        };
        self.in_flight += 1;
        let route = self.router.send(RouteEvent {
            payload,
            source: EventSource::WebSocket,
        });
        ctx.spawn(route.into_actor(self).map(move |routed, act, ctx| {
            act.in_flight -= 1;
            let routed = routed.unwrap_or_else(|e| Routed {
                outcome: RouteOutcome::Unavailable(format!("event router unavailable: {e}")),
                callback: false,
            });
            match ack_payload(&routed) {
                Some(payload) => act.write_ack(&frame, generation, payload, started),
                None => tracing::warn!(
                    "event not recorded, so not acked; the platform will redeliver it"
                ),
            }
            act.finish_drain_if_idle(ctx);
        }));
    }

    /// Once draining and nothing is in flight: stop reading, let the writer
    /// flush the acks and close the socket, then answer the drain callers.
    fn finish_drain_if_idle(&mut self, ctx: &mut Context<Self>) {
        if self.phase != Phase::Draining || self.in_flight > 0 {
            return;
        }
        let waiters = std::mem::take(&mut self.drain_waiters);
        let writer_done = self.live.take().map(|live| {
            ctx.cancel_future(live.reader);
            ctx.cancel_future(live.heartbeat);
            // With its sender gone, the write loop ends after the queue.
            drop(live.writer);
            live.writer_done
        });
        self.fragments.clear();
        self.set_connected(false);
        actix::spawn(async move {
            if let Some(done) = writer_done {
                // A write loop that panicked has nothing left to flush.
                let _ = done.await;
            }
            for waiter in waiters {
                let _ = waiter.send(());
            }
        });
    }

    fn write_ack(&mut self, frame: &Frame, generation: u64, payload: AckPayload, started: Instant) {
        // An ack belongs to the socket the frame came on; after a reconnect
        // the platform redelivers instead.
        let Some(live) = self.live.as_ref().filter(|l| l.generation == generation) else {
            return;
        };
        let ack = ack_frame(frame, &payload, started.elapsed());
        if live.writer.try_send(Message::binary(ack.encode())).is_ok() {
            count_frame("out", frame.kind());
        } else {
            tracing::warn!("write queue full or closed; the platform will redeliver this event");
        }
    }
}

/// The ack for a routed event, or `None` when it must have none (it was not
/// recorded, so the platform must redeliver it).
///
/// Whether `data` is required follows the envelope, not the frame type: the
/// platform sends `card.action.trigger` in `type=event` frames (lark-oapi
/// `ws/client.py` dispatches only those and drops `type=card` ones; the
/// `card` type exists in the vocabulary of oapi-sdk-go `ws/const.go`), so a
/// callback in either kind of frame gets at least `{}`.
fn ack_payload(routed: &Routed) -> Option<AckPayload> {
    let outcome = &routed.outcome;
    if matches!(outcome, RouteOutcome::Unavailable(_)) {
        return None;
    }
    let status = if outcome.code() == 200 {
        AckStatus::Ok
    } else {
        AckStatus::Failed
    };
    let body = outcome
        .body()
        .map(|b| serde_json::to_vec(b).unwrap_or_else(|_| b"{}".to_vec()));
    Some(if routed.callback {
        AckPayload::callback(status, body.as_deref())
    } else {
        AckPayload::event(status, body.as_deref())
    })
}

fn count_frame(direction: &'static str, kind: FrameKind) {
    metrics::counter!(WS_FRAMES, "direction" => direction, "kind" => kind.as_str()).increment(1);
}

/// Forward queued frames to the socket until either side closes.
async fn write_loop(mut sink: SplitSink<Socket, Message>, mut queue: mpsc::Receiver<Message>) {
    while let Some(message) = queue.recv().await {
        if sink.send(message).await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
}

/// A read from one socket, tagged with its connection generation so a late
/// item from an old socket is never mistaken for the current one's.
struct Inbound {
    generation: u64,
    item: Option<Result<Message, tungstenite::Error>>,
}

/// The socket's reads, plus a final `None` item when it ends.
fn tagged(
    stream: SplitStream<Socket>,
    generation: u64,
) -> impl futures_util::Stream<Item = Inbound> {
    stream
        .map(move |item| Inbound {
            generation,
            item: Some(item),
        })
        .chain(futures_util::stream::once(async move {
            Inbound {
                generation,
                item: None,
            }
        }))
}

impl StreamHandler<Inbound> for WsConnection {
    fn handle(&mut self, inbound: Inbound, ctx: &mut Context<Self>) {
        if self.live.as_ref().map(|l| l.generation) != Some(inbound.generation) {
            return;
        }
        if let Some(live) = &mut self.live {
            live.last_frame = Instant::now();
        }
        match inbound.item {
            Some(Ok(Message::Binary(bytes))) => self.on_frame(&bytes, ctx),
            Some(Ok(Message::Close(frame))) => {
                let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                self.lost(
                    WsError::Socket(Box::new(tungstenite::Error::ConnectionClosed)),
                    ctx,
                );
                tracing::info!(%reason, "platform closed the connection");
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => self.lost(WsError::from(e), ctx),
            None => self.lost(
                WsError::Socket(Box::new(tungstenite::Error::ConnectionClosed)),
                ctx,
            ),
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // The chained `None` item already reported the end.
    }
}

impl Managed for WsConnection {
    const NAME: &'static str = NAME;

    fn on_start(&mut self, ctx: &mut Context<Self>) {
        self.connect(ctx);
    }

    fn on_restart(&mut self) {
        self.live = None;
        self.schedule = None;
        self.fragments.clear();
        self.in_flight = 0;
        self.set_connected(false);
    }

    fn in_flight(&self) -> u64 {
        self.in_flight
    }

    fn details(&self) -> serde_json::Value {
        json!({
            "phase": format!("{:?}", self.phase).to_lowercase(),
            "conn_id": self.live.as_ref().map(|l| l.endpoint_device_id.clone()),
            "connected_since": self.live.as_ref().map(|l| l.connected_at),
            "ping_interval_seconds": self.client_config.ping_interval.as_secs(),
            "reconnect_attempts": self.schedule.as_ref().map_or(0, ReconnectSchedule::attempts),
            "refused_reason": self.refused.map(RefusedReason::as_str),
            "partial_messages": self.fragments.len(),
        })
    }
}

crate::managed_actor!(WsConnection);

impl Handler<Drain> for WsConnection {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.drain_waiters.push(tx);
        if self.phase != Phase::Draining {
            tracing::info!(in_flight = self.in_flight, "draining the long connection");
            self.phase = Phase::Draining;
        }
        self.finish_drain_if_idle(ctx);
        Box::pin(async move {
            // A dropped sender means the actor went away: nothing left to wait for.
            let _ = rx.await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ack(outcome: RouteOutcome, callback: bool) -> Option<AckPayload> {
        ack_payload(&Routed { outcome, callback })
    }

    #[test]
    fn every_callback_outcome_is_acked_with_a_body() {
        for outcome in [
            RouteOutcome::Handled(None),
            RouteOutcome::Duplicate,
            RouteOutcome::Unhandled,
            RouteOutcome::Failed("handler failed".into()),
            RouteOutcome::Rejected("not an envelope".into()),
        ] {
            // An ack reports 200 or 500; anything not handled is a 500.
            let code = if outcome.code() == 200 { 200 } else { 500 };
            let payload = ack(outcome, true).expect("acked");
            assert_eq!(payload.code, code);
            assert_eq!(payload.data_json().unwrap(), Some(json!({})));
        }
        let toast = json!({"toast": {"type": "info", "content": "ok"}});
        let payload = ack(RouteOutcome::Handled(Some(toast.clone())), true).unwrap();
        assert_eq!(payload.data_json().unwrap(), Some(toast));
    }

    #[test]
    fn plain_events_carry_no_body_unless_the_handler_gave_one() {
        let payload = ack(RouteOutcome::Duplicate, false).unwrap();
        assert_eq!((payload.code, payload.data), (200, None));
        let payload = ack(RouteOutcome::Failed("x".into()), false).unwrap();
        assert_eq!((payload.code, payload.data), (500, None));
    }

    #[test]
    fn an_unrecorded_event_gets_no_ack() {
        assert!(ack(RouteOutcome::Unavailable("db down".into()), true).is_none());
        assert!(ack(RouteOutcome::Unavailable("db down".into()), false).is_none());
    }
}
