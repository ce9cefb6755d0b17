//! What a sync run is, as stored in `sync_runs` and shown by
//! `GET /admin/sync/{id}`: who started it, where it is, its counts.

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::db::models::sync_run::SyncRun;

/// Who started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `USER_INFO_SYNC_SCHEDULE` came round.
    Cron,
    /// `POST /admin/sync` or `lark-service sync`.
    Admin,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cron => "cron",
            Self::Admin => "admin",
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    /// Every user was visited (some may have failed; see the counts).
    Finished,
    /// The run stopped early; `error` says why.
    Failed,
    /// Another replica was already running the sync.
    Skipped,
}

impl RunStatus {
    pub const ALL: [RunStatus; 4] = [Self::Running, Self::Finished, Self::Failed, Self::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    /// The label of `lark_user_sync_runs_total{outcome}` for a run that ended so.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::Running | Self::Finished => "ok",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// A run's progress and counts.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SyncRunView {
    pub id: i64,
    #[schema(value_type = String, example = "admin")]
    pub trigger: String,
    pub status: RunStatus,
    pub started_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
    /// Completed sessions when the run started.
    pub total: i64,
    /// Users visited so far.
    pub done: i64,
    /// Users whose stored profile changed.
    pub updated: i64,
    /// Users whose profile could not be fetched (including those whose
    /// token was refused and who must authorize again).
    pub failed: i64,
    /// `done / total`, 1 when there is nothing to do.
    pub progress: f64,
    pub error: Option<String>,
}

impl From<SyncRun> for SyncRunView {
    fn from(row: SyncRun) -> Self {
        let status = RunStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == row.status)
            // A status this version does not know was written by a newer
            // one; showing it as failed with the error column is the
            // honest reading.
            .unwrap_or(RunStatus::Failed);
        Self {
            id: row.id,
            trigger: row.trigger,
            status,
            started_at: row.started_at,
            finished_at: row.finished_at,
            total: row.users_total,
            done: row.users_done,
            updated: row.users_updated,
            failed: row.users_failed,
            progress: ratio(row.users_done, row.users_total),
            error: row.error,
        }
    }
}

/// `done / total`, 1 when there is nothing to do.
pub fn ratio(done: i64, total: i64) -> f64 {
    if total <= 0 {
        1.0
    } else {
        (done as f64 / total as f64).min(1.0)
    }
}
