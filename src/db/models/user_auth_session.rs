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
    pub refresh_claimed_by: Option<String>,
    pub refresh_claimed_until: Option<NaiveDateTime>,
    pub refresh_attempts: i32,
    /// Bumped on every store of tokens: which pair the row holds.
    pub token_generation: i64,
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

/// Pending sessions past their deadline whose card was sent: the ones an
/// expiry sweep has to show on their card.
pub fn overdue_with_cards(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
) -> Result<Vec<String>, DbError> {
    Ok(s::user_auth_sessions
        .filter(s::state.eq(SessionState::Pending.as_str()))
        .filter(s::expires_at.le(now))
        .filter(s::message_id.is_not_null())
        .select(s::session_id)
        .load(conn)?)
}

/// `(session_id, message_id)` of those of `session_ids` now in `state`.
pub fn cards_in_state(
    conn: &mut AnyConnection,
    session_ids: &[String],
    state: SessionState,
) -> Result<Vec<(String, String)>, DbError> {
    if session_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(String, Option<String>)> = s::user_auth_sessions
        .filter(s::session_id.eq_any(session_ids))
        .filter(s::state.eq(state.as_str()))
        .select((s::session_id, s::message_id))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, message)| Some((id, message?)))
        .collect())
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
    .set((completion, s::token_generation.eq(s::token_generation + 1)))
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
                s::token_generation.eq(s::token_generation + 1),
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

/// What the user-info sync reads of a completed session.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = crate::db::schema::user_auth_sessions)]
pub struct SyncCandidate {
    pub id: i64,
    pub session_id: String,
    pub open_id: Option<String>,
    pub user_name: Option<String>,
    pub email: Option<String>,
    pub avatar_url: Option<String>,
    pub access_token_enc: Option<String>,
    pub token_generation: i64,
}

/// How many sessions are completed, and the highest such row id: the
/// extent of one sync walk.
pub fn completed_extent(conn: &mut AnyConnection) -> Result<(i64, Option<i64>), DbError> {
    Ok(s::user_auth_sessions
        .filter(s::state.eq(SessionState::Completed.as_str()))
        .select((diesel::dsl::count_star(), diesel::dsl::max(s::id)))
        .first(conn)?)
}

/// The next `limit` completed sessions with ids in `(after_id, through_id]`,
/// by id: keyset paging, so a walk over every session holds one page at a
/// time, and rows completed meanwhile neither shift pages nor extend it.
pub fn completed_page(
    conn: &mut AnyConnection,
    after_id: i64,
    through_id: i64,
    limit: i64,
) -> Result<Vec<SyncCandidate>, DbError> {
    Ok(s::user_auth_sessions
        .filter(s::state.eq(SessionState::Completed.as_str()))
        .filter(s::id.gt(after_id))
        .filter(s::id.le(through_id))
        .order(s::id.asc())
        .limit(limit)
        .select(SyncCandidate::as_select())
        .load(conn)?)
}

/// A profile the sync found changed.
#[derive(Debug, Clone, PartialEq, Eq, AsChangeset)]
#[diesel(table_name = crate::db::schema::user_auth_sessions, treat_none_as_null = true)]
pub struct ProfileChange {
    pub user_name: Option<String>,
    pub email: Option<String>,
    pub avatar_url: Option<String>,
    pub updated_at: NaiveDateTime,
    pub last_synced_at: Option<NaiveDateTime>,
}

/// Write a synced profile to row `id`, if it is still completed (a session
/// revoked meanwhile keeps its state). Returns whether it was written.
pub fn apply_profile(
    conn: &mut AnyConnection,
    id: i64,
    change: &ProfileChange,
) -> Result<bool, DbError> {
    Ok(diesel::update(
        s::user_auth_sessions
            .filter(s::id.eq(id))
            .filter(s::state.eq(SessionState::Completed.as_str())),
    )
    .set(change)
    .execute(conn)?
        == 1)
}

