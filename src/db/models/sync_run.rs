//! `sync_runs`: one row per user-info sync, with its counts.

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
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = crate::db::schema::sync_runs)]
pub struct NewSyncRun<'a> {
    pub trigger: &'a str,
    pub started_at: NaiveDateTime,
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

/// Record a run's final counts.
pub fn finish(
    conn: &mut AnyConnection,
    id: i64,
    counts: (i64, i64, i64),
    finished_at: NaiveDateTime,
    error: Option<&str>,
) -> Result<(), DbError> {
    diesel::update(r::sync_runs.find(id))
        .set((
            r::users_total.eq(counts.0),
            r::users_updated.eq(counts.1),
            r::users_failed.eq(counts.2),
            r::finished_at.eq(Some(finished_at)),
            r::error.eq(error),
        ))
        .execute(conn)?;
    Ok(())
}
