//! `SyncRunner`: one user-info sync run, from its `sync_runs` row to its
//! end. The actor ([`super::user_info_sync`]) and `lark-service sync` both
//! drive runs through it.
//!
//! A run walks the completed sessions in id order, a page at a time (keyset
//! paging: memory stays flat however many users there are), fetches each
//! user's profile with their own access token, a bounded number of calls at
//! once, and writes back only what changed, one transaction per page (which
//! also records the run's counts, so any replica can report progress).
//!
//! What counts as a change: name, email and avatar. A user whose profile is
//! unchanged is not written at all, so `updated_at` and `last_synced_at`
//! stay: `last_synced_at` is when the stored profile was last written from
//! the platform, and the run's own row says when users were last checked.
//! A field the platform leaves out (a scope not granted, a partial answer)
//! keeps its stored value rather than being erased.
//!
//! A refused token (`99991663`/`99991668`/`99991677`, or HTTP 401) is
//! refreshed through the token refresher's claim (so it never races a
//! refresh tick or another replica) and the call is made once more with
//! the new token: pages are read ahead of the calls, so a token expiring
//! during a run is the normal case, not a lost authorization. Only when
//! the refresh itself is refused for good (or there is no refresh token)
//! does the session move to `reauth_required`, and then only if the row
//! still holds the token generation that was tried and no refresh claim
//! is live. A rate
//! limit holds every call for as long as `x-ogw-ratelimit-reset` says (see
//! [`Pace`]) and retries the user; other transient failures retry with
//! backoff; a user who still fails is counted as failed, and the run goes on.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use futures_util::StreamExt;
use tracing::Instrument;

use super::error::SyncError;
use super::replica_lock::ReplicaLock;
use super::run_view::{ratio, RunStatus, Trigger};
use crate::auth::vault::{SealedColumn, Slot, Vault};
use crate::db::models::sync_run::{self, NewSyncRun, RunCounts};
use crate::db::models::user_auth_session::{self as sessions, ProfileChange, SyncCandidate};
use crate::db::{DatabaseUrl, Db};
use crate::lark::auth_api::UserInfo;
use crate::lark::client::{LarkClient, LarkError};
use crate::lark::pace::Pace;
use crate::metrics::{USER_SYNC_PROGRESS, USER_SYNC_RUNS, USER_SYNC_USERS};
use crate::refresh::token_refresher::{
    RefreshError, RefreshReason, RefreshUserToken, TokenRefresher,
};
use crate::supervise::backoff::Backoff;

/// What a run that found another replica running records as its error.
pub const SKIPPED: &str = "skipped: another replica is running the sync";

/// Waits between retries of a transient failure (not a rate limit, which
/// says how long to wait).
const RETRY_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(200),
    max: Duration::from_secs(5),
};

/// How a run goes about its work.
#[derive(Debug, Clone, Copy)]
pub struct SyncOptions {
    /// Sessions read (and written) per transaction.
    pub page_size: i64,
    /// `user_info` calls in flight at once.
    pub concurrency: usize,
    /// Calls per user before it counts as failed.
    pub max_attempts: u32,
    /// A progress line is logged every this many users.
    pub log_every: i64,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            page_size: 500,
            // The platform allows 50 calls/s per app on most APIs; a few
            // in flight reach that without piling up refusals.
            concurrency: 16,
            max_attempts: 6,
            log_every: 1_000,
        }
    }
}

/// A run's live counts, shared with whoever reports on it.
#[derive(Debug, Default)]
pub struct Progress {
    total: AtomicI64,
    done: AtomicI64,
    updated: AtomicI64,
    failed: AtomicI64,
}

impl Progress {
    pub fn counts(&self) -> RunCounts {
        RunCounts {
            users_total: self.total.load(Ordering::Relaxed),
            users_done: self.done.load(Ordering::Relaxed),
            users_updated: self.updated.load(Ordering::Relaxed),
            users_failed: self.failed.load(Ordering::Relaxed),
        }
    }

