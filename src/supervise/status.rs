//! What each supervised actor reports, and the messages every one answers.
//!
//! The restart count lives inside the actor's own [`Lifecycle`]: actix's
//! `Supervisor` keeps the same actor value across restarts, so the count
//! survives without any state shared between actors. `/admin/actors` asks
//! each actor with [`GetStatus`]; one that does not answer in time is
//! reported as `unresponsive`, which is itself the useful fact.

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::backoff::Backoff;
use crate::metrics::{ACTOR_MAILBOX, ACTOR_RESTARTS};

/// After this long running cleanly, the next failure starts the backoff over.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// How long `/admin/actors` waits for one actor's answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorState {
    Starting,
    Running,
    /// Restarted, waiting out its backoff before working again.
    Backoff,
    /// Running, but its work is failing (e.g. the connection is down).
    Degraded,
    /// The platform refuses it (e.g. a rejected app secret); it retries
    /// slowly while an operator fixes the cause.
    Refused,
    /// Did not answer a status request in time.
    Unresponsive,
}

/// One actor's status, as `/admin/actors` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActorStatus {
    #[schema(value_type = String)]
    pub name: &'static str,
    pub state: ActorState,
    pub restarts: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Work queued or in flight in this actor.
    pub in_flight: u64,
    pub since: DateTime<Utc>,
    /// Actor-specific facts (connection id, pool size…).
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// Ask an actor for its status.
#[derive(Message)]
#[rtype(result = "ActorStatus")]
pub struct GetStatus;

/// Make an actor fail and be restarted by its supervisor, as a crash would.
/// Operators use it (`POST /admin/actors/{name}/restart`) to unstick an actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Restart {
    pub reason: String,
}

/// The supervision bookkeeping each actor embeds.
#[derive(Debug)]
pub struct Lifecycle {
    name: &'static str,
    state: ActorState,
    restarts: u64,
    consecutive: u32,
    last_error: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
    running_since: Option<Instant>,
    backoff: Backoff,
}

impl Lifecycle {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            state: ActorState::Starting,
            restarts: 0,
            consecutive: 0,
            last_error: None,
            last_error_at: None,
            since: Utc::now(),
            running_since: None,
            backoff: Backoff::RESTART,
        }
    }

    /// Use `backoff` for restarts instead of [`Backoff::RESTART`].
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn state(&self) -> ActorState {
        self.state
    }

    /// The supervisor is about to restart the actor.
    pub fn restarting(&mut self) {
        let was_healthy = self
            .running_since
            .is_some_and(|t| t.elapsed() >= HEALTHY_AFTER);
        self.consecutive = if was_healthy { 1 } else { self.consecutive + 1 };
        self.restarts += 1;
        self.running_since = None;
        self.set_state(ActorState::Backoff);
        metrics::counter!(ACTOR_RESTARTS, "actor" => self.name).increment(1);
        tracing::warn!(
            actor = self.name,
            restarts = self.restarts,
            "actor restarting"
        );
    }

    /// How long to wait before working again: none on the first start.
    pub fn start_delay(&self) -> Option<Duration> {
        (self.consecutive > 0).then(|| self.backoff.delay(self.consecutive))
    }

    pub fn running(&mut self) {
        self.running_since = Some(Instant::now());
        self.set_state(ActorState::Running);
    }

    pub fn degraded(&mut self, error: impl std::fmt::Display) {
        self.record_error(error);
        self.set_state(ActorState::Degraded);
    }

    pub fn refused(&mut self, error: impl std::fmt::Display) {
        self.record_error(error);
        self.set_state(ActorState::Refused);
    }

    pub fn record_error(&mut self, error: impl std::fmt::Display) {
        self.last_error = Some(error.to_string());
        self.last_error_at = Some(Utc::now());
    }

    fn set_state(&mut self, state: ActorState) {
        if self.state != state {
            self.state = state;
            self.since = Utc::now();
        }
    }

    pub fn status(&self, in_flight: u64, details: serde_json::Value) -> ActorStatus {
        metrics::gauge!(ACTOR_MAILBOX, "actor" => self.name).set(in_flight as f64);
        ActorStatus {
            name: self.name,
            state: self.state,
            restarts: self.restarts,
            last_error: self.last_error.clone(),
            last_error_at: self.last_error_at,
            in_flight,
            since: self.since,
            details,
        }
    }
}

/// An actor run under supervision. Implement this and invoke
/// [`managed_actor!`](crate::managed_actor) for the type, which expects the
/// actor's [`Lifecycle`] in a field named `lifecycle`.
pub trait Managed: Actor<Context = Context<Self>> {
    /// The actor's label in metrics and `/admin/actors`.
    const NAME: &'static str;

