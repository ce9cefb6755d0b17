//! `SessionRegistry`: the one owner of `user_auth_sessions`.
//!
//! Every change to a session goes through this actor's messages, which check
//! the transition before writing: completion is a single conditional update
//! (`pending` and not past its deadline), so an expired, failed or already
//! completed session cannot complete, and two racing completions cannot both
//! win. Tokens are sealed by the vault before they reach the database and
//! opened only for [`GetUserToken`]. A timer expires overdue pending sessions
//! and refreshes the `lark_auth_sessions{state}` gauge.
//!
//! Whenever a session whose card was sent leaves `pending` (completed by
//! any method, failed, or expired), the watcher registered with
//! [`WatchSessionEnds`] (`CardAuth`) hears of it as [`SessionEnded`], so
//! the card can show the outcome: completion is recorded in one place, and
//! every way of authorizing gets its card replaced without knowing of it.

use std::time::Duration;

use actix::prelude::*;
use chrono::NaiveDateTime;
use serde::Serialize;
use uuid::Uuid;

use super::error::AuthError;
use super::vault::{SealedColumn, Slot, Vault, VaultError};
use crate::db::models::user_auth_session::{
    self as sessions, Completion, NewUserAuthSession, UserAuthSession,
};
use crate::db::{Db, DbError};
use crate::domain::{AuthMethod, SessionState};
use crate::lark::auth_api::{PkceVerifier, UserInfo, UserToken};
use crate::metrics::{AUTH_COMPLETED, AUTH_FAILED, AUTH_SESSIONS, USER_AUTH_SUCCESS_RATE};
use crate::supervise::{ActorState, Lifecycle, Managed};
use crate::telemetry::Masked;

pub const NAME: &str = "session_registry";

/// How often overdue pending sessions are expired and gauges refreshed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A session as the outside sees it: everything but the tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub session_id: String,
    pub app_id: String,
    pub state: SessionState,
    pub auth_method: AuthMethod,
    pub open_id: Option<String>,
    pub user_id: Option<String>,
    pub union_id: Option<String>,
    pub user_name: Option<String>,
    pub email: Option<String>,
    pub avatar_url: Option<String>,
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

impl TryFrom<UserAuthSession> for SessionView {
    type Error = AuthError;

    fn try_from(row: UserAuthSession) -> Result<Self, AuthError> {
        let bad = |e: crate::domain::session::UnknownName| {
            AuthError::BadInput(format!("stored session {}: {e}", row.session_id))
        };
        Ok(Self {
            state: row.state.parse().map_err(bad)?,
            auth_method: row.auth_method.parse().map_err(bad)?,
            session_id: row.session_id,
            app_id: row.app_id,
            open_id: row.open_id,
            user_id: row.user_id,
            union_id: row.union_id,
            user_name: row.user_name,
            email: row.email,
            avatar_url: row.avatar_url,
            scope: row.scope,
            token_expires_at: row.token_expires_at,
            refresh_expires_at: row.refresh_expires_at,
            expires_at: row.expires_at,
            error: row.error,
            message_id: row.message_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
            completed_at: row.completed_at,
            last_synced_at: row.last_synced_at,
        })
    }
}

/// A user's usable tokens, opened from the vault.
#[derive(Clone)]
pub struct UserTokens {
    pub session_id: String,
    pub open_id: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub token_expires_at: Option<NaiveDateTime>,
    pub auth_method: AuthMethod,
}

impl std::fmt::Debug for UserTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserTokens")
            .field("session_id", &self.session_id)
            .field("open_id", &self.open_id)
            .field("access_token", &Masked(&self.access_token))
            .field("token_expires_at", &self.token_expires_at)
            .finish_non_exhaustive()
    }
}

/// Start a pending session for `open_id` (None when the user is not yet
/// known, as in a device-code login).
#[derive(Message)]
#[rtype(result = "Result<SessionView, AuthError>")]
pub struct CreateSession {
    pub open_id: Option<String>,
    pub method: AuthMethod,
}

