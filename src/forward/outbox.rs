//! `Outbox`: delivers `event_outbox` rows to their sinks.
//!
//! Per sink it keeps at most `concurrency` deliveries in flight. It claims
//! due rows with a lease (`claimed_until`), delivers them, and records the
//! outcomes in batches: delivered, retry later (exponential backoff with
//! jitter, so a sink that is down is retried for as long as it takes), or
//! dead after `max_attempts`. Another replica sharing the database skips
//! leased rows, and takes a row over only once its lease has run out (its
//! owner died mid-delivery), so nothing is lost across restarts and two
//! replicas do not deliver the same row at once.
//!
//! It wakes when the router commits rows, and polls as a safety net (rows
//! retried later, rows another replica queued, expired leases).
//!
//! At start it turns the pending rows of sinks that are no longer
//! configured (renamed or removed) into dead letters with the reason
//! `sink removed`: no lane would ever claim them, and as dead letters they
//! are listed in `/admin/outbox` for an operator to see.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::config::SinkConfig;
use super::sink::{Delivery, Sink};
use super::Forwarding;
use crate::db::models::outbox_event::{self, Attempt, OutboxEvent};
use crate::db::{Db, DbError};
use crate::metrics::{FORWARD_SECONDS, FORWARD_TOTAL, OUTBOX_DEAD_LETTERS, OUTBOX_PENDING};
use crate::supervise::{Lifecycle, Managed};

pub const NAME: &str = "event_outbox";

/// How often due rows are looked for without a wake-up.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often the backlog gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(2);
/// A lease outlives one attempt by this margin, so it only runs out when
/// its owner is gone.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// Delivered rows are kept this long for inspection, then pruned.
const RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// One sink at run time.
struct Lane {
    config: SinkConfig,
    sink: Arc<Sink>,
    in_flight: usize,
    claiming: bool,
}

pub struct Outbox {
    db: Db,
    forwarding: Forwarding,
    lanes: Vec<Lane>,
    /// Identifies this replica's leases.
    owner: String,
    /// Outcomes waiting to be written.
    outcomes: Vec<(i64, Attempt)>,
    writing: bool,
    lifecycle: Lifecycle,
}

impl Outbox {
    /// `sinks` pairs each configured sink with its client.
    pub fn new(db: Db, forwarding: Forwarding, sinks: Vec<(SinkConfig, Arc<Sink>)>) -> Self {
        Self {
            db,
            forwarding,
            lanes: sinks
                .into_iter()
                .map(|(config, sink)| Lane {
                    config,
                    sink,
                    in_flight: 0,
                    claiming: false,
                })
                .collect(),
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            outcomes: Vec::new(),
            writing: false,
            lifecycle: Lifecycle::new(NAME),
        }
    }

    fn pump_all(&mut self, ctx: &mut Context<Self>) {
        for lane in 0..self.lanes.len() {
            self.pump(lane, ctx);
        }
    }

    /// Claim rows for `lane` while it has room. It refills once half its
    /// slots are free, so claims go out in batches rather than one by one.
    fn pump(&mut self, index: usize, ctx: &mut Context<Self>) {
        let lane = &mut self.lanes[index];
        let free = lane.config.concurrency - lane.in_flight;
        if lane.claiming || (lane.in_flight > 0 && free < lane.config.concurrency.div_ceil(2)) {
            return;
        }
        lane.claiming = true;
        let sink = lane.config.name.clone();
        let owner = self.owner.clone();
        let lease = lane.config.timeout + LEASE_MARGIN;
        let lease_until = crate::db::now()
            + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
        let db = self.db.clone();
        let claim = async move {
            db.write(move |c| outbox_event::claim(c, &sink, &owner, free as i64, lease_until))
                .await
        };
        ctx.spawn(claim.into_actor(self).map(move |result, act, ctx| {
            act.lanes[index].claiming = false;
            match result {
                Ok(rows) => {
                    act.healthy();
                    let full = rows.len() == free && free > 0;
                    for row in rows {
                        act.deliver(index, row, ctx);
                    }
                    if full {
                        act.pump(index, ctx);
                    }
                }
                Err(e) => act.failed(&e),
            }
        }));
    }

