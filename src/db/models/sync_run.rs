//! `sync_runs`: one row per user-info sync, with its counts. The row is
//! written as the run goes (page by page), so any replica can report a
//! run's progress.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::sync_runs::dsl as r;
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, PartialEq, Eq)]
#[diesel(table_name = crate::db::schema::sync_runs)]
pub struct SyncRun {
    pub id: i64,
    pub trigger: String,
    pub started_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
    pub users_total: i64,
    pub users_updated: i64,
    pub users_failed: i64,
    pub error: Option<String>,
    pub status: String,
    pub users_done: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = crate::db::schema::sync_runs)]
pub struct NewSyncRun<'a> {
    pub trigger: &'a str,
    pub started_at: NaiveDateTime,
    pub status: &'a str,
}

/// A run's counts so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, AsChangeset)]
#[diesel(table_name = crate::db::schema::sync_runs)]
pub struct RunCounts {
    pub users_total: i64,
    pub users_done: i64,
    pub users_updated: i64,
    pub users_failed: i64,
}

/// Start a run; returns its id.
pub fn insert(conn: &mut AnyConnection, new: &NewSyncRun<'_>) -> Result<i64, DbError> {
    Ok(diesel::insert_into(r::sync_runs)
        .values(new)
        .returning(r::id)
        .get_result(conn)?)
}

/// A run by id.
pub fn find(conn: &mut AnyConnection, id: i64) -> Result<Option<SyncRun>, DbError> {
    Ok(r::sync_runs
        .find(id)
        .select(SyncRun::as_select())
        .first(conn)
        .optional()?)
}

/// Record a running run's counts.
pub fn record_progress(
    conn: &mut AnyConnection,
    id: i64,
    counts: &RunCounts,
) -> Result<(), DbError> {
    diesel::update(r::sync_runs.find(id))
        .set(counts)
        .execute(conn)?;
    Ok(())
}

/// Record a run's end: its final status, counts and error.
pub fn finish(
    conn: &mut AnyConnection,
    id: i64,
    status: &str,
    counts: &RunCounts,
    finished_at: NaiveDateTime,
    error: Option<&str>,
) -> Result<(), DbError> {
    diesel::update(r::sync_runs.find(id))
        .set((
            counts,
            r::status.eq(status),
            r::finished_at.eq(Some(finished_at)),
            r::error.eq(error),
        ))
        .execute(conn)?;
    Ok(())
}