/// Start a pending `oauth_redirect` session for `open_id` with the secrets
/// of its authorize request: the hash of the `state` (the state itself is
/// never stored) and the PKCE verifier, which the vault seals.
#[derive(Message)]
#[rtype(result = "Result<SessionView, AuthError>")]
pub struct CreateRedirectSession {
    pub open_id: String,
    pub state_hash: String,
    pub verifier: PkceVerifier,
}

/// The session whose redirect `state` hashes to `state_hash`, with its
/// PKCE verifier opened; none for an unknown state or one whose session
/// already completed.
#[derive(Message)]
#[rtype(result = "Result<Option<RedirectSession>, AuthError>")]
pub struct FindRedirectSession {
    pub state_hash: String,
}

/// A redirect's session and the verifier its code exchange needs.
pub struct RedirectSession {
    pub session: SessionView,
    /// None when the stored value is not a verifier RFC 7636 allows.
    pub verifier: Option<PkceVerifier>,
}

/// Move completed session `session_id` to `reauth_required`: a call with
/// its token was refused for a reason only a new authorization fixes (a
/// scope the user did not grant). Answers whether it moved.
#[derive(Message)]
#[rtype(result = "Result<bool, AuthError>")]
pub struct RequireReauth {
    pub session_id: String,
    pub reason: String,
}

#[derive(Message)]
#[rtype(result = "Result<Option<SessionView>, AuthError>")]
pub struct GetSession {
    pub session_id: Uuid,
}

/// Sessions, newest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<SessionView>, AuthError>")]
pub struct ListSessions {
    pub state: Option<SessionState>,
    pub limit: i64,
}

/// Store the user's tokens and profile; the session becomes `completed`.
#[derive(Message)]
#[rtype(result = "Result<SessionView, AuthError>")]
pub struct CompleteSession {
    pub session_id: Uuid,
    pub method: AuthMethod,
    pub token: UserToken,
    pub user: UserInfo,
}

/// Mark a pending session failed.
#[derive(Message)]
#[rtype(result = "Result<(), AuthError>")]
pub struct FailSession {
    pub session_id: Uuid,
    /// A short label for `lark_auth_failed_total{reason}` (see [`AuthError::reason`]).
    pub reason: &'static str,
    /// What went wrong, stored in the session's `error` column.
    pub message: String,
}

impl FailSession {
    pub fn new(session_id: Uuid, error: &AuthError) -> Self {
        Self {
            session_id,
            reason: error.reason(),
            message: error.to_string(),
        }
    }
}

/// Drop a session's tokens; state `revoked`. Answers whether it existed.
#[derive(Message)]
#[rtype(result = "Result<bool, AuthError>")]
pub struct RevokeSession {
    pub session_id: Uuid,
}

/// Remember the message that carries a session's card.
#[derive(Message)]
#[rtype(result = "Result<(), AuthError>")]
pub struct SetMessageId {
    pub session_id: Uuid,
    pub message_id: String,
}

/// The user's current tokens (from their latest completed session).
#[derive(Message)]
#[rtype(result = "Result<Option<UserTokens>, AuthError>")]
pub struct GetUserToken {
    pub open_id: String,
}

/// How a session with a card ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOutcome {
    Completed { user_name: String },
    Failed { reason: String },
    Expired,
}

/// A session whose card was sent left `pending`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SessionEnded {
    pub session_id: Uuid,
    pub message_id: String,
    pub outcome: SessionOutcome,
}

/// Send every [`SessionEnded`] from now on to this recipient.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchSessionEnds(pub Recipient<SessionEnded>);

/// Expire overdue pending sessions now; answers how many were expired.
#[derive(Message)]
#[rtype(result = "Result<usize, DbError>")]
pub struct ExpireOverdue;

pub struct SessionRegistry {
    db: Db,
    vault: Vault,
    app_id: String,
    session_ttl: Duration,
    completed: u64,
    failed: u64,
    watcher: Option<Recipient<SessionEnded>>,
    lifecycle: Lifecycle,
}

impl SessionRegistry {
    pub fn new(db: Db, vault: Vault, app_id: String, session_ttl: Duration) -> Self {
        Self {
            db,
            vault,
            app_id,
            session_ttl,
            completed: 0,
            failed: 0,
            watcher: None,
            lifecycle: Lifecycle::new(NAME),
        }
    }

