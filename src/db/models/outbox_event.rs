//! `event_outbox`: events waiting to be forwarded, one row per (event,
//! sink). A row is `pending` until a sink accepted it (`delivered`) or it
//! ran out of attempts (`dead`, a dead letter an operator can retry).
//!
//! Claims are leases: a replica sets `claimed_by`/`claimed_until` on the
//! rows it is about to deliver, and every later update of a row checks
//! `claimed_by`, so a replica whose lease ran out (and whose row another
//! replica took over) cannot overwrite the newer outcome.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::event_outbox::dsl as o;
use crate::db::{AnyConnection, DbError};

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const DEAD: &str = "dead";
/// Every state, for validating a filter.
pub const STATES: [&str; 3] = [PENDING, DELIVERED, DEAD];

/// A row.
#[derive(Debug, Clone, Queryable, Selectable, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[diesel(table_name = crate::db::schema::event_outbox)]
pub struct OutboxEvent {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub sink: String,
    /// The envelope JSON, as received.
    #[serde(skip)]
    pub payload: String,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    #[serde(skip)]
    pub claimed_by: Option<String>,
    pub claimed_until: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub delivered_at: Option<NaiveDateTime>,
}

/// A row to queue.
#[derive(Debug, Clone, Insertable, PartialEq, Eq)]
#[diesel(table_name = crate::db::schema::event_outbox)]
pub struct NewOutboxEvent {
    pub event_id: String,
    pub event_type: String,
    pub sink: String,
    pub payload: String,
    pub state: &'static str,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
}

impl NewOutboxEvent {
    /// A pending row, due now.
    pub fn pending(event_id: &str, event_type: &str, sink: &str, payload: &str) -> Self {
        let now = crate::db::now();
        Self {
            event_id: event_id.to_owned(),
            event_type: event_type.to_owned(),
            sink: sink.to_owned(),
            payload: payload.to_owned(),
            state: PENDING,
            attempts: 0,
            next_attempt_at: now,
            created_at: now,
        }
    }
}

/// Queue rows; a row already queued for the same (event, sink) is kept.
pub fn insert(conn: &mut AnyConnection, rows: &[NewOutboxEvent]) -> Result<usize, DbError> {
    if rows.is_empty() {
        return Ok(0);
    }
    match conn {
        AnyConnection::Postgresql(c) => Ok(diesel::insert_into(o::event_outbox)
            .values(rows)
            .on_conflict_do_nothing()
            .execute(c)?),
        // As in the ledger: SQLite batch inserts run row by row anyway.
        AnyConnection::Sqlite(c) => {
            let mut n = 0;
            for row in rows {
                n += diesel::insert_into(o::event_outbox)
                    .values(row)
                    .on_conflict_do_nothing()
                    .execute(c)?;
            }
            Ok(n)
        }
    }
}

/// Lease up to `limit` due rows of `sink` to `owner` until `lease_until`,
/// oldest first. Run it in a write transaction: on PostgreSQL the rows are
/// picked `FOR UPDATE SKIP LOCKED`, so two replicas claiming at once get
/// disjoint rows; SQLite's `BEGIN IMMEDIATE` serialises claimers anyway.
pub fn claim(
    conn: &mut AnyConnection,
    sink: &str,
    owner: &str,
    limit: i64,
    lease_until: NaiveDateTime,
) -> Result<Vec<OutboxEvent>, DbError> {
    let now = crate::db::now();
    let due = o::event_outbox
        .filter(o::state.eq(PENDING))
        .filter(o::sink.eq(sink))
        .filter(o::next_attempt_at.le(now))
        .filter(o::claimed_until.is_null().or(o::claimed_until.lt(now)))
        .order(o::id)
        .limit(limit)
        .select(o::id);
    let ids: Vec<i64> = match conn {
        AnyConnection::Postgresql(c) => due.for_update().skip_locked().load(c)?,
        AnyConnection::Sqlite(c) => due.load(c)?,
    };
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    diesel::update(o::event_outbox.filter(o::id.eq_any(&ids)))
        .set((o::claimed_by.eq(owner), o::claimed_until.eq(lease_until)))
        .execute(conn)?;
    Ok(o::event_outbox
        .filter(o::id.eq_any(&ids))
        .order(o::id)
        .select(OutboxEvent::as_select())
        .load(conn)?)
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Try again at `next_attempt_at`.
    Retry {
        next_attempt_at: NaiveDateTime,
        error: String,
    },
    /// Out of attempts.
    Dead {
        error: String,
    },
}

