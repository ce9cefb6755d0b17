//! `processed_events`: the dedup ledger. An event id present here has been
//! handled; redeliveries and duplicates from other replicas are dropped.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::processed_events::dsl as p;
use crate::db::{AnyConnection, DbError};

/// A ledger entry.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq, Eq)]
#[diesel(table_name = crate::db::schema::processed_events)]
pub struct ProcessedEvent {
    pub event_id: String,
    pub event_type: String,
    pub received_at: NaiveDateTime,
}

/// Record a batch; returns the ids that were new (absent before).
pub fn insert_new(
    conn: &mut AnyConnection,
    batch: &[ProcessedEvent],
) -> Result<Vec<String>, DbError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    match conn {
        // One multi-row `ON CONFLICT DO NOTHING … RETURNING`, which reports
        // only the rows it inserted.
        AnyConnection::Postgresql(c) => Ok(diesel::insert_into(p::processed_events)
            .values(batch)
            .on_conflict_do_nothing()
            .returning(p::event_id)
            .get_results(c)?),
        // diesel runs SQLite batch inserts row by row anyway; inside the
        // caller's transaction that costs one statement per row, no fsync.
        AnyConnection::Sqlite(c) => {
            let mut new = Vec::with_capacity(batch.len());
            for row in batch {
                let inserted = diesel::insert_into(p::processed_events)
                    .values(row)
                    .on_conflict_do_nothing()
                    .execute(c)?;
                if inserted == 1 {
                    new.push(row.event_id.clone());
                }
            }
            Ok(new)
        }
    }
}

/// Is this event id in the ledger?
pub fn exists(conn: &mut AnyConnection, event_id: &str) -> Result<bool, DbError> {
    Ok(diesel::select(diesel::dsl::exists(
        p::processed_events.filter(p::event_id.eq(event_id)),
    ))
    .get_result(conn)?)
}

/// Forget entries older than `before`; returns how many were removed.
pub fn prune(conn: &mut AnyConnection, before: NaiveDateTime) -> Result<usize, DbError> {
    Ok(diesel::delete(p::processed_events.filter(p::received_at.lt(before))).execute(conn)?)
}

/// Which of `ids` are already in the ledger (one statement).
pub fn existing(conn: &mut AnyConnection, ids: &[String]) -> Result<Vec<String>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(p::processed_events
        .filter(p::event_id.eq_any(ids))
        .select(p::event_id)
        .load(conn)?)
}
