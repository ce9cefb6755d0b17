//! `TokenRefresher`: keeps users' access tokens fresh, so a user who
//! authorized once never has to again while their refresh token lives.
//!
//! On every tick (`TOKEN_REFRESH_INTERVAL_SECONDS`) it claims the completed
//! sessions whose access token expires within `TOKEN_REFRESH_AHEAD_SECONDS`
//! and refreshes them, at most `TOKEN_REFRESH_CONCURRENCY` at once; while
//! due sessions are left it claims again as slots free up instead of
//! waiting for the next tick.
//!
//! Refresh tokens are single use and rotated (§5.3 of the protocol notes):
//! presenting one twice costs the user their authorization. So a session is
//! refreshed only under a claim: a lease in the row (`refresh_claimed_by`,
//! `refresh_claimed_until`), taken `FOR UPDATE SKIP LOCKED` on PostgreSQL so
//! workers and replicas sharing a database claim disjoint rows. The lease
//! ([`LEASE`]) is many times longer than a refresh request may take, and a
//! claim with too little of it left is given back unspent. The new pair is
//! written, and the claim released, in one statement that checks the claim
//! is still ours. Holding a row lock across the platform call would need a
//! connection per refresh in flight; the lease needs none.
//!
//! Outcomes (`lark_token_refresh_total{outcome}`):
//! - `ok`: the new pair is stored.
//! - `transient` / `rate_limited`: the network, a 5xx, 20050/20072, or a rate
//!   limit (every refresh then waits out `x-ogw-ratelimit-reset`, see
//!   [`Pace`]). The claim is released with a backoff before the next try.
//! - `reauth_required`: 20024/20026/20037/20064/20073/20074, the refresh
//!   token is gone for good; or the stored refresh token cannot be opened
//!   (its key is unknown, or it is damaged: counted in
//!   `lark_vault_unreadable_total`). The session moves to `reauth_required` and, with
//!   `TOKEN_REFRESH_SEND_AUTH_CARD`, the user gets a new authorization card.
//! - `error`: anything else (an unexpected answer); released with a
//!   backoff, for an operator to look at.
//!
//! [`RefreshUserToken`] refreshes one session now, for a caller about to use
//! the token (the AI client); it takes the same claim, so it never races the
//! ticks, and waits for a refresh of that session already in flight.
//!
//! Refreshes and claims run on the runtime, not in the actor's context, and
//! report back by message: a restart of the actor does not cut a refresh
//! short between spending the old refresh token and storing the new one.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::NaiveDateTime;

use crate::auth::card_auth::{send_reauth_card, CardAuth};
use crate::auth::registry::{condemn_unreadable, UserTokens};
use crate::auth::vault::{SealedColumn, Slot, Vault};
use crate::db::models::user_auth_session::{self as sessions, RefreshClaim, RefreshedTokens};
use crate::db::{after, Db, DbError};
use crate::domain::{AuthMethod, Secret, SessionState};
use crate::lark::auth_api::TokenFamily;
use crate::lark::auth_api::UserToken;
use crate::lark::client::{LarkClient, LarkError};
use crate::lark::pace::Pace;
use crate::metrics::{
    TOKENS_EXPIRING_SOON, TOKEN_REFRESH, TOKEN_STORE_PENDING, TOKEN_STORE_WAIT_SECONDS,
};
use crate::refresh::app_token_cache::AppCallError;
use crate::supervise::backoff::Backoff;
use crate::supervise::{Lifecycle, Managed};
use crate::telemetry::Masked;

pub const NAME: &str = "token_refresher";