    fn record_outcome(&mut self, completed: bool) {
        if completed {
            self.completed += 1;
        } else {
            self.failed += 1;
        }
        let rate = self.completed as f64 / (self.completed + self.failed) as f64;
        metrics::gauge!(USER_AUTH_SUCCESS_RATE).set(rate);
    }

    /// Tell the watcher, if any, that the card of `session_id` is out of date.
    fn ended(&self, session_id: &str, message_id: Option<&str>, outcome: SessionOutcome) {
        let (Some(watcher), Some(message_id)) = (&self.watcher, message_id) else {
            return;
        };
        let Ok(session_id) = Uuid::parse_str(session_id) else {
            return;
        };
        watcher.do_send(SessionEnded {
            session_id,
            message_id: message_id.to_owned(),
            outcome,
        });
    }
}

impl Managed for SessionRegistry {
    const NAME: &'static str = NAME;

    fn on_start(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(ExpireOverdue);
        ctx.run_interval(SWEEP_INTERVAL, |_, ctx| ctx.notify(ExpireOverdue));
    }
}

crate::managed_actor!(SessionRegistry);

fn view(row: Option<UserAuthSession>) -> Result<Option<SessionView>, AuthError> {
    row.map(SessionView::try_from).transpose()
}

impl SessionRegistry {
    /// Insert pending session `session_id`, with a redirect's `(state
    /// hash, sealed verifier)` in the same transaction when there is one.
    fn create(
        &self,
        session_id: String,
        open_id: Option<String>,
        method: AuthMethod,
        redirect: Option<(String, String)>,
    ) -> ResponseFuture<Result<SessionView, AuthError>> {
        let db = self.db.clone();
        let app_id = self.app_id.clone();
        let ttl =
            chrono::Duration::from_std(self.session_ttl).unwrap_or(chrono::Duration::minutes(10));
        Box::pin(async move {
            let now = crate::db::now();
            let row = db
                .write(move |c| {
                    sessions::insert(
                        c,
                        &NewUserAuthSession {
                            session_id: &session_id,
                            app_id: &app_id,
                            open_id: open_id.as_deref(),
                            auth_method: method.as_str(),
                            state: SessionState::Pending.as_str(),
                            expires_at: now + ttl,
                            created_at: now,
                            updated_at: now,
                        },
                    )?;
                    if let Some((state_hash, verifier_enc)) = &redirect {
                        sessions::set_redirect_grant(c, &session_id, state_hash, verifier_enc)?;
                    }
                    sessions::find(c, &session_id)
                })
                .await?;
            let view = view(row)?
                .ok_or_else(|| AuthError::BadInput("the new session was not stored".into()))?;
            tracing::info!(session_id = %view.session_id, open_id = ?view.open_id, method = %view.auth_method, "authorization session created");
            Ok(view)
        })
    }
}

impl Handler<CreateSession> for SessionRegistry {
    type Result = ResponseFuture<Result<SessionView, AuthError>>;

    fn handle(&mut self, msg: CreateSession, _: &mut Context<Self>) -> Self::Result {
        self.create(Uuid::new_v4().to_string(), msg.open_id, msg.method, None)
    }
}

impl Handler<CreateRedirectSession> for SessionRegistry {
    type Result = ResponseFuture<Result<SessionView, AuthError>>;

    fn handle(&mut self, msg: CreateRedirectSession, _: &mut Context<Self>) -> Self::Result {
        let session_id = Uuid::new_v4().to_string();
        let slot = Slot::new(SealedColumn::PkceVerifier, &session_id);
        let verifier_enc = match self.vault.seal(slot, msg.verifier.as_str()) {
            Ok(sealed) => sealed,
            Err(e) => return Box::pin(fut::ready(Err(e.into()))),
        };
        self.create(
            session_id,
            Some(msg.open_id),
            AuthMethod::OauthRedirect,
            Some((msg.state_hash, verifier_enc)),
        )
    }
}