/// Move completed row `id` to `reauth_required`: its tokens of generation
/// `generation` were refused, so only a new authorization by the user
/// helps. Nothing moves if another pair was stored since (the refused one
/// is no longer what the row holds) or while a refresh claim is live (a
/// refresh in flight is about to store one). Returns whether it moved.
pub fn mark_reauth_required(
    conn: &mut AnyConnection,
    id: i64,
    generation: i64,
    reason: &str,
    now: NaiveDateTime,
) -> Result<bool, DbError> {
    Ok(diesel::update(
        s::user_auth_sessions
            .filter(s::id.eq(id))
            .filter(s::state.eq(SessionState::Completed.as_str()))
            .filter(s::token_generation.eq(generation))
            .filter(
                s::refresh_claimed_by
                    .is_null()
                    .or(s::refresh_claimed_until.lt(now)),
            ),
    )
    .set((
        s::state.eq(SessionState::ReauthRequired.as_str()),
        s::error.eq(reason),
        s::updated_at.eq(now),
    ))
    .execute(conn)?
        == 1)
}

/// Move completed row `id` to `reauth_required` because its stored token
/// cannot be opened (unknown key, damaged). Only if the access token is
/// still `access_token_enc` (a value stored meanwhile may open) and no
/// refresh claim is live (its holder is about to store a new pair, or will
/// record the same outcome itself). Returns whether it moved.
pub fn mark_unreadable(
    conn: &mut AnyConnection,
    id: i64,
    access_token_enc: &str,
    reason: &str,
) -> Result<bool, DbError> {
    let now = crate::db::now();
    Ok(diesel::update(
        s::user_auth_sessions
            .filter(s::id.eq(id))
            .filter(s::state.eq(SessionState::Completed.as_str()))
            .filter(s::access_token_enc.eq(access_token_enc))
            .filter(
                s::refresh_claimed_by
                    .is_null()
                    .or(s::refresh_claimed_until.lt(now)),
            ),
    )
    .set((
        s::state.eq(SessionState::ReauthRequired.as_str()),
        s::error.eq(reason),
        s::updated_at.eq(now),
    ))
    .execute(conn)?
        == 1)
}

/// A session claimed for a token refresh: what the refresher needs of it.
/// Token columns are vault ciphertext.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = crate::db::schema::user_auth_sessions)]
pub struct RefreshClaim {
    pub id: i64,
    pub session_id: String,
    pub open_id: Option<String>,
    pub auth_method: String,
    pub access_token_enc: Option<String>,
    pub refresh_token_enc: Option<String>,
    pub token_expires_at: Option<NaiveDateTime>,
    pub refresh_claimed_until: Option<NaiveDateTime>,
    pub refresh_attempts: i32,
    pub token_generation: i64,
}

/// Claim up to `limit` completed sessions with a refresh token whose access
/// token expires by `due_by`, soonest first, for `owner` until
/// `lease_until`. Run it in a write transaction: on PostgreSQL the rows are
/// picked `FOR UPDATE SKIP LOCKED`, so two replicas claiming at once get
/// disjoint rows (and a row claimed and committed meanwhile fails the
/// re-checked filter); SQLite's `BEGIN IMMEDIATE` serialises claimers.
pub fn claim_due_refreshes(
    conn: &mut AnyConnection,
    owner: &str,
    due_by: NaiveDateTime,
    limit: i64,
    lease_until: NaiveDateTime,
) -> Result<Vec<RefreshClaim>, DbError> {
    let now = crate::db::now();
    let due = s::user_auth_sessions
        .filter(s::state.eq(SessionState::Completed.as_str()))
        .filter(s::token_expires_at.le(due_by))
        .filter(s::refresh_token_enc.is_not_null())
        .filter(
            s::refresh_claimed_until
                .is_null()
                .or(s::refresh_claimed_until.lt(now)),
        )
        .order(s::token_expires_at.asc())
        .limit(limit)
        .select(s::id);
    let ids: Vec<i64> = match conn {
        AnyConnection::Postgresql(c) => due.for_update().skip_locked().load(c)?,
        AnyConnection::Sqlite(c) => due.load(c)?,
    };
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    diesel::update(s::user_auth_sessions.filter(s::id.eq_any(&ids)))
        .set((
            s::refresh_claimed_by.eq(owner),
            s::refresh_claimed_until.eq(lease_until),
        ))
        .execute(conn)?;
    Ok(s::user_auth_sessions
        .filter(s::id.eq_any(&ids))
        .select(RefreshClaim::as_select())
        .load(conn)?)
}