/// How long a claim holds: far longer than one refresh request
/// ([`crate::lark::client::REQUEST_TIMEOUT`]) and its write-back, so it cannot run out while the
/// refresh is in flight; short enough that the rows of a replica that died
/// holding claims are refreshed by another soon after.
pub const LEASE: Duration = Duration::from_secs(120);
/// A claim is spent only with this much of its lease left: the request and
/// the write-back (with its retries) must fit in it.
const MIN_LEASE_LEFT: Duration = Duration::from_secs(60);
/// Waits before retrying a session whose refresh failed transiently.
const RETRY_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    max: Duration::from_secs(300),
};
/// Waits between attempts to write a new pair back. Once the platform
/// rotated the pair the old refresh token is spent and only the new one
/// keeps the user authorized, so it is retried for as long as the new
/// refresh token lives; the ceiling keeps the delay after an outage short.
const STORE_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(200),
    max: Duration::from_secs(5),
};
/// How long a refresh token lives when the platform does not say:
/// larksuite/cli assumes 7 days (604800 s) for the v2 and device flows.
const DEFAULT_REFRESH_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often `lark_tokens_expiring_within_hour` is recomputed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(15);
/// The window of that gauge.
const GAUGE_WINDOW: Duration = Duration::from_secs(3600);
/// How long [`RefreshUserToken`] waits for another worker's refresh of the
/// same session, and how often it looks.
const BUSY_WAIT: Duration = Duration::from_secs(20);
const BUSY_POLL: Duration = Duration::from_millis(50);

/// What the refresher is told by configuration.
#[derive(Debug, Clone)]
pub struct RefresherConfig {
    pub app_id: String,
    pub app_secret: Secret,
    /// Refresh this long before the access token expires.
    pub ahead: Duration,
    /// Time between ticks.
    pub interval: Duration,
    /// Refreshes in flight at once.
    pub concurrency: usize,
    /// Send a new auth card when a refresh token is refused for good.
    pub send_auth_card: bool,
}

/// Why a token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Only a new authorization by the user helps.
    #[error("user `{open_id}` must authorize the app again ({reason})")]
    AuthRequired { open_id: String, reason: String },
    /// Worth asking again shortly.
    #[error("the user's token could not be refreshed now: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the token refresher is unavailable: {0}")]
    Mailbox(#[from] actix::MailboxError),
}

/// Start ticking. `serve` sends it; one-shot commands leave the refresher
/// on demand only, so a short-lived process never holds due claims.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StartSchedule;

/// Claim due sessions now and refresh them (what a tick does).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClaimDueTokens;

/// Why a caller wants a session's token refreshed.
pub enum RefreshReason {
    /// Refresh if the access token expires within this long.
    ExpiresWithin(Duration),
    /// The platform refused this access token: refresh, unless the stored
    /// token is already another (someone refreshed meanwhile).
    Refused(String),
}

/// Refresh session `session_id` of `open_id` now if `reason` says so, and
/// answer the user's current tokens.
#[derive(Message)]
#[rtype(result = "Result<UserTokens, RefreshError>")]
pub struct RefreshUserToken {
    pub session_id: String,
    pub open_id: String,
    pub reason: RefreshReason,
}

/// Sessions claimed by a tick: the claim asked for `asked`.
#[derive(Message)]
#[rtype(result = "()")]
struct Claimed {
    asked: usize,
    result: Result<Vec<RefreshClaim>, DbError>,
}

/// One refresh from a tick has ended.
#[derive(Message)]
#[rtype(result = "()")]
struct RefreshDone;

#[derive(Message)]
#[rtype(result = "()")]
struct UpdateExpiringGauge;

/// What became of one refresh.
enum Outcome {
    Refreshed(UserTokens),
    /// Released with a backoff; the label is the metric's outcome.
    Retry {
        label: &'static str,
        error: String,
    },
    Reauth(String),
    /// The row stopped being ours (revoked meanwhile, or the lease ran
    /// out): the new pair was dropped.
    Lost,
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Self::Refreshed(_) => "ok",
            Self::Retry { label, .. } => label,
            Self::Reauth(_) => "reauth_required",
            Self::Lost => "lost",
        }
    }
}

/// What a refresh needs, shared by the ticks and the on-demand path.
struct Worker {
    db: Db,
    vault: Vault,
    lark: LarkClient,
    card_auth: Option<Addr<CardAuth>>,
    app_id: String,
    app_secret: Secret,
    /// This worker's name in `refresh_claimed_by`.
    owner: String,
    pace: Pace,
    /// Sessions whose rotated pair waits for the database: never claimed
    /// again meanwhile, since their stored refresh token is spent.
    pending: Arc<Mutex<HashSet<String>>>,
}