impl Handler<FindRedirectSession> for SessionRegistry {
    type Result = ResponseFuture<Result<Option<RedirectSession>, AuthError>>;

    fn handle(&mut self, msg: FindRedirectSession, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        let vault = self.vault.clone();
        Box::pin(async move {
            let Some((row, verifier_enc)) = db
                .read(move |c| sessions::find_by_state_hash(c, &msg.state_hash))
                .await?
            else {
                return Ok(None);
            };
            // A verifier that does not open (sealed under a key since
            // dropped) is as good as none: the callback is refused, and the
            // session runs out its short life.
            let slot = Slot::new(SealedColumn::PkceVerifier, &row.session_id);
            let verifier = verifier_enc
                .as_deref()
                .and_then(|v| vault.open(slot, v).ok())
                .and_then(|v| PkceVerifier::parse(&v));
            Ok(Some(RedirectSession {
                session: SessionView::try_from(row)?,
                verifier,
            }))
        })
    }
}

impl Handler<RequireReauth> for SessionRegistry {
    type Result = ResponseFuture<Result<bool, AuthError>>;

    fn handle(&mut self, msg: RequireReauth, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        Box::pin(async move {
            let (id, reason) = (msg.session_id.clone(), msg.reason.clone());
            let moved = db
                .write(move |c| match sessions::find(c, &id)? {
                    // Whatever pair the row holds now: a refresh keeps the
                    // scopes, so the newest token lacks the scope too.
                    Some(row) => sessions::mark_reauth_required(
                        c,
                        row.id,
                        row.token_generation,
                        &reason,
                        crate::db::now(),
                    ),
                    None => Ok(false),
                })
                .await?;
            if moved {
                tracing::warn!(session_id = %msg.session_id, reason = %msg.reason, "session needs a new authorization");
            }
            Ok(moved)
        })
    }
}

impl Handler<GetSession> for SessionRegistry {
    type Result = ResponseFuture<Result<Option<SessionView>, AuthError>>;

    fn handle(&mut self, msg: GetSession, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        Box::pin(async move {
            let id = msg.session_id.to_string();
            view(db.read(move |c| sessions::find(c, &id)).await?)
        })
    }
}

impl Handler<ListSessions> for SessionRegistry {
    type Result = ResponseFuture<Result<Vec<SessionView>, AuthError>>;

    fn handle(&mut self, msg: ListSessions, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        Box::pin(async move {
            let rows = db
                .read(move |c| sessions::list(c, msg.state, msg.limit))
                .await?;
            rows.into_iter().map(SessionView::try_from).collect()
        })
    }
}

impl Handler<CompleteSession> for SessionRegistry {
    type Result = ResponseActFuture<Self, Result<SessionView, AuthError>>;