/// Claim one session for `owner` until `lease_until`, if it is completed,
/// holds a refresh token and nobody else holds it. A backoff left by a
/// failed attempt does not stop this claim: it is made for a caller that
/// needs the token now. Run it in a write transaction.
pub fn claim_session_refresh(
    conn: &mut AnyConnection,
    session_id: &str,
    owner: &str,
    lease_until: NaiveDateTime,
) -> Result<Option<RefreshClaim>, DbError> {
    let now = crate::db::now();
    let claimed = diesel::update(
        s::user_auth_sessions
            .filter(s::session_id.eq(session_id))
            .filter(s::state.eq(SessionState::Completed.as_str()))
            .filter(s::refresh_token_enc.is_not_null())
            .filter(
                s::refresh_claimed_by
                    .is_null()
                    .or(s::refresh_claimed_until.lt(now)),
            ),
    )
    .set((
        s::refresh_claimed_by.eq(owner),
        s::refresh_claimed_until.eq(lease_until),
    ))
    .execute(conn)?;
    if claimed == 0 {
        return Ok(None);
    }
    Ok(s::user_auth_sessions
        .filter(s::session_id.eq(session_id))
        .select(RefreshClaim::as_select())
        .first(conn)
        .optional()?)
}

/// The new token pair of a refresh (vault ciphertext).
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = crate::db::schema::user_auth_sessions)]
pub struct RefreshedTokens {
    pub access_token_enc: Option<String>,
    pub refresh_token_enc: Option<String>,
    pub scope: Option<String>,
    pub token_expires_at: Option<NaiveDateTime>,
    pub refresh_expires_at: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
}

/// Write a refreshed pair to row `id`, spent from the refresh token of
/// generation `generation`, and release any claim, in one statement.
///
/// The generation, not the claim, decides: once the platform rotated the
/// pair the old refresh token is spent, so the new pair is the only one
/// that keeps the user authorized, however long it waited to be stored
/// (past the lease, say, through a database outage). It is refused (false)
/// only when the row holds another generation by now (revoked, or
/// authorized anew) or is revoked. A row moved to `reauth_required`
/// meanwhile because its refresh token was refused (someone presented the
/// spent one) is completed again: this pair is newer and good.
pub fn store_refreshed(
    conn: &mut AnyConnection,
    id: i64,
    generation: i64,
    tokens: &RefreshedTokens,
) -> Result<bool, DbError> {
    Ok(diesel::update(
        s::user_auth_sessions
            .filter(s::id.eq(id))
            .filter(s::token_generation.eq(generation))
            .filter(s::state.eq_any([
                SessionState::Completed.as_str(),
                SessionState::ReauthRequired.as_str(),
            ])),
    )
    .set((
        tokens,
        s::state.eq(SessionState::Completed.as_str()),
        s::token_generation.eq(s::token_generation + 1),
        s::refresh_claimed_by.eq(None::<String>),
        s::refresh_claimed_until.eq(None::<NaiveDateTime>),
        s::refresh_attempts.eq(0),
        s::error.eq(None::<String>),
    ))
    .execute(conn)?
        == 1)
}

