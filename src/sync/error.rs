//! `SyncError`: why a sync could not be started, looked up or finished.

use crate::db::DbError;

use super::replica_lock::LockError;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Only one run at a time; this one is in progress.
    #[error("a user-info sync is already running (run {0}); follow it at GET /admin/sync/{0}")]
    AlreadyRunning(i64),
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("the sync actor is unavailable: {0}")]
    Mailbox(#[from] actix::MailboxError),
}