    fn handle(&mut self, msg: CompleteSession, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        let vault = self.vault.clone();
        let method = msg.method;
        let work = async move {
            let now = crate::db::now();
            let after = |d: Duration| chrono::Duration::from_std(d).ok().map(|d| now + d);
            let id = msg.session_id.to_string();
            let access_slot = Slot::new(SealedColumn::UserAccessToken, &id);
            let refresh_slot = Slot::new(SealedColumn::UserRefreshToken, &id);
            let completion = Completion {
                state: SessionState::Completed.as_str().to_owned(),
                auth_method: msg.method.as_str().to_owned(),
                user_id: msg.user.user_id.clone(),
                open_id: Some(msg.user.open_id.clone()),
                union_id: msg.user.union_id.clone(),
                user_name: msg.user.name.clone(),
                email: msg
                    .user
                    .email
                    .clone()
                    .or_else(|| msg.user.enterprise_email.clone()),
                avatar_url: msg.user.avatar_url.clone(),
                access_token_enc: Some(vault.seal(access_slot, &msg.token.access_token)?),
                refresh_token_enc: msg
                    .token
                    .refresh_token
                    .as_deref()
                    .map(|t| vault.seal(refresh_slot, t))
                    .transpose()?,
                scope: msg.token.scope.clone(),
                token_expires_at: after(msg.token.expires_in),
                refresh_expires_at: msg.token.refresh_expires_in.and_then(after),
                updated_at: now,
                completed_at: Some(now),
                last_synced_at: Some(now),
            };
            let (won, row) = db
                .write(move |c| {
                    let won = sessions::complete(c, &id, &completion, now)?;
                    if won {
                        // The redirect's state and verifier are spent.
                        sessions::clear_redirect_grant(c, &id)?;
                    }
                    Ok((won, sessions::find(c, &id)?))
                })
                .await?;
            let session =
                view(row)?.ok_or_else(|| AuthError::UnknownSession(msg.session_id.to_string()))?;
            if !won {
                return Err(match session.state {
                    SessionState::Pending => AuthError::Expired,
                    other => AuthError::NotPending(other),
                });
            }
            tracing::info!(
                session_id = %session.session_id,
                user = ?session.user_name,
                email = ?session.email,
                token = %Masked(&msg.token.access_token),
                token_expires_at = ?session.token_expires_at,
                "authorization completed"
            );
            Ok(session)
        };
        Box::pin(work.into_actor(self).map(move |result, act, _| {
            if let Ok(session) = &result {
                metrics::counter!(AUTH_COMPLETED, "method" => method.as_str()).increment(1);
                act.record_outcome(true);
                let user_name = session.user_name.clone().unwrap_or_default();
                act.ended(
                    &session.session_id,
                    session.message_id.as_deref(),
                    SessionOutcome::Completed { user_name },
                );
            }
            result
        }))
    }
}

impl Handler<FailSession> for SessionRegistry {
    type Result = ResponseActFuture<Self, Result<(), AuthError>>;

    fn handle(&mut self, msg: FailSession, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        let reason_label = msg.reason;
        let message = msg.message.clone();
        let id = msg.session_id.to_string();
        let work = async move {
            db.write(move |c| {
                let failed = sessions::fail(c, &id, &message, crate::db::now())?;
                Ok(if failed {
                    sessions::find(c, &id)?
                } else {
                    None
                })
            })
            .await
        };
        Box::pin(work.into_actor(self).map(move |result, act, _| {
            metrics::counter!(AUTH_FAILED, "reason" => reason_label).increment(1);
            act.record_outcome(false);
            tracing::warn!(session_id = %msg.session_id, reason = %msg.message, "authorization failed");
            let row = result.map_err(AuthError::from)?;
            if let Some(row) = row {
                act.ended(
                    &row.session_id,
                    row.message_id.as_deref(),
                    SessionOutcome::Failed {
                        reason: msg.message,
                    },
                );
            }
            Ok(())
        }))
    }
}

impl Handler<RevokeSession> for SessionRegistry {
    type Result = ResponseFuture<Result<bool, AuthError>>;

    fn handle(&mut self, msg: RevokeSession, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        Box::pin(async move {
            let id = msg.session_id.to_string();
            let revoked = db
                .write(move |c| sessions::revoke(c, &id, crate::db::now()))
                .await?;
            if revoked {
                tracing::info!(session_id = %msg.session_id, "session revoked; its tokens were dropped");
            }
            Ok(revoked)
        })
    }
}

impl Handler<SetMessageId> for SessionRegistry {
    type Result = ResponseFuture<Result<(), AuthError>>;

    fn handle(&mut self, msg: SetMessageId, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        Box::pin(async move {
            let id = msg.session_id.to_string();
            db.write(move |c| sessions::set_message_id(c, &id, &msg.message_id))
                .await?;
            Ok(())
        })
    }
}

impl Handler<GetUserToken> for SessionRegistry {
    type Result = ResponseFuture<Result<Option<UserTokens>, AuthError>>;