/// A rotated pair waiting to be stored, counted in
/// `lark_token_store_pending` from its first failed write to its end.
struct PendingStore {
    pending: Arc<Mutex<HashSet<String>>>,
    session_id: String,
}

impl PendingStore {
    fn new(pending: &Arc<Mutex<HashSet<String>>>, session_id: &str) -> Self {
        lock(pending).insert(session_id.to_owned());
        metrics::gauge!(TOKEN_STORE_PENDING).increment(1.0);
        Self {
            pending: pending.clone(),
            session_id: session_id.to_owned(),
        }
    }
}

impl Drop for PendingStore {
    fn drop(&mut self) {
        lock(&self.pending).remove(&self.session_id);
        metrics::gauge!(TOKEN_STORE_PENDING).decrement(1.0);
    }
}

/// The set survives a panic elsewhere: it only ever holds ids.
fn lock(set: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    set.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Worker {
    /// Refresh a claimed session and record the outcome in the row.
    async fn refresh(&self, claim: RefreshClaim) -> Outcome {
        let open_id = claim.open_id.clone().unwrap_or_default();
        let outcome = self.attempt(&claim).await;
        metrics::counter!(TOKEN_REFRESH, "outcome" => outcome.label()).increment(1);
        match &outcome {
            Outcome::Refreshed(tokens) => tracing::debug!(
                session_id = %claim.session_id,
                token = %Masked(&tokens.access_token),
                expires_at = ?tokens.token_expires_at,
                "user token refreshed"
            ),
            Outcome::Retry { label, error } => tracing::warn!(
                session_id = %claim.session_id,
                outcome = label,
                attempts = claim.refresh_attempts + 1,
                %error,
                "user token refresh failed; will retry"
            ),
            Outcome::Reauth(reason) => {
                tracing::info!(session_id = %claim.session_id, %open_id, %reason, "refresh token refused; the user must authorize again");
                self.send_auth_card(&open_id);
            }
            Outcome::Lost => tracing::info!(
                session_id = %claim.session_id,
                "session changed during its refresh (revoked, or claimed after a stall); new tokens dropped"
            ),
        }
        outcome
    }

    async fn attempt(&self, claim: &RefreshClaim) -> Outcome {
        let now = crate::db::now();
        let lease_left = claim
            .refresh_claimed_until
            .map_or(chrono::TimeDelta::zero(), |until| until - now);
        if lease_left.to_std().unwrap_or_default() < MIN_LEASE_LEFT {
            return self
                .release(claim, now, "error", "the claim was too old to spend".into())
                .await;
        }
        let method = match claim.auth_method.parse::<AuthMethod>() {
            Ok(m) => m,
            Err(e) => return self.retry_later(claim, "error", e.to_string()).await,
        };
        let slot = Slot::new(SealedColumn::UserRefreshToken, &claim.session_id);
        let refresh_token = match claim
            .refresh_token_enc
            .as_deref()
            .map(|t| self.vault.open(slot, t))
        {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                let Some(unreadable) = e.unreadable() else {
                    let error = format!("cannot open the stored refresh token: {e}");
                    return self.retry_later(claim, "error", error).await;
                };
                // No key this process has opens it: retrying cannot help.
                unreadable.record();
                return self.reauth(claim, e.session_reason()).await;
            }
            None => return Outcome::Lost,
        };
        if self.db.writes_failing() {
            // Spending now could strand the new pair: keep the refresh
            // token until the database takes writes again.
            let error = "the database is failing; the refresh token is kept for later".into();
            return self.retry_later(claim, "transient", error).await;
        }
        self.pace.ready().await;
        match self.call(method, &refresh_token).await {
            Ok(token) => self.store(claim, method, token).await,
            Err(AppCallError::Lark(e)) if e.needs_reauth() => {
                self.reauth(
                    claim,
                    format!("the platform refused the refresh token: {e}"),
                )
                .await
            }
            Err(AppCallError::Lark(LarkError::RateLimited { retry_after })) => {
                self.pace.hold(retry_after);
                let retry_at = after(crate::db::now(), retry_after);
                let error = format!("rate limited; retrying after {retry_after:?}");
                self.release(claim, retry_at, "rate_limited", error).await
            }
            Err(AppCallError::Lark(e)) if e.is_transient() => {
                self.retry_later(claim, "transient", e.to_string()).await
            }
            Err(AppCallError::Token(e)) if e.transient => {
                self.retry_later(claim, "transient", e.to_string()).await
            }
            Err(e) => self.retry_later(claim, "error", e.to_string()).await,
        }
    }

    /// Move the claimed session to `reauth_required` for `reason`.
    async fn reauth(&self, claim: &RefreshClaim, reason: String) -> Outcome {
        let db = self.db.clone();
        let (id, owner, generation) = (claim.id, self.owner.clone(), claim.token_generation);
        let why = reason.clone();
        match db
            .write(move |c| sessions::refresh_refused(c, id, &owner, generation, &why))
            .await
        {
            Ok(true) => Outcome::Reauth(reason),
            Ok(false) => Outcome::Lost,
            Err(e) => Outcome::Retry {
                label: "error",
                error: format!("{reason}; recording it failed: {e}"),
            },
        }
    }

    /// A refresh token goes back to the endpoint family that issued it
    /// (see [`TokenFamily`]).
    async fn call(
        &self,
        method: AuthMethod,
        refresh_token: &str,
    ) -> Result<UserToken, AppCallError> {
        Ok(self
            .lark
            .refresh_user_token(
                TokenFamily::from(method),
                &self.app_id,
                self.app_secret.expose(),
                refresh_token,
            )
            .await?)
    }

    /// Seal and store the new pair, releasing the claim.
    async fn store(&self, claim: &RefreshClaim, method: AuthMethod, token: UserToken) -> Outcome {
        let now = crate::db::now();
        let id = claim.session_id.as_str();
        let sealed = (|| {
            Ok::<_, crate::auth::vault::VaultError>(RefreshedTokens {
                access_token_enc: Some(self.vault.seal(
                    Slot::new(SealedColumn::UserAccessToken, id),
                    &token.access_token,
                )?),
                refresh_token_enc: token
                    .refresh_token
                    .as_deref()
                    .map(|t| {
                        self.vault
                            .seal(Slot::new(SealedColumn::UserRefreshToken, id), t)
                    })
                    .transpose()?,
                scope: token.scope.clone(),
                token_expires_at: Some(after(now, token.expires_in)),
                refresh_expires_at: token.refresh_expires_in.map(|d| after(now, d)),
                updated_at: now,
            })
        })();
        let tokens = match sealed {
            Ok(t) => t,
            Err(e) => {
                return Outcome::Retry {
                    label: "error",
                    error: format!("cannot seal the new tokens: {e}"),
                }
            }
        };
        let expires_at = tokens.token_expires_at;
        let spent_at = Instant::now();
        let keep_for = token.refresh_expires_in.unwrap_or(DEFAULT_REFRESH_TTL);
        let mut waiting: Option<PendingStore> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (db, id, generation, row) = (
                self.db.clone(),
                claim.id,
                claim.token_generation,
                tokens.clone(),
            );
            match db
                .write(move |c| sessions::store_refreshed(c, id, generation, &row))
                .await
            {
                Ok(stored) => {
                    metrics::histogram!(TOKEN_STORE_WAIT_SECONDS)
                        .record(spent_at.elapsed().as_secs_f64());
                    if waiting.take().is_some() {
                        tracing::info!(session_id = %claim.session_id, attempts = attempt, waited = ?spent_at.elapsed(), "refreshed tokens stored after waiting for the database");
                    }
                    if !stored {
                        return Outcome::Lost;
                    }
                    return Outcome::Refreshed(UserTokens {
                        session_id: claim.session_id.clone(),
                        open_id: claim.open_id.clone().unwrap_or_default(),
                        access_token: token.access_token,
                        refresh_token: token.refresh_token,
                        token_expires_at: expires_at,
                        auth_method: method,
                    });
                }
                Err(e) if spent_at.elapsed() < keep_for => {
                    if waiting.is_none() {
                        tracing::warn!(session_id = %claim.session_id, error = %e, "storing refreshed tokens failed; keeping them and retrying until the database takes them");
                        waiting = Some(PendingStore::new(&self.pending, &claim.session_id));
                    } else {
                        tracing::debug!(session_id = %claim.session_id, error = %e, attempt, "refreshed tokens still waiting for the database");
                    }
                    tokio::time::sleep(STORE_BACKOFF.delay(attempt)).await;
                }
                Err(e) => {
                    return Outcome::Retry {
                        label: "error",
                        error: format!(
                            "the new tokens could not be stored before their refresh token expired: {e}"
                        ),
                    }
                }
            }
        }
    }

    /// Is a rotated pair of this session waiting for the database?
    fn is_pending(&self, session_id: &str) -> bool {
        lock(&self.pending).contains(session_id)
    }

    async fn retry_later(
        &self,
        claim: &RefreshClaim,
        label: &'static str,
        error: String,
    ) -> Outcome {
        let attempt = u32::try_from(claim.refresh_attempts).unwrap_or(0) + 1;
        let retry_at = after(crate::db::now(), RETRY_BACKOFF.delay(attempt));
        self.release(claim, retry_at, label, error).await
    }

    async fn release(
        &self,
        claim: &RefreshClaim,
        retry_at: NaiveDateTime,
        label: &'static str,
        error: String,
    ) -> Outcome {
        let (db, id, owner, message) =
            (self.db.clone(), claim.id, self.owner.clone(), error.clone());
        if let Err(e) = db
            .write(move |c| sessions::release_refresh(c, id, &owner, retry_at, &message))
            .await
        {
            // The lease runs out on its own; the row is retried then.
            tracing::warn!(session_id = %claim.session_id, error = %e, "could not release a refresh claim");
        }
        Outcome::Retry { label, error }
    }

    fn send_auth_card(&self, open_id: &str) {
        if let Some(card_auth) = self.card_auth.clone() {
            send_reauth_card(
                card_auth,
                open_id.to_owned(),
                "Your authorization has expired. Please authorize again.".into(),
            );
        }
    }

    /// One step of an on-demand refresh, decided in one transaction.
    async fn decide(&self, msg: &RefreshUserToken) -> Result<Step, RefreshError> {
        let (vault, owner) = (self.vault.clone(), self.owner.clone());
        let (session_id, open_id) = (msg.session_id.clone(), msg.open_id.clone());
        let now = crate::db::now();
        let refused = match &msg.reason {
            RefreshReason::Refused(token) => Some(token.clone()),
            RefreshReason::ExpiresWithin(_) => None,
        };
        let due_by = match &msg.reason {
            RefreshReason::ExpiresWithin(d) => after(now, *d),
            RefreshReason::Refused(_) => now,
        };
        Ok(self
            .db
            .write(move |c| {
                let Some(row) = sessions::find(c, &session_id)? else {
                    return Ok(Step::Gone("the session no longer exists".into()));
                };
                if row.state != SessionState::Completed.as_str()
                    || row.open_id.as_deref() != Some(open_id.as_str())
                {
                    return Ok(Step::Gone(format!("the session is {}", row.state)));
                }
                let Some(access_enc) = row.access_token_enc.as_deref() else {
                    return Ok(Step::Gone("the session holds no access token".into()));
                };
                let slot = Slot::new(SealedColumn::UserAccessToken, &row.session_id);
                let access = match vault.open(slot, access_enc) {
                    Ok(a) => a,
                    Err(e) => {
                        return Ok(
                            match condemn_unreadable(c, row.id, &row.session_id, access_enc, &e)? {
                                Some(reason) => Step::Gone(reason),
                                None => Step::Broken(e.to_string()),
                            },
                        )
                    }
                };
                let stale = match &refused {
                    Some(token) => *token == access,
                    None => row.token_expires_at.is_none_or(|t| t <= due_by),
                };
                if !stale {
                    let current = UserTokens {
                        session_id: row.session_id.clone(),
                        open_id,
                        access_token: access,
                        refresh_token: None,
                        token_expires_at: row.token_expires_at,
                        auth_method: row.auth_method.parse().unwrap_or(AuthMethod::WebsocketCard),
                    };
                    return Ok(Step::Current(current));
                }
                if row.refresh_token_enc.is_none() {
                    return Ok(Step::Gone(
                        "the token expired and no refresh token was granted".into(),
                    ));
                }
                let lease_until = after(crate::db::now(), LEASE);
                Ok(
                    match sessions::claim_session_refresh(c, &session_id, &owner, lease_until)? {
                        Some(claim) => Step::Claimed(claim),
                        None => Step::Busy,
                    },
                )
            })
            .await?)
    }
}

