//! `Ledger`: the dedup ledger (`processed_events`) with group commit.
//!
//! Every event costs one lookup and one insert. Doing each as its own
//! transaction caps throughput at the database's commit rate (a PostgreSQL
//! commit waits for a WAL flush), so the ledger batches: while one lookup
//! (or insert) batch is at the database, new requests queue, and the next
//! batch takes all of them in one statement. At low load a request goes out
//! at once; under load batches grow by themselves.
//!
//! Entries older than [`RETENTION`] are pruned: the platform stops
//! redelivering long before (its last webhook retry comes about 7 hours
//! after the first attempt).
//!
//! When a lookup or an insert fails, the database is taken to be down: the
//! ledger answers lookups with an error at once (so no handler runs for an
//! event that could not be recorded, and the event is not acked), publishes
//! the failure for `/readyz` ([`Ledger::health`]), and probes the database
//! with an empty write transaction every [`PROBE_INTERVAL`] until one
//! commits. The probe is a write because a SQLite file whose write lock
//! another process holds still answers reads; and because it runs by
//! itself, the service recovers even if no event arrives to try again.

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{oneshot, watch};

use crate::db::models::outbox_event::{self, NewOutboxEvent};
use crate::db::models::processed_event::{self, ProcessedEvent};
use crate::db::{Db, DbError};
use crate::supervise::{Lifecycle, Managed};

pub const NAME: &str = "event_ledger";

/// How long an event id is remembered.
pub const RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// The most ids one statement carries.
const MAX_BATCH: usize = 512;
/// Pause between write probes while the database is failing.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// `None` while the ledger can write; otherwise why it cannot.
pub type LedgerHealth = Option<String>;

/// The ledger could not answer; the event must not be acked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("dedup ledger unavailable: {0}")]
pub struct LedgerError(String);

impl From<DbError> for LedgerError {
    fn from(e: DbError) -> Self {
        Self(e.to_string())
    }
}

/// Has this event already been processed?
#[derive(Message)]
#[rtype(result = "Result<bool, LedgerError>")]
pub struct IsProcessed {
    pub event_id: String,
}

/// Record a processed event, and queue its outbox rows in the same
/// transaction (only if the event is new, so a redelivery or another
/// replica's copy queues nothing twice); answers whether it was new.
#[derive(Message)]
#[rtype(result = "Result<bool, LedgerError>")]
pub struct RecordProcessed {
    pub event: ProcessedEvent,
    pub outbox: Vec<NewOutboxEvent>,
}

/// `/readyz` could not reach the database. Kept as the ledger's last error,
/// so `/admin/actors` shows why (the ledger is where database health is
/// reported), but events are not refused on one failed check: the ledger's
/// own reads and writes decide that.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DatabaseUnreachable {
    pub error: String,
}

type Reply = oneshot::Sender<Result<bool, LedgerError>>;

/// One queue of requests waiting for their batch.
struct Queue<T> {
    waiting: Vec<(T, Reply)>,
    in_flight: bool,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            waiting: Vec::new(),
            in_flight: false,
        }
    }
}

impl<T> Queue<T> {
    /// The next batch to send, unless one is already at the database.
    fn take_batch(&mut self) -> Option<Vec<(T, Reply)>> {
        if self.in_flight || self.waiting.is_empty() {
            return None;
        }
        self.in_flight = true;
        let n = self.waiting.len().min(MAX_BATCH);
        Some(self.waiting.drain(..n).collect())
    }
}

pub struct Ledger {
    db: Db,
    lifecycle: Lifecycle,
    checks: Queue<String>,
    records: Queue<(ProcessedEvent, Vec<NewOutboxEvent>)>,
    health: watch::Sender<LedgerHealth>,
    probing: bool,
}