    fn add(&self, page: &RunCounts) {
        self.done.fetch_add(page.users_done, Ordering::Relaxed);
        self.updated
            .fetch_add(page.users_updated, Ordering::Relaxed);
        self.failed.fetch_add(page.users_failed, Ordering::Relaxed);
    }
}

/// One user visited: the row, the token generation it was read with, and
/// what was found.
struct Visited {
    id: i64,
    generation: i64,
    visit: Visit,
}

/// What visiting one user found.
enum Visit {
    Unchanged,
    Changed(ProfileChange),
    /// The token was refused; the reason goes to the session's `error`.
    Reauth(String),
    Failed(String),
}

/// Runs syncs. Cheap to clone.
#[derive(Clone)]
pub struct SyncRunner {
    db: Db,
    lark: LarkClient,
    vault: Vault,
    database_url: DatabaseUrl,
    options: SyncOptions,
    refresher: Addr<TokenRefresher>,
}

impl SyncRunner {
    pub fn new(
        db: Db,
        lark: LarkClient,
        vault: Vault,
        database_url: DatabaseUrl,
        options: SyncOptions,
        refresher: Addr<TokenRefresher>,
    ) -> Self {
        Self {
            db,
            lark,
            vault,
            database_url,
            options,
            refresher,
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Record a new run as `running`; returns its id.
    pub async fn begin(&self, trigger: Trigger) -> Result<i64, SyncError> {
        let id = self
            .db
            .write(move |c| {
                sync_run::insert(
                    c,
                    &NewSyncRun {
                        trigger: trigger.as_str(),
                        started_at: crate::db::now(),
                        status: RunStatus::Running.as_str(),
                    },
                )
            })
            .await?;
        tracing::info!(
            run_id = id,
            trigger = trigger.as_str(),
            "user-info sync started"
        );
        Ok(id)
    }

    /// Carry out run `run_id` (from [`begin`](Self::begin)) to its end,
    /// unless another replica is running one; returns how it ended.
    pub async fn run(&self, run_id: i64, progress: Arc<Progress>) -> RunStatus {
        let span = tracing::info_span!("user_info_sync", run_id);
        async move {
            let (status, error) = match ReplicaLock::try_acquire(&self.database_url).await {
                Ok(Some(lock)) => {
                    metrics::gauge!(USER_SYNC_PROGRESS).set(0.0);
                    let walked = self.walk(run_id, &progress).await;
                    lock.release().await;
                    match walked {
                        Ok(()) => (RunStatus::Finished, None),
                        Err(e) => (RunStatus::Failed, Some(e.to_string())),
                    }
                }
                Ok(None) => (RunStatus::Skipped, Some(SKIPPED.to_owned())),
                Err(e) => (RunStatus::Failed, Some(e.to_string())),
            };
            self.end(run_id, status, &progress, error).await;
            status
        }
        .instrument(span)
        .await
    }

    async fn end(
        &self,
        run_id: i64,
        status: RunStatus,
        progress: &Progress,
        error: Option<String>,
    ) {
        let counts = progress.counts();
        metrics::counter!(USER_SYNC_RUNS, "outcome" => status.outcome()).increment(1);
        match status {
            RunStatus::Skipped => {
                tracing::info!("user-info sync skipped: another replica holds the lock")
            }
            RunStatus::Failed => {
                tracing::error!(error = ?error, done = counts.users_done, total = counts.users_total, "user-info sync failed")
            }
            _ => tracing::info!(
                total = counts.users_total,
                done = counts.users_done,
                updated = counts.users_updated,
                failed = counts.users_failed,
                "user-info sync finished"
            ),
        }
        let written = self
            .db
            .write(move |c| {
                sync_run::finish(
                    c,
                    run_id,
                    status.as_str(),
                    &counts,
                    crate::db::now(),
                    error.as_deref(),
                )
            })
            .await;
        if let Err(e) = written {
            tracing::error!(error = %e, "could not record the end of the user-info sync");
        }
    }

    async fn walk(&self, run_id: i64, progress: &Progress) -> Result<(), SyncError> {
        let (total, last_id) = self.db.read(sessions::completed_extent).await?;
        progress.total.store(total, Ordering::Relaxed);
        let counts = progress.counts();
        self.db
            .write(move |c| sync_run::record_progress(c, run_id, &counts))
            .await?;
        let Some(through) = last_id else {
            metrics::gauge!(USER_SYNC_PROGRESS).set(1.0);
            return Ok(());
        };
        let pace = Pace::default();
        let page_size = self.options.page_size;
        let mut after = 0;
        let mut next_log = self.options.log_every;
        loop {
            let page = self
                .db
                .read(move |c| sessions::completed_page(c, after, through, page_size))
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.id;
            let visits: Vec<Visited> = futures_util::stream::iter(page)
                .map(|row| self.visit(row, &pace))
                .buffer_unordered(self.options.concurrency)
                .collect()
                .await;
            self.record_page(run_id, visits, progress).await?;
            let counts = progress.counts();
            metrics::gauge!(USER_SYNC_PROGRESS).set(ratio(counts.users_done, counts.users_total));
            if counts.users_done >= next_log {
                next_log = counts.users_done + self.options.log_every;
                tracing::info!(
                    done = counts.users_done,
                    total = counts.users_total,
                    updated = counts.users_updated,
                    failed = counts.users_failed,
                    rate_limited = pace.holds(),
                    "user-info sync progress"
                );
            }
        }
        Ok(())
    }

    /// Write one page's changes and the run's counts in one transaction.
    async fn record_page(
        &self,
        run_id: i64,
        visits: Vec<Visited>,
        progress: &Progress,
    ) -> Result<(), SyncError> {
        let before = progress.counts();
        let now = crate::db::now();
        let page = self
            .db
            .write(move |c| {
                let mut page = RunCounts {
                    users_done: visits.len() as i64,
                    ..RunCounts::default()
                };
                for Visited {
                    id,
                    generation,
                    visit,
                } in visits
                {
                    let outcome = match visit {
                        Visit::Unchanged => "unchanged",
                        // A session revoked since the page was read keeps
                        // its state and is left alone.
                        Visit::Changed(change) if sessions::apply_profile(c, id, &change)? => {
                            page.users_updated += 1;
                            "updated"
                        }
                        Visit::Changed(_) => "unchanged",
                        // The refresher may have moved it already (a refused
                        // refresh), or a new pair may have been stored since
                        // the page was read: then the row is left alone.
                        Visit::Reauth(reason) => {
                            sessions::mark_reauth_required(c, id, generation, &reason, now)?;
                            page.users_failed += 1;
                            "reauth_required"
                        }
                        Visit::Failed(_) => {
                            page.users_failed += 1;
                            "failed"
                        }
                    };
                    metrics::counter!(USER_SYNC_USERS, "outcome" => outcome).increment(1);
                }
                let counts = RunCounts {
                    users_total: before.users_total,
                    users_done: before.users_done + page.users_done,
                    users_updated: before.users_updated + page.users_updated,
                    users_failed: before.users_failed + page.users_failed,
                };
                sync_run::record_progress(c, run_id, &counts)?;
                Ok(page)
            })
            .await?;
        progress.add(&page);
        Ok(())
    }

    async fn visit(&self, row: SyncCandidate, pace: &Pace) -> Visited {
        let visit = self.fetch(&row, pace).await;
        match &visit {
            Visit::Failed(reason) => {
                tracing::warn!(session_id = %row.session_id, open_id = ?row.open_id, %reason, "could not sync the user's profile")
            }
            Visit::Reauth(reason) => {
                tracing::info!(session_id = %row.session_id, open_id = ?row.open_id, %reason, "token refused; the user must authorize again")
            }
            _ => {}
        }
        Visited {
            id: row.id,
            generation: row.token_generation,
            visit,
        }
    }

    async fn fetch(&self, row: &SyncCandidate, pace: &Pace) -> Visit {
        let Some(sealed) = row.access_token_enc.as_deref() else {
            return Visit::Reauth("the session holds no access token".into());
        };
        let slot = Slot::new(SealedColumn::UserAccessToken, &row.session_id);
        let mut token = match self.vault.open(slot, sealed) {
            Ok(t) => t,
            Err(e) => {
                let Some(unreadable) = e.unreadable() else {
                    return Visit::Failed(format!("cannot open the stored token: {e}"));
                };
                // No key this process has opens it: only a new
                // authorization helps, so it is not a failure to retry.
                unreadable.record();
                return Visit::Reauth(e.session_reason());
            }
        };
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            pace.ready().await;
            let err = match self.lark.user_info(&token).await {
                Ok(info) => return compare(row, info),
                Err(e) => e,
            };
            if err.is_token_invalid() {
                if refreshed {
                    // A token the platform just issued is refused: not the
                    // user's doing, so not a reason to condemn the session.
                    return Visit::Failed(format!(
                        "the refreshed access token was refused too: {err}"
                    ));
                }
                refreshed = true;
                match self.refresh(row, token, &err).await {
                    Ok(fresh) => {
                        token = fresh;
                        continue;
                    }
                    Err(visit) => return visit,
                }
            }
            if attempt >= self.options.max_attempts || !err.is_transient() {
                return Visit::Failed(err.to_string());
            }
            match err {
                LarkError::RateLimited { retry_after } => {
                    tracing::warn!(?retry_after, "rate limited; every call waits");
                    pace.hold(retry_after);
                }
                _ => tokio::time::sleep(RETRY_BACKOFF.delay(attempt)).await,
            }
        }
    }

    /// Ask the refresher for a new token for `row`, whose `refused` one the
    /// platform turned down with `err`; the new access token, or what the
    /// visit comes to.
    async fn refresh(
        &self,
        row: &SyncCandidate,
        refused: String,
        err: &LarkError,
    ) -> Result<String, Visit> {
        tracing::info!(session_id = %row.session_id, error = %err, "access token refused during the sync; refreshing it");
        let asked = self
            .refresher
            .send(RefreshUserToken {
                session_id: row.session_id.clone(),
                open_id: row.open_id.clone().unwrap_or_default(),
                reason: RefreshReason::Refused(refused),
            })
            .await;
        match asked {
            Ok(Ok(tokens)) => Ok(tokens.access_token),
            Ok(Err(RefreshError::AuthRequired { reason, .. })) => Err(Visit::Reauth(format!(
                "the access token was refused while syncing the profile ({err}) and could not be refreshed ({reason}); the user must authorize again"
            ))),
            Ok(Err(e)) => Err(Visit::Failed(format!(
                "the access token was refused and could not be refreshed now: {e}"
            ))),
            Err(e) => Err(Visit::Failed(format!("the token refresher is unavailable: {e}"))),
        }
    }
}

/// The stored profile against the platform's answer.
fn compare(row: &SyncCandidate, info: UserInfo) -> Visit {
    let user_name = info.name.or_else(|| row.user_name.clone());
    let email = info
        .email
        .or(info.enterprise_email)
        .or_else(|| row.email.clone());
    let avatar_url = info.avatar_url.or_else(|| row.avatar_url.clone());
    if user_name == row.user_name && email == row.email && avatar_url == row.avatar_url {
        return Visit::Unchanged;
    }
    let now = crate::db::now();
    Visit::Changed(ProfileChange {
        user_name,
        email,
        avatar_url,
        updated_at: now,
        last_synced_at: Some(now),
    })
}