/// Where an on-demand refresh stands.
enum Step {
    Current(UserTokens),
    Claimed(RefreshClaim),
    /// Another worker is refreshing this session.
    Busy,
    Gone(String),
    Broken(String),
}

/// Refresh one session now if it needs it; wait out a refresh of it that
/// another worker has in flight.
async fn refresh_now(
    worker: Arc<Worker>,
    msg: RefreshUserToken,
) -> Result<UserTokens, RefreshError> {
    let deadline = Instant::now() + BUSY_WAIT;
    let auth_required = |reason: String| RefreshError::AuthRequired {
        open_id: msg.open_id.clone(),
        reason,
    };
    loop {
        let step = if worker.is_pending(&msg.session_id) {
            Step::Busy
        } else {
            worker.decide(&msg).await?
        };
        match step {
            Step::Current(tokens) => return Ok(tokens),
            Step::Gone(reason) => return Err(auth_required(reason)),
            Step::Broken(reason) => return Err(RefreshError::Unavailable(reason)),
            Step::Claimed(claim) => {
                return match worker.refresh(claim).await {
                    Outcome::Refreshed(tokens) => Ok(tokens),
                    Outcome::Reauth(reason) => Err(auth_required(reason)),
                    Outcome::Retry { error, .. } => Err(RefreshError::Unavailable(error)),
                    Outcome::Lost => Err(auth_required(
                        "the session changed during its refresh".into(),
                    )),
                }
            }
            Step::Busy if Instant::now() >= deadline => {
                return Err(RefreshError::Unavailable(
                    "another refresh of this session is still in progress".into(),
                ))
            }
            Step::Busy => tokio::time::sleep(BUSY_POLL).await,
        }
    }
}

