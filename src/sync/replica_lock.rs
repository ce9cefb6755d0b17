//! `ReplicaLock`: makes one replica run the sync when several share a
//! PostgreSQL database.
//!
//! A session-level advisory lock (`pg_try_advisory_lock`) taken on a
//! connection of its own, opened for the run and closed after it: a pooled
//! connection would go back to the pool still holding the lock, and a
//! replica that dies mid-run releases it with its connection. SQLite is
//! for one replica, so there the lock is always granted.

use diesel::sql_types::BigInt;
use diesel::{Connection, PgConnection, RunQueryDsl};

use crate::db::{DatabaseUrl, DbError};

/// The advisory-lock key of the user-info sync: "larksync" in ASCII.
const SYNC_LOCK_KEY: i64 = 0x6c61_726b_7379_6e63;

diesel::define_sql_function! {
    fn pg_try_advisory_lock(key: BigInt) -> Bool;
}

diesel::define_sql_function! {
    fn pg_advisory_unlock(key: BigInt) -> Bool;
}

/// Why the lock could not be asked for.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("sync lock: {0}")]
    Db(#[from] DbError),
    #[error("sync lock: the blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The right to run the sync, held until [`release`](Self::release) (or drop).
pub enum ReplicaLock {
    /// SQLite: one replica, nothing to share.
    Single,
    /// The connection that holds the advisory lock.
    Postgres(Box<PgConnection>),
}

impl ReplicaLock {
    /// Take the lock, or `None` when another replica holds it.
    pub async fn try_acquire(url: &DatabaseUrl) -> Result<Option<Self>, LockError> {
        let DatabaseUrl::Postgres(url) = url else {
            return Ok(Some(Self::Single));
        };
        let url = url.clone();
        // Diesel blocks; this runs once per sync, off the async threads.
        blocking(move || {
            let mut conn = PgConnection::establish(&url).map_err(DbError::from)?;
            let locked: bool = diesel::select(pg_try_advisory_lock(SYNC_LOCK_KEY))
                .get_result(&mut conn)
                .map_err(DbError::from)?;
            Ok(locked.then(|| Self::Postgres(Box::new(conn))))
        })
        .await
    }

    /// Give the lock back and close its connection.
    pub async fn release(self) {
        if let Self::Postgres(mut conn) = self {
            let unlocked = blocking(move || {
                diesel::select(pg_advisory_unlock(SYNC_LOCK_KEY))
                    .get_result::<bool>(conn.as_mut())
                    .map_err(DbError::from)
            })
            .await;
            // Closing the connection releases the lock anyway; a failed
            // unlock is only worth a note.
            if let Err(e) = unlocked {
                tracing::warn!(error = %e, "could not release the sync lock; its connection is closed instead");
            }
        }
    }
}

async fn blocking<R: Send + 'static>(
    work: impl FnOnce() -> Result<R, DbError> + Send + 'static,
) -> Result<R, LockError> {
    Ok(tokio::task::spawn_blocking(work).await??)
}