impl Ledger {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            lifecycle: Lifecycle::new(NAME),
            checks: Queue::default(),
            records: Queue::default(),
            health: watch::channel(None).0,
            probing: false,
        }
    }

    /// Whether the ledger can write now, for readiness.
    pub fn health(&self) -> watch::Receiver<LedgerHealth> {
        self.health.subscribe()
    }

    fn failing(&self) -> Option<String> {
        self.health.borrow().clone()
    }

    fn flush_checks(&mut self, ctx: &mut Context<Self>) {
        let Some(batch) = self.checks.take_batch() else {
            return;
        };
        let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
        let db = self.db.clone();
        let lookup = async move { db.read(move |c| processed_event::existing(c, &ids)).await };
        ctx.spawn(lookup.into_actor(self).map(move |result, act, ctx| {
            act.checks.in_flight = false;
            act.note(&result, ctx);
            match result {
                Ok(found) => {
                    for (id, reply) in batch {
                        let _ = reply.send(Ok(found.contains(&id)));
                    }
                }
                Err(e) => fail_all(batch, e.into()),
            }
            act.flush_checks(ctx);
        }));
    }

    fn flush_records(&mut self, ctx: &mut Context<Self>) {
        let Some(batch) = self.records.take_batch() else {
            return;
        };
        let rows: Vec<ProcessedEvent> = batch.iter().map(|((row, _), _)| row.clone()).collect();
        let outbox: Vec<NewOutboxEvent> = batch
            .iter()
            .flat_map(|((_, queued), _)| queued.iter().cloned())
            .collect();
        let db = self.db.clone();
        let insert = async move {
            db.write(move |c| {
                let new = processed_event::insert_new(c, &rows)?;
                let fresh: std::collections::HashSet<&str> =
                    new.iter().map(String::as_str).collect();
                let queued: Vec<NewOutboxEvent> = outbox
                    .into_iter()
                    .filter(|r| fresh.contains(r.event_id.as_str()))
                    .collect();
                outbox_event::insert(c, &queued)?;
                Ok(new)
            })
            .await
        };
        ctx.spawn(insert.into_actor(self).map(move |result, act, ctx| {
            act.records.in_flight = false;
            act.note(&result, ctx);
            match result {
                Ok(new) => {
                    for ((row, _), reply) in batch {
                        let _ = reply.send(Ok(new.contains(&row.event_id)));
                    }
                }
                Err(e) => fail_all(batch, e.into()),
            }
            act.flush_records(ctx);
        }));
    }

    fn note<T>(&mut self, result: &Result<T, DbError>, ctx: &mut Context<Self>) {
        match result {
            Ok(_) if self.failing().is_some() => self.recovered(),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "dedup ledger unavailable; events are not acked until it recovers");
                self.lifecycle.degraded(e);
                self.health.send_replace(Some(e.to_string()));
                self.probe_later(ctx);
            }
        }
    }

    fn recovered(&mut self) {
        tracing::info!("dedup ledger writes again");
        self.lifecycle.running();
        self.health.send_replace(None);
    }

    /// Try an empty write transaction after [`PROBE_INTERVAL`], and again
    /// after each failure, until one commits.
    fn probe_later(&mut self, ctx: &mut Context<Self>) {
        if self.probing {
            return;
        }
        self.probing = true;
        ctx.run_later(PROBE_INTERVAL, |act, ctx| {
            let db = act.db.clone();
            ctx.spawn(
                async move { db.write(|_| Ok(())).await }
                    .into_actor(act)
                    .map(|result, act, ctx| {
                        act.probing = false;
                        match result {
                            Ok(()) if act.failing().is_some() => act.recovered(),
                            Ok(()) => {}
                            Err(e) => {
                                act.health.send_replace(Some(e.to_string()));
                                act.probe_later(ctx);
                            }
                        }
                    }),
            );
        });
    }

    fn prune(&mut self, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        let cutoff = crate::db::now()
            - chrono::Duration::from_std(RETENTION).unwrap_or(chrono::Duration::days(3));
        ctx.spawn(
            async move { db.write(move |c| processed_event::prune(c, cutoff)).await }
                .into_actor(self)
                .map(|result, act, _| match result {
                    Ok(n) if n > 0 => tracing::info!(pruned = n, "pruned the dedup ledger"),
                    Ok(_) => {}
                    Err(e) => act.lifecycle.record_error(e),
                }),
        );
    }
}

fn fail_all<T>(batch: Vec<(T, Reply)>, err: LedgerError) {
    for (_, reply) in batch {
        let _ = reply.send(Err(err.clone()));
    }
}

/// The answer a request gets once its batch is back.
fn await_reply(
    rx: oneshot::Receiver<Result<bool, LedgerError>>,
) -> ResponseFuture<Result<bool, LedgerError>> {
    Box::pin(async move {
        rx.await
            .unwrap_or_else(|_| Err(LedgerError("the ledger restarted before answering".into())))
    })
}

impl Managed for Ledger {
    const NAME: &'static str = NAME;

    fn on_start(&mut self, ctx: &mut Context<Self>) {
        self.prune(ctx);
        ctx.run_interval(PRUNE_INTERVAL, |act, ctx| act.prune(ctx));
        if self.failing().is_some() {
            self.probe_later(ctx);
        }
    }

    fn on_restart(&mut self) {
        // Waiting requests get an error through their dropped senders.
        self.checks = Queue::default();
        self.records = Queue::default();
        // A restart drops the pending probe; `on_start` arms a new one.
        self.probing = false;
    }

    fn in_flight(&self) -> u64 {
        (self.checks.waiting.len() + self.records.waiting.len()) as u64
    }
}

crate::managed_actor!(Ledger);

impl Handler<IsProcessed> for Ledger {
    type Result = ResponseFuture<Result<bool, LedgerError>>;

    fn handle(&mut self, msg: IsProcessed, ctx: &mut Context<Self>) -> Self::Result {
        // While the database is down, refuse before any handler runs: its
        // work could not be recorded, so it would only run again later.
        if let Some(reason) = self.failing() {
            return Box::pin(async move { Err(LedgerError(reason)) });
        }
        let (tx, rx) = oneshot::channel();
        self.checks.waiting.push((msg.event_id, tx));
        self.flush_checks(ctx);
        await_reply(rx)
    }
}

impl Handler<RecordProcessed> for Ledger {
    type Result = ResponseFuture<Result<bool, LedgerError>>;

    fn handle(&mut self, msg: RecordProcessed, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.records.waiting.push(((msg.event, msg.outbox), tx));
        self.flush_records(ctx);
        await_reply(rx)
    }
}

impl Handler<DatabaseUnreachable> for Ledger {
    type Result = ();

    fn handle(&mut self, msg: DatabaseUnreachable, _: &mut Context<Self>) {
        self.lifecycle
            .record_error(format!("readiness check: {}", msg.error));
    }
}