    fn handle(&mut self, msg: GetUserToken, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        let vault = self.vault.clone();
        Box::pin(async move {
            let open_id = msg.open_id.clone();
            let Some(row) = db
                .read(move |c| sessions::latest_completed(c, &open_id))
                .await?
            else {
                return Ok(None);
            };
            let Some(access_enc) = row.access_token_enc.clone() else {
                return Ok(None);
            };
            let (access_token, refresh_token) = match open_tokens(&vault, &row, &access_enc) {
                Ok(pair) => pair,
                Err(e) => {
                    let (id, session_id, error) = (row.id, row.session_id.clone(), e.clone());
                    let condemned = db
                        .write(move |c| condemn_unreadable(c, id, &session_id, &access_enc, &error))
                        .await?;
                    return Err(match condemned {
                        Some(reason) => AuthError::Unreadable {
                            open_id: msg.open_id,
                            reason,
                        },
                        None => AuthError::Vault(e),
                    });
                }
            };
            Ok(Some(UserTokens {
                access_token,
                refresh_token,
                token_expires_at: row.token_expires_at,
                auth_method: row
                    .auth_method
                    .parse()
                    .map_err(|e| AuthError::BadInput(format!("{e}")))?,
                session_id: row.session_id,
                open_id: msg.open_id,
            }))
        })
    }
}

impl Handler<WatchSessionEnds> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: WatchSessionEnds, _: &mut Context<Self>) {
        self.watcher = Some(msg.0);
    }
}

/// Open both tokens of a session row whose access token is `access_enc`.
fn open_tokens(
    vault: &Vault,
    row: &UserAuthSession,
    access_enc: &str,
) -> Result<(String, Option<String>), VaultError> {
    let id = row.session_id.as_str();
    let access = vault.open(Slot::new(SealedColumn::UserAccessToken, id), access_enc)?;
    let refresh = row
        .refresh_token_enc
        .as_deref()
        .map(|t| vault.open(Slot::new(SealedColumn::UserRefreshToken, id), t))
        .transpose()?;
    Ok((access, refresh))
}

/// A session whose stored token no configured key opens (unknown key,
/// damaged value) can never be used or refreshed: retrying cannot help, a
/// new authorization does. Count it in `lark_vault_unreadable_total`, and
/// move row `id` to `reauth_required` with the reason, unless its access
/// token changed meanwhile (`access_enc` is the value that failed) or a
/// refresh claim is live. Answers the reason, or `None` when `error` is not
/// about a stored value (nothing is changed then). Runs inside a write.
pub fn condemn_unreadable(
    conn: &mut crate::db::AnyConnection,
    id: i64,
    session_id: &str,
    access_enc: &str,
    error: &VaultError,
) -> Result<Option<String>, DbError> {
    let Some(unreadable) = error.unreadable() else {
        return Ok(None);
    };
    unreadable.record();
    let reason = error.session_reason();
    let moved = sessions::mark_unreadable(conn, id, access_enc, &reason)?;
    tracing::warn!(%session_id, reason = unreadable.reason(), error = %error, moved, "stored token cannot be opened; the user must authorize again");
    Ok(Some(reason))
}

impl Handler<ExpireOverdue> for SessionRegistry {
    type Result = ResponseActFuture<Self, Result<usize, DbError>>;

    fn handle(&mut self, _: ExpireOverdue, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        let sweep = async move {
            let (expired, cards, counts) = db
                .write(|c| {
                    let now = crate::db::now();
                    let with_cards = sessions::overdue_with_cards(c, now)?;
                    let expired = sessions::expire_overdue(c, now)?;
                    let cards = sessions::cards_in_state(c, &with_cards, SessionState::Expired)?;
                    Ok((expired, cards, sessions::count_by_state(c)?))
                })
                .await?;
            if expired > 0 {
                tracing::info!(expired, "expired overdue authorization sessions");
            }
            for state in SessionState::ALL {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == state.as_str())
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!(AUTH_SESSIONS, "state" => state.as_str()).set(n as f64);
            }
            Ok::<_, DbError>((expired, cards))
        };
        Box::pin(sweep.into_actor(self).map(|result, act, _| {
            match &result {
                Ok(_) if act.lifecycle.state() != ActorState::Running => act.lifecycle.running(),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "session sweep failed");
                    act.lifecycle.degraded(e);
                }
            }
            let (expired, cards) = result?;
            for (session_id, message_id) in cards {
                act.ended(&session_id, Some(&message_id), SessionOutcome::Expired);
            }
            Ok(expired)
        }))
    }
}