/// Record the outcomes of `owner`'s attempts (row id, attempt, outcome);
/// rows no longer leased to `owner` are left alone.
pub fn record_attempts(
    conn: &mut AnyConnection,
    owner: &str,
    outcomes: &[(i64, Attempt)],
) -> Result<usize, DbError> {
    let now = crate::db::now();
    let delivered: Vec<i64> = outcomes
        .iter()
        .filter(|(_, a)| *a == Attempt::Delivered)
        .map(|(id, _)| *id)
        .collect();
    let mut n = 0;
    if !delivered.is_empty() {
        n += diesel::update(
            o::event_outbox
                .filter(o::id.eq_any(&delivered))
                .filter(o::claimed_by.eq(owner)),
        )
        .set((
            o::state.eq(DELIVERED),
            o::attempts.eq(o::attempts + 1),
            o::delivered_at.eq(now),
            o::claimed_by.eq(None::<String>),
            o::claimed_until.eq(None::<NaiveDateTime>),
            o::last_error.eq(None::<String>),
        ))
        .execute(conn)?;
    }
    for (id, attempt) in outcomes {
        let (state, next, error) = match attempt {
            Attempt::Delivered => continue,
            Attempt::Retry {
                next_attempt_at,
                error,
            } => (PENDING, *next_attempt_at, error),
            Attempt::Dead { error } => (DEAD, now, error),
        };
        n += diesel::update(
            o::event_outbox
                .filter(o::id.eq(id))
                .filter(o::claimed_by.eq(owner)),
        )
        .set((
            o::state.eq(state),
            o::attempts.eq(o::attempts + 1),
            o::next_attempt_at.eq(next),
            o::claimed_by.eq(None::<String>),
            o::claimed_until.eq(None::<NaiveDateTime>),
            o::last_error.eq(error),
        ))
        .execute(conn)?;
    }
    Ok(n)
}

/// Rows, newest first, optionally in one state.
pub fn list(
    conn: &mut AnyConnection,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<OutboxEvent>, DbError> {
    let mut query = o::event_outbox
        .select(OutboxEvent::as_select())
        .order(o::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(state) = state {
        query = query.filter(o::state.eq(state.to_owned()));
    }
    Ok(query.load(conn)?)
}

/// Make a dead letter pending again, with a fresh set of attempts.
/// Returns the row, or `None` if there is no dead row `id`.
pub fn retry(conn: &mut AnyConnection, id: i64) -> Result<Option<OutboxEvent>, DbError> {
    let updated = diesel::update(
        o::event_outbox
            .filter(o::id.eq(id))
            .filter(o::state.eq(DEAD)),
    )
    .set((
        o::state.eq(PENDING),
        o::attempts.eq(0),
        o::next_attempt_at.eq(crate::db::now()),
        o::claimed_by.eq(None::<String>),
        o::claimed_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    if updated == 0 {
        return Ok(None);
    }
    Ok(o::event_outbox
        .filter(o::id.eq(id))
        .select(OutboxEvent::as_select())
        .first(conn)
        .optional()?)
}

/// How many rows are pending and how many are dead.
pub fn backlog(conn: &mut AnyConnection) -> Result<(i64, i64), DbError> {
    let pending = o::event_outbox
        .filter(o::state.eq(PENDING))
        .count()
        .get_result(conn)?;
    let dead = o::event_outbox
        .filter(o::state.eq(DEAD))
        .count()
        .get_result(conn)?;
    Ok((pending, dead))
}

/// Forget delivered rows older than `before`.
pub fn prune_delivered(conn: &mut AnyConnection, before: NaiveDateTime) -> Result<usize, DbError> {
    Ok(diesel::delete(
        o::event_outbox
            .filter(o::state.eq(DELIVERED))
            .filter(o::created_at.lt(before)),
    )
    .execute(conn)?)
}

/// Why rows of a sink no longer configured became dead letters.
pub const SINK_REMOVED: &str = "sink removed";

/// Make the pending rows of every sink not in `configured` dead letters
/// with the reason [`SINK_REMOVED`], so they show in the dead-letter list
/// instead of waiting forever. Leased rows too: a lease may be a dead
/// replica's, and clearing it makes a live one's late outcome a no-op (the
/// row stays a dead letter, to retry once the sink is back). Returns how
/// many rows each such sink had.
pub fn bury_unconfigured(
    conn: &mut AnyConnection,
    configured: &[String],
) -> Result<Vec<(String, i64)>, DbError> {
    let now = crate::db::now();
    let orphaned = o::event_outbox
        .filter(o::state.eq(PENDING))
        .filter(o::sink.ne_all(configured));
    let by_sink: Vec<(String, i64)> = orphaned
        .clone()
        .group_by(o::sink)
        .select((o::sink, diesel::dsl::count_star()))
        .order(o::sink)
        .load(conn)?;
    if by_sink.is_empty() {
        return Ok(by_sink);
    }
    diesel::update(orphaned)
        .set((
            o::state.eq(DEAD),
            o::next_attempt_at.eq(now),
            o::claimed_by.eq(None::<String>),
            o::claimed_until.eq(None::<NaiveDateTime>),
            o::last_error.eq(SINK_REMOVED),
        ))
        .execute(conn)?;
    Ok(by_sink)
}

/// The sink of row `id`, if there is such a row.
pub fn sink_of(conn: &mut AnyConnection, id: i64) -> Result<Option<String>, DbError> {
    Ok(o::event_outbox
        .filter(o::id.eq(id))
        .select(o::sink)
        .first(conn)
        .optional()?)
}