    fn deliver(&mut self, index: usize, row: OutboxEvent, ctx: &mut Context<Self>) {
        let lane = &mut self.lanes[index];
        lane.in_flight += 1;
        let sink = lane.sink.clone();
        let name = lane.config.name.clone();
        let max_attempts = lane.config.max_attempts;
        let backoff = lane.config.backoff;
        let span = tracing::info_span!("forward", sink = %name, event_id = %row.event_id, attempt = row.attempts + 1);
        let work = async move {
            let started = Instant::now();
            let attempt = row.attempts.max(0) as u32 + 1;
            let result = sink
                .deliver(&Delivery {
                    event_id: &row.event_id,
                    event_type: &row.event_type,
                    payload: &row.payload,
                    attempt,
                })
                .await;
            metrics::histogram!(FORWARD_SECONDS, "sink" => name.clone())
                .record(started.elapsed().as_secs_f64());
            let (outcome, label) = match result {
                Ok(()) => (Attempt::Delivered, "ok"),
                Err(e) if attempt >= max_attempts => {
                    tracing::warn!(error = %e, "giving up: the event is now a dead letter");
                    (
                        Attempt::Dead {
                            error: e.to_string(),
                        },
                        "dead",
                    )
                }
                Err(e) => {
                    tracing::debug!(error = %e, "delivery failed; will retry");
                    let delay = backoff.delay(attempt);
                    let next_attempt_at = crate::db::now()
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(1));
                    (
                        Attempt::Retry {
                            next_attempt_at,
                            error: e.to_string(),
                        },
                        "retry",
                    )
                }
            };
            metrics::counter!(FORWARD_TOTAL, "sink" => name, "outcome" => label).increment(1);
            (row.id, outcome)
        };
        let work = tracing::Instrument::instrument(work, span);
        ctx.spawn(work.into_actor(self).map(move |outcome, act, ctx| {
            act.lanes[index].in_flight -= 1;
            act.outcomes.push(outcome);
            act.write_outcomes(ctx);
            act.pump(index, ctx);
        }));
    }

    /// Write waiting outcomes in one transaction; more queue meanwhile.
    fn write_outcomes(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.outcomes.is_empty() {
            return;
        }
        self.writing = true;
        let batch = std::mem::take(&mut self.outcomes);
        let owner = self.owner.clone();
        let db = self.db.clone();
        let write = async move {
            db.write(move |c| outbox_event::record_attempts(c, &owner, &batch))
                .await
        };
        ctx.spawn(write.into_actor(self).map(|result, act, ctx| {
            act.writing = false;
            match result {
                Ok(_) => act.healthy(),
                // The rows stay leased and are delivered again once the
                // lease runs out: at least once, never lost.
                Err(e) => act.failed(&e),
            }
            act.write_outcomes(ctx);
        }));
    }

    fn healthy(&mut self) {
        if self.lifecycle.state() == crate::supervise::ActorState::Degraded {
            self.lifecycle.running();
        }
    }

    fn failed(&mut self, e: &DbError) {
        tracing::warn!(error = %e, "outbox database work failed");
        self.lifecycle.degraded(e);
    }

    fn refresh_gauges(&mut self, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        ctx.spawn(
            async move { db.read(outbox_event::backlog).await }
                .into_actor(self)
                .map(|result, act, _| match result {
                    Ok((pending, dead)) => {
                        metrics::gauge!(OUTBOX_PENDING).set(pending as f64);
                        metrics::gauge!(OUTBOX_DEAD_LETTERS).set(dead as f64);
                    }
                    Err(e) => act.failed(&e),
                }),
        );
    }

    fn prune(&mut self, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        let cutoff = crate::db::now()
            - chrono::Duration::from_std(RETENTION).unwrap_or(chrono::Duration::days(3));
        ctx.spawn(
            async move {
                db.write(move |c| outbox_event::prune_delivered(c, cutoff))
                    .await
            }
            .into_actor(self)
            .map(|result, act, _| match result {
                Ok(n) if n > 0 => tracing::info!(pruned = n, "pruned delivered outbox rows"),
                Ok(_) => {}
                Err(e) => act.lifecycle.record_error(e),
            }),
        );
    }

    /// Dead-letter the rows of sinks that are gone (see the module doc).
    fn bury_unconfigured(&mut self, ctx: &mut Context<Self>) {
        let configured: Vec<String> = self.lanes.iter().map(|l| l.config.name.clone()).collect();
        let db = self.db.clone();
        ctx.spawn(
            async move {
                db.write(move |c| outbox_event::bury_unconfigured(c, &configured))
                    .await
            }
            .into_actor(self)
            .map(|result, act, ctx| match result {
                Ok(by_sink) => {
                    for (sink, rows) in &by_sink {
                        tracing::warn!(%sink, rows, "sink no longer configured: its pending events are now dead letters (GET /admin/outbox?state=dead)");
                    }
                    if !by_sink.is_empty() {
                        act.refresh_gauges(ctx);
                    }
                }
                Err(e) => act.failed(&e),
            }),
        );
    }

    /// Pump whenever the router (or an operator's retry) wakes us.
    fn listen(&mut self, ctx: &mut Context<Self>) {
        let forwarding = self.forwarding.clone();
        ctx.spawn(
            async move { forwarding.woken().await }
                .into_actor(self)
                .map(|(), act, ctx| {
                    act.pump_all(ctx);
                    act.listen(ctx);
                }),
        );
    }
}

impl Managed for Outbox {
    const NAME: &'static str = NAME;

    fn on_start(&mut self, ctx: &mut Context<Self>) {
        self.bury_unconfigured(ctx);
        self.listen(ctx);
        self.pump_all(ctx);
        self.refresh_gauges(ctx);
        self.prune(ctx);
        ctx.run_interval(POLL_INTERVAL, |act, ctx| act.pump_all(ctx));
        ctx.run_interval(GAUGE_INTERVAL, |act, ctx| act.refresh_gauges(ctx));
        ctx.run_interval(PRUNE_INTERVAL, |act, ctx| act.prune(ctx));
    }

    fn on_restart(&mut self) {
        // In-flight work died with the old context; its rows are still
        // leased and come back when the leases run out.
        for lane in &mut self.lanes {
            lane.in_flight = 0;
            lane.claiming = false;
        }
        self.outcomes.clear();
        self.writing = false;
    }

    fn in_flight(&self) -> u64 {
        self.lanes.iter().map(|l| l.in_flight as u64).sum()
    }

    fn details(&self) -> serde_json::Value {
        let lanes: HashMap<&str, usize> = self
            .lanes
            .iter()
            .map(|l| (l.config.name.as_str(), l.in_flight))
            .collect();
        serde_json::json!({ "in_flight_by_sink": lanes })
    }
}

crate::managed_actor!(Outbox);
