//! `device_tokens`: the device-code login's token store, one row per
//! profile. A row may hold a host and no token yet (after `--phase init`).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::device_tokens::dsl as d;
use crate::db::{AnyConnection, DbError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, PartialEq, Eq)]
#[diesel(table_name = crate::db::schema::device_tokens, treat_none_as_null = true)]
pub struct DeviceToken {
    pub profile: String,
    pub host: String,
    pub client_id: Option<String>,
    pub access_token_enc: Option<String>,
    pub refresh_token_enc: Option<String>,
    pub expires_at: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
}

/// The row for `profile`.
pub fn find(conn: &mut AnyConnection, profile: &str) -> Result<Option<DeviceToken>, DbError> {
    Ok(d::device_tokens
        .find(profile)
        .select(DeviceToken::as_select())
        .first(conn)
        .optional()?)
}

/// Insert or replace the row for `row.profile`.
pub fn upsert(conn: &mut AnyConnection, row: &DeviceToken) -> Result<(), DbError> {
    let updated = diesel::update(d::device_tokens.find(&row.profile))
        .set(row)
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(d::device_tokens)
            .values(row)
            .execute(conn)?;
    }
    Ok(())
}

/// Remove the row for `profile`; returns whether there was one.
pub fn delete(conn: &mut AnyConnection, profile: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(d::device_tokens.find(profile)).execute(conn)? > 0)
}

/// The row for `profile`, locked until the caller's transaction ends so a
/// second refresher waits for the first. PostgreSQL locks the row
/// (`FOR UPDATE`); SQLite has no row locks, so there the caller must hold
/// the database write lock already (`BEGIN IMMEDIATE`).
pub fn find_for_update(
    conn: &mut AnyConnection,
    profile: &str,
) -> Result<Option<DeviceToken>, DbError> {
    match conn {
        AnyConnection::Postgresql(pg) => Ok(d::device_tokens
            .find(profile)
            .select(DeviceToken::as_select())
            .for_update()
            .first(pg)
            .optional()?),
        AnyConnection::Sqlite(_) => find(conn, profile),
    }
}

/// Empty the token columns of `profile`, keeping the row and its host;
/// returns whether a token was there.
pub fn clear_token(
    conn: &mut AnyConnection,
    profile: &str,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    let cleared = diesel::update(
        d::device_tokens
            .find(profile)
            .filter(d::access_token_enc.is_not_null()),
    )
    .set((
        d::client_id.eq(None::<String>),
        d::access_token_enc.eq(None::<String>),
        d::refresh_token_enc.eq(None::<String>),
        d::expires_at.eq(None::<NaiveDateTime>),
        d::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(cleared > 0)
}