/// Release `owner`'s claim on row `id` after a failed attempt: nobody
/// claims it again before `retry_at` (unless a caller needs the token
/// now). Returns whether the claim was still `owner`'s.
pub fn release_refresh(
    conn: &mut AnyConnection,
    id: i64,
    owner: &str,
    retry_at: NaiveDateTime,
    error: &str,
) -> Result<bool, DbError> {
    Ok(diesel::update(
        s::user_auth_sessions
            .filter(s::id.eq(id))
            .filter(s::refresh_claimed_by.eq(owner)),
    )
    .set((
        s::refresh_claimed_by.eq(None::<String>),
        s::refresh_claimed_until.eq(retry_at),
        s::refresh_attempts.eq(s::refresh_attempts + 1),
        s::error.eq(error),
        s::updated_at.eq(crate::db::now()),
    ))
    .execute(conn)?
        == 1)
}

/// Move `owner`'s claimed row `id` to `reauth_required` and release the
/// claim: the platform refused the refresh token of generation
/// `generation` for good. Returns whether it moved (not if the row holds
/// another generation by now).
pub fn refresh_refused(
    conn: &mut AnyConnection,
    id: i64,
    owner: &str,
    generation: i64,
    reason: &str,
) -> Result<bool, DbError> {
    Ok(diesel::update(
        s::user_auth_sessions
            .filter(s::id.eq(id))
            .filter(s::refresh_claimed_by.eq(owner))
            .filter(s::token_generation.eq(generation))
            .filter(s::state.eq(SessionState::Completed.as_str())),
    )
    .set((
        s::state.eq(SessionState::ReauthRequired.as_str()),
        s::error.eq(reason),
        s::refresh_claimed_by.eq(None::<String>),
        s::refresh_claimed_until.eq(None::<NaiveDateTime>),
        s::updated_at.eq(crate::db::now()),
    ))
    .execute(conn)?
        == 1)
}

/// How many completed sessions have an access token expiring by `by`.
pub fn count_expiring(conn: &mut AnyConnection, by: NaiveDateTime) -> Result<i64, DbError> {
    Ok(s::user_auth_sessions
        .filter(s::state.eq(SessionState::Completed.as_str()))
        .filter(s::token_expires_at.le(by))
        .count()
        .get_result(conn)?)
}

/// Give pending session `session_id` its redirect-flow secrets: the hash of
/// the authorize request's `state` and the sealed PKCE verifier. Returns
/// whether the session was there to take them.
pub fn set_redirect_grant(
    conn: &mut AnyConnection,
    session_id: &str,
    state_hash: &str,
    pkce_verifier_enc: &str,
) -> Result<bool, DbError> {
    Ok(diesel::update(
        s::user_auth_sessions
            .filter(s::session_id.eq(session_id))
            .filter(s::state.eq(SessionState::Pending.as_str())),
    )
    .set((
        s::oauth_state_hash.eq(state_hash),
        s::pkce_verifier_enc.eq(pkce_verifier_enc),
    ))
    .execute(conn)?
        == 1)
}

/// The session whose redirect `state` hashes to `state_hash`, with its
/// sealed PKCE verifier; none once the session completed (completion clears
/// the hash, so a state is good for one completion).
pub fn find_by_state_hash(
    conn: &mut AnyConnection,
    state_hash: &str,
) -> Result<Option<(UserAuthSession, Option<String>)>, DbError> {
    Ok(s::user_auth_sessions
        .filter(s::oauth_state_hash.eq(state_hash))
        .select((UserAuthSession::as_select(), s::pkce_verifier_enc))
        .first(conn)
        .optional()?)
}

/// Drop completed session `session_id`'s redirect-flow secrets.
pub fn clear_redirect_grant(conn: &mut AnyConnection, session_id: &str) -> Result<(), DbError> {
    diesel::update(s::user_auth_sessions.filter(s::session_id.eq(session_id)))
        .set((
            s::oauth_state_hash.eq(None::<String>),
            s::pkce_verifier_enc.eq(None::<String>),
        ))
        .execute(conn)?;
    Ok(())
}
