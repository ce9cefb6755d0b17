//! Completed sessions written straight to the database, for tests and
//! benchmarks that need many authorized users without walking the OAuth
//! flow for each: every user is added to the simulated directory, granted
//! a live access token, and stored the way a completed authorization
//! stores them (profile copied, token sealed by the vault).
//!
//! [`completed_sessions`] stores an access token only; [`refreshable_sessions`]
//! stores a card authorization's v1 token pair with a chosen expiry, for the
//! token refresher to find due.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::oauth::{Generation, OAuthState, SimUser};
use crate::auth::vault::{SealedColumn, Slot, Vault, VaultError};
use crate::db::schema::user_auth_sessions;
use crate::db::{AnyConnection, DbError};
use crate::domain::{AuthMethod, SessionState};

/// Rows per INSERT: 16 columns × 500 stays under both backends' limit on
/// bound parameters.
const CHUNK: usize = 500;

/// Why seeding failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

#[derive(Insertable)]
#[diesel(table_name = user_auth_sessions)]
struct SeededSession {
    session_id: String,
    app_id: String,
    open_id: Option<String>,
    user_name: Option<String>,
    email: Option<String>,
    avatar_url: Option<String>,
    auth_method: &'static str,
    state: &'static str,
    access_token_enc: Option<String>,
    refresh_token_enc: Option<String>,
    token_expires_at: Option<NaiveDateTime>,
    expires_at: NaiveDateTime,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    completed_at: Option<NaiveDateTime>,
    last_synced_at: Option<NaiveDateTime>,
}

/// Add `users` to the simulated directory and store a completed session
/// for each, with `at` as its creation, completion and sync time.
pub fn completed_sessions(
    conn: &mut AnyConnection,
    oauth: &OAuthState,
    vault: &Vault,
    app_id: &str,
    users: impl IntoIterator<Item = SimUser>,
    at: NaiveDateTime,
) -> Result<usize, SeedError> {
    let grant = |open_id: &str| (oauth.grant_access_token(open_id), None);
    seed(conn, oauth, vault, app_id, users, at, None, grant)
}

/// Like [`completed_sessions`], with a token pair from the accounts host
/// (what the card's device flow grants) whose access token the database says expires at
/// `token_expires_at`.
pub fn refreshable_sessions(
    conn: &mut AnyConnection,
    oauth: &OAuthState,
    vault: &Vault,
    app_id: &str,
    users: impl IntoIterator<Item = SimUser>,
    at: NaiveDateTime,
    token_expires_at: NaiveDateTime,
) -> Result<usize, SeedError> {
    let grant = |open_id: &str| {
        let (access, refresh) = oauth.grant_token_pair(open_id, Generation::Accounts);
        (access, Some(refresh))
    };
    seed(
        conn,
        oauth,
        vault,
        app_id,
        users,
        at,
        Some(token_expires_at),
        grant,
    )
}

#[allow(clippy::too_many_arguments)]
fn seed(
    conn: &mut AnyConnection,
    oauth: &OAuthState,
    vault: &Vault,
    app_id: &str,
    users: impl IntoIterator<Item = SimUser>,
    at: NaiveDateTime,
    token_expires_at: Option<NaiveDateTime>,
    grant: impl Fn(&str) -> (String, Option<String>),
) -> Result<usize, SeedError> {
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut stored = 0;
    for user in users {
        let (access, refresh) = grant(&user.open_id);
        let session_id = uuid::Uuid::new_v4().to_string();
        let access_slot = Slot::new(SealedColumn::UserAccessToken, &session_id);
        let refresh_slot = Slot::new(SealedColumn::UserRefreshToken, &session_id);
        let access_token_enc = Some(vault.seal(access_slot, &access)?);
        let refresh_token_enc = refresh.map(|t| vault.seal(refresh_slot, &t)).transpose()?;
        chunk.push(SeededSession {
            session_id,
            app_id: app_id.to_owned(),
            open_id: Some(user.open_id.clone()),
            user_name: Some(user.name.clone()),
            email: user.email.clone().or_else(|| user.enterprise_email.clone()),
            avatar_url: Some(user.avatar_url.clone()),
            auth_method: AuthMethod::WebsocketCard.as_str(),
            state: SessionState::Completed.as_str(),
            access_token_enc,
            refresh_token_enc,
            token_expires_at,
            expires_at: at,
            created_at: at,
            updated_at: at,
            completed_at: Some(at),
            last_synced_at: Some(at),
        });
        oauth.add_user(user);
        if chunk.len() == CHUNK {
            stored += insert(conn, &mut chunk)?;
        }
    }
    stored += insert(conn, &mut chunk)?;
    Ok(stored)
}

fn insert(conn: &mut AnyConnection, chunk: &mut Vec<SeededSession>) -> Result<usize, DbError> {
    let n = conn.transaction(|conn| match conn {
        AnyConnection::Postgresql(c) => diesel::insert_into(user_auth_sessions::table)
            .values(chunk.as_slice())
            .execute(c),
        // diesel inserts SQLite batches row by row; the transaction makes
        // that one commit per chunk.
        AnyConnection::Sqlite(c) => chunk.iter().try_fold(0, |n, row| {
            Ok(n + diesel::insert_into(user_auth_sessions::table)
                .values(row)
                .execute(c)?)
        }),
    })?;
    chunk.clear();
    Ok(n)
}