pub struct TokenRefresher {
    worker: Arc<Worker>,
    config: RefresherConfig,
    scheduled: bool,
    /// Refreshes from ticks in flight (claimed and not yet done).
    in_flight: usize,
    /// On-demand refreshes in flight.
    on_demand: usize,
    claiming: bool,
    /// The last claim filled every free slot: more sessions may be due.
    backlog: bool,
    lifecycle: Lifecycle,
}

impl TokenRefresher {
    pub fn new(
        config: RefresherConfig,
        db: Db,
        vault: Vault,
        lark: LarkClient,
        card_auth: Option<Addr<CardAuth>>,
    ) -> Self {
        let owner = format!("{NAME}-{}", uuid::Uuid::new_v4().simple());
        Self {
            worker: Arc::new(Worker {
                db,
                vault,
                lark,
                card_auth: card_auth.filter(|_| config.send_auth_card),
                app_id: config.app_id.clone(),
                app_secret: config.app_secret.clone(),
                owner,
                pace: Pace::default(),
                pending: Arc::default(),
            }),
            config,
            scheduled: false,
            in_flight: 0,
            on_demand: 0,
            claiming: false,
            backlog: false,
            lifecycle: Lifecycle::new(NAME),
        }
    }

    fn free_slots(&self) -> usize {
        self.config.concurrency.saturating_sub(self.in_flight)
    }

