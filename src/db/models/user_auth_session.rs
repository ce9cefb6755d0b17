//! `user_auth_sessions`: one row per authorization attempt, holding the
//! user's encrypted tokens once it completes.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::user_auth_sessions::dsl as s;
use crate::db::{AnyConnection, DbError};
use crate::domain::SessionState;

/// A stored session. Token columns hold vault ciphertext, never plaintext.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = crate::db::schema::user_auth_sessions)]
pub struct UserAuthSession {
    pub id: i64,
    pub session_id: String,
    pub app_id: String,
    pub user_id: Option<String>,
    pub open_id: Option<String>,
    pub union_id: Option<String>,
    pub user_name: Option<String>,
    pub email: Option<String>,
    pub avatar_url: Option<String>,
    pub auth_method: String,
    pub state: String,
    pub access_token_enc: Option<String>,
    pub refresh_token_enc: Option<String>,
    pub scope: Option<String>,
    pub token_expires_at: Option<NaiveDateTime>,
    pub refresh_expires_at: Option<NaiveDateTime>,
    pub expires_at: NaiveDateTime,
    pub error: Option<String>,
    pub message_id: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub completed_at: Option<NaiveDateTime>,
    pub last_synced_at: Option<NaiveDateTime>,
}

/// A new pending session.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = crate::db::schema::user_auth_sessions)]
pub struct NewUserAuthSession<'a> {
    pub session_id: &'a str,
    pub app_id: &'a str,
    pub open_id: Option<&'a str>,
    pub auth_method: &'a str,
    pub state: &'a str,
    pub expires_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Insert a session.
pub fn insert(conn: &mut AnyConnection, new: &NewUserAuthSession<'_>) -> Result<(), DbError> {
    diesel::insert_into(s::user_auth_sessions)
        .values(new)
        .execute(conn)?;
    Ok(())
}

/// The session with this public id.
pub fn find(
    conn: &mut AnyConnection,
    session_id: &str,
) -> Result<Option<UserAuthSession>, DbError> {
    Ok(s::user_auth_sessions
        .filter(s::session_id.eq(session_id))
        .select(UserAuthSession::as_select())
        .first(conn)
        .optional()?)
}

/// Sessions, newest first, optionally in one state.
pub fn list(
    conn: &mut AnyConnection,
    state: Option<SessionState>,
    limit: i64,
) -> Result<Vec<UserAuthSession>, DbError> {
    let mut q = s::user_auth_sessions
        .select(UserAuthSession::as_select())
        .order(s::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(st) = state {
        q = q.filter(s::state.eq(st.as_str()));
    }
    Ok(q.load(conn)?)
}

/// How many sessions are in each state.
pub fn count_by_state(conn: &mut AnyConnection) -> Result<Vec<(String, i64)>, DbError> {
    Ok(s::user_auth_sessions
        .group_by(s::state)
        .select((s::state, diesel::dsl::count_star()))
        .load(conn)?)
}

/// Move pending sessions whose deadline has passed to `expired`; returns how many.
pub fn expire_overdue(conn: &mut AnyConnection, now: NaiveDateTime) -> Result<usize, DbError> {
    Ok(diesel::update(
        s::user_auth_sessions
            .filter(s::state.eq(SessionState::Pending.as_str()))
            .filter(s::expires_at.le(now)),
    )
    .set((
        s::state.eq(SessionState::Expired.as_str()),
        s::error.eq("authorization was not completed before the session expired"),
        s::updated_at.eq(now),
    ))
    .execute(conn)?)
}

/// What completing a session writes.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = crate::db::schema::user_auth_sessions)]
pub struct Completion {
    pub state: String,
    pub auth_method: String,
    pub user_id: Option<String>,
    pub open_id: Option<String>,
    pub union_id: Option<String>,
    pub user_name: Option<String>,
    pub email: Option<String>,
    pub avatar_url: Option<String>,
    pub access_token_enc: Option<String>,
    pub refresh_token_enc: Option<String>,
    pub scope: Option<String>,
    pub token_expires_at: Option<NaiveDateTime>,
    pub refresh_expires_at: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
    pub completed_at: Option<NaiveDateTime>,
    pub last_synced_at: Option<NaiveDateTime>,
}

/// Complete a session if it is still pending and not past its deadline.
/// Returns whether it was; one statement, so two racing completions cannot
/// both win.
pub fn complete(
    conn: &mut AnyConnection,
    session_id: &str,
    completion: &Completion,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    Ok(diesel::update(
        s::user_auth_sessions
            .filter(s::session_id.eq(session_id))
            .filter(s::state.eq(SessionState::Pending.as_str()))
            .filter(s::expires_at.gt(now)),
    )
    .set(completion)
    .execute(conn)?
        == 1)
}

/// Mark a pending session failed with `reason`. Returns whether it was pending.
pub fn fail(
    conn: &mut AnyConnection,
    session_id: &str,
    reason: &str,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    Ok(diesel::update(
        s::user_auth_sessions
            .filter(s::session_id.eq(session_id))
            .filter(s::state.eq(SessionState::Pending.as_str())),
    )
    .set((
        s::state.eq(SessionState::Failed.as_str()),
        s::error.eq(reason),
        s::updated_at.eq(now),
    ))
    .execute(conn)?
        == 1)
}

/// Drop a session's tokens and mark it `revoked`. Returns whether it existed.
pub fn revoke(
    conn: &mut AnyConnection,
    session_id: &str,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    Ok(
        diesel::update(s::user_auth_sessions.filter(s::session_id.eq(session_id)))
            .set((
                s::state.eq(SessionState::Revoked.as_str()),
                s::access_token_enc.eq(None::<String>),
                s::refresh_token_enc.eq(None::<String>),
                s::updated_at.eq(now),
            ))
            .execute(conn)?
            == 1,
    )
}

/// Remember which message carries the session's card.
pub fn set_message_id(
    conn: &mut AnyConnection,
    session_id: &str,
    message_id: &str,
) -> Result<(), DbError> {
    diesel::update(s::user_auth_sessions.filter(s::session_id.eq(session_id)))
        .set(s::message_id.eq(message_id))
        .execute(conn)?;
    Ok(())
}

/// The user's most recently completed session.
pub fn latest_completed(
    conn: &mut AnyConnection,
    open_id: &str,
) -> Result<Option<UserAuthSession>, DbError> {
    Ok(s::user_auth_sessions
        .filter(s::open_id.eq(open_id))
        .filter(s::state.eq(SessionState::Completed.as_str()))
        .order((s::completed_at.desc(), s::id.desc()))
        .select(UserAuthSession::as_select())
        .first(conn)
        .optional()?)
}