    /// Arm timers, open streams, start work. Called on start and again after
    /// each restart (once the backoff has passed), because a restart drops
    /// every interval and stream the actor had.
    fn on_start(&mut self, ctx: &mut Context<Self>);

    /// Forget per-run state before a restart.
    fn on_restart(&mut self) {}

    /// Work queued or in flight, for the mailbox gauge.
    fn in_flight(&self) -> u64 {
        0
    }

    /// Actor-specific facts for `/admin/actors`.
    fn details(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Implements `Actor`, `Supervised`, `Handler<GetStatus>` and
/// `Handler<Restart>` for a [`Managed`] type, so every actor restarts, backs
/// off and reports the same way.
#[macro_export]
macro_rules! managed_actor {
    ($ty:ty) => {
        impl ::actix::Actor for $ty {
            type Context = ::actix::Context<Self>;

            fn started(&mut self, ctx: &mut Self::Context) {
                use $crate::supervise::status::Managed;
                match self.lifecycle.start_delay() {
                    None => {
                        self.lifecycle.running();
                        self.on_start(ctx);
                    }
                    Some(delay) => {
                        ::actix::AsyncContext::run_later(ctx, delay, |act, ctx| {
                            act.lifecycle.running();
                            act.on_start(ctx);
                        });
                    }
                }
            }
        }

        impl ::actix::Supervised for $ty {
            fn restarting(&mut self, _ctx: &mut Self::Context) {
                use $crate::supervise::status::Managed;
                self.lifecycle.restarting();
                self.on_restart();
            }
        }

        impl ::actix::Handler<$crate::supervise::status::GetStatus> for $ty {
            type Result = ::actix::MessageResult<$crate::supervise::status::GetStatus>;

            fn handle(&mut self, _: $crate::supervise::status::GetStatus, _: &mut Self::Context) -> Self::Result {
                use $crate::supervise::status::Managed;
                ::actix::MessageResult(self.lifecycle.status(self.in_flight(), self.details()))
            }
        }

        impl ::actix::Handler<$crate::supervise::status::Restart> for $ty {
            type Result = ();

            fn handle(&mut self, msg: $crate::supervise::status::Restart, ctx: &mut Self::Context) {
                use $crate::supervise::status::Managed;
                ::tracing::warn!(actor = Self::NAME, reason = %msg.reason, "restart requested");
                self.lifecycle.record_error(format!("restart requested: {}", msg.reason));
                ::actix::ActorContext::stop(ctx);
            }
        }
    };
}

/// A registered actor, as the board sees it.
#[derive(Clone)]
struct Entry {
    name: &'static str,
    status: Recipient<GetStatus>,
    restart: Recipient<Restart>,
}

/// The supervised actors, for `/admin/actors` and the mailbox gauges.
/// Built once at start-up; holds addresses only, no actor state.
#[derive(Clone, Default)]
pub struct StatusBoard {
    entries: Vec<Entry>,
}

impl StatusBoard {
    pub fn register<A>(&mut self, addr: &Addr<A>)
    where
        A: Managed + Handler<GetStatus> + Handler<Restart>,
        A::Context: actix::dev::ToEnvelope<A, GetStatus> + actix::dev::ToEnvelope<A, Restart>,
    {
        self.entries.push(Entry {
            name: A::NAME,
            status: addr.clone().recipient(),
            restart: addr.clone().recipient(),
        });
    }

    /// Register an actor that reports status but is restarted by other
    /// means (the database executors).
    pub fn register_status(
        &mut self,
        name: &'static str,
        status: Recipient<GetStatus>,
        restart: Recipient<Restart>,
    ) {
        self.entries.push(Entry {
            name,
            status,
            restart,
        });
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.name).collect()
    }

    /// Ask every actor, concurrently.
    pub async fn collect(&self) -> Vec<ActorStatus> {
        let asks = self.entries.iter().map(|e| async move {
            match e.status.send(GetStatus).timeout(STATUS_TIMEOUT).await {
                Ok(status) => status,
                Err(err) => ActorStatus {
                    name: e.name,
                    state: ActorState::Unresponsive,
                    restarts: 0,
                    last_error: Some(format!("no status answer: {err}")),
                    last_error_at: Some(Utc::now()),
                    in_flight: 0,
                    since: Utc::now(),
                    details: serde_json::Value::Null,
                },
            }
        });
        futures_util::future::join_all(asks).await
    }

    /// Ask the named actor to restart. `false` when no actor has that name.
    pub fn restart(&self, name: &str, reason: &str) -> bool {
        match self.entries.iter().find(|e| e.name == name) {
            Some(e) => {
                e.restart.do_send(Restart {
                    reason: reason.to_owned(),
                });
                true
            }
            None => false,
        }
    }
}