    /// With more rows due, claim again once a quarter of the slots are
    /// free: one query per refresh would make the database the bottleneck.
    fn claim_more(&mut self, ctx: &mut Context<Self>) {
        let batch = (self.config.concurrency / 4).max(1);
        if self.backlog && self.free_slots() >= batch {
            ctx.notify(ClaimDueTokens);
        }
    }

    fn arm(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(ClaimDueTokens);
        ctx.notify(UpdateExpiringGauge);
        ctx.run_interval(self.config.interval, |_, ctx| ctx.notify(ClaimDueTokens));
        ctx.run_interval(GAUGE_INTERVAL, |_, ctx| ctx.notify(UpdateExpiringGauge));
    }
}

impl Managed for TokenRefresher {
    const NAME: &'static str = NAME;

    fn on_start(&mut self, ctx: &mut Context<Self>) {
        if self.scheduled {
            self.arm(ctx);
        }
    }

    fn in_flight(&self) -> u64 {
        (self.in_flight + self.on_demand) as u64
    }

    fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "owner": self.worker.owner,
            "scheduled": self.scheduled,
            "concurrency": self.config.concurrency,
            "backlog": self.backlog,
            "rate_limited": self.worker.pace.holds(),
        })
    }
}

crate::managed_actor!(TokenRefresher);

