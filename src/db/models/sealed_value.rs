//! Every sealed column, read and rewritten as one kind of thing: a value
//! keyed by its row's stable key, for `lark-service rekey`, which walks them
//! all without caring which table holds them.
//!
//! [`SealedColumn`] lists the columns; [`on_column!`] maps each to its table,
//! row key and column, so a new sealed column is one line there.

use diesel::prelude::*;

use crate::auth::vault::SealedColumn;
use crate::db::schema::device_tokens::dsl as d;
use crate::db::schema::user_auth_sessions::dsl as s;
use crate::db::{AnyConnection, DbError};
use crate::domain::SessionState;

/// Run `$body` with `$table`, `$key` and `$col` bound to the table, row key
/// column and value column of `$column`.
macro_rules! on_column {
    ($column:expr, |$table:ident, $key:ident, $col:ident| $body:expr) => {
        match $column {
            SealedColumn::UserAccessToken => {
                let ($table, $key, $col) =
                    (s::user_auth_sessions, s::session_id, s::access_token_enc);
                $body
            }
            SealedColumn::UserRefreshToken => {
                let ($table, $key, $col) =
                    (s::user_auth_sessions, s::session_id, s::refresh_token_enc);
                $body
            }
            SealedColumn::DeviceAccessToken => {
                let ($table, $key, $col) = (d::device_tokens, d::profile, d::access_token_enc);
                $body
            }
            SealedColumn::DeviceRefreshToken => {
                let ($table, $key, $col) = (d::device_tokens, d::profile, d::refresh_token_enc);
                $body
            }
            SealedColumn::PkceVerifier => {
                let ($table, $key, $col) =
                    (s::user_auth_sessions, s::session_id, s::pkce_verifier_enc);
                $body
            }
        }
    };
}

/// How many rows hold a value in `column`.
pub fn count(conn: &mut AnyConnection, column: SealedColumn) -> Result<i64, DbError> {
    on_column!(column, |table, _key, col| Ok(table
        .filter(col.is_not_null())
        .count()
        .get_result(conn)?))
}

/// Up to `limit` `(row key, value)` pairs of `column` with row keys after
/// `after`, by row key: keyset paging, so a walk holds one page at a time
/// and rows written meanwhile never shift it.
pub fn page(
    conn: &mut AnyConnection,
    column: SealedColumn,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, String)>, DbError> {
    on_column!(column, |table, key, col| Ok(table
        .filter(key.gt(after))
        .filter(col.is_not_null())
        .order(key.asc())
        .limit(limit)
        .select((key, col.assume_not_null()))
        .load(conn)?))
}

/// Set `column` of row `key` to `new` if it still holds `old`: a value
/// stored meanwhile (a refresh, another replica) is never overwritten.
/// Returns whether it was replaced.
pub fn replace(
    conn: &mut AnyConnection,
    column: SealedColumn,
    key: &str,
    old: &str,
    new: Option<&str>,
) -> Result<bool, DbError> {
    on_column!(column, |table, k, col| Ok(diesel::update(
        table.filter(k.eq(key)).filter(col.eq(old))
    )
    .set(col.eq(new))
    .execute(conn)?
        == 1))
}

/// Move the completed session `session_id` to `reauth_required` for
/// `reason`: a value it needs was dropped. Returns whether it moved.
pub fn session_needs_reauth(
    conn: &mut AnyConnection,
    session_id: &str,
    reason: &str,
) -> Result<bool, DbError> {
    Ok(diesel::update(
        s::user_auth_sessions
            .filter(s::session_id.eq(session_id))
            .filter(s::state.eq(SessionState::Completed.as_str())),
    )
    .set((
        s::state.eq(SessionState::ReauthRequired.as_str()),
        s::error.eq(reason),
        s::updated_at.eq(crate::db::now()),
    ))
    .execute(conn)?
        == 1)
}