impl Handler<StartSchedule> for TokenRefresher {
    type Result = ();

    fn handle(&mut self, _: StartSchedule, ctx: &mut Context<Self>) {
        if !std::mem::replace(&mut self.scheduled, true) {
            self.arm(ctx);
        }
    }
}

impl Handler<ClaimDueTokens> for TokenRefresher {
    type Result = ();

    fn handle(&mut self, _: ClaimDueTokens, ctx: &mut Context<Self>) {
        let free = self.free_slots();
        if self.claiming || free == 0 {
            return;
        }
        self.claiming = true;
        let worker = self.worker.clone();
        let due_by = after(crate::db::now(), self.config.ahead);
        let addr = ctx.address();
        actix_rt::spawn(async move {
            let owner = worker.owner.clone();
            let lease_until = after(crate::db::now(), LEASE);
            let claimed = worker
                .db
                .write(move |c| {
                    sessions::claim_due_refreshes(c, &owner, due_by, free as i64, lease_until)
                })
                .await;
            addr.do_send(Claimed {
                asked: free,
                result: claimed,
            });
        });
    }
}

impl Handler<Claimed> for TokenRefresher {
    type Result = ();

    fn handle(&mut self, Claimed { asked, result }: Claimed, ctx: &mut Context<Self>) {
        self.claiming = false;
        let claims = match result {
            Ok(claims) => claims,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim due token refreshes");
                self.lifecycle.degraded(&e);
                return;
            }
        };
        if self.lifecycle.state() != crate::supervise::ActorState::Running {
            self.lifecycle.running();
        }
        // Slots freed while the claim ran do not count: a full claim means
        // more rows may be due.
        self.backlog = claims.len() >= asked;
        // A session whose new pair waits for the database keeps its claim
        // until the lease ends; its stored refresh token is spent.
        let claims: Vec<RefreshClaim> = claims
            .into_iter()
            .filter(|c| !self.worker.is_pending(&c.session_id))
            .collect();
        self.in_flight += claims.len();
        for claim in claims {
            let worker = self.worker.clone();
            let addr = ctx.address();
            actix_rt::spawn(async move {
                worker.refresh(claim).await;
                addr.do_send(RefreshDone);
            });
        }
        self.claim_more(ctx);
    }
}

impl Handler<RefreshDone> for TokenRefresher {
    type Result = ();

    fn handle(&mut self, _: RefreshDone, ctx: &mut Context<Self>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.claim_more(ctx);
    }
}

impl Handler<RefreshUserToken> for TokenRefresher {
    type Result = ResponseActFuture<Self, Result<UserTokens, RefreshError>>;

    fn handle(&mut self, msg: RefreshUserToken, _: &mut Context<Self>) -> Self::Result {
        self.on_demand += 1;
        let worker = self.worker.clone();
        Box::pin(
            refresh_now(worker, msg)
                .into_actor(self)
                .map(|result, act, _| {
                    act.on_demand -= 1;
                    result
                }),
        )
    }
}

impl Handler<UpdateExpiringGauge> for TokenRefresher {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: UpdateExpiringGauge, _: &mut Context<Self>) -> Self::Result {
        let db = self.worker.db.clone();
        Box::pin(async move {
            let by = after(crate::db::now(), GAUGE_WINDOW);
            match db.read(move |c| sessions::count_expiring(c, by)).await {
                Ok(n) => metrics::gauge!(TOKENS_EXPIRING_SOON).set(n as f64),
                Err(e) => tracing::warn!(error = %e, "could not count expiring tokens"),
            }
        })
    }
}
