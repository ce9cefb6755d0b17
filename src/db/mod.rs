//! Persistence: diesel over SQLite or PostgreSQL from one code path.
//!
//! - [`connection`]: backend choice, pool, migrations.
//! - [`executor`]: the `DbExecutor` actors (a `SyncArbiter`, because diesel
//!   blocks) and the [`Db`] handle the rest of the service uses.
//! - [`schema`] and [`models`]: tables, row structs and one-statement queries.

pub mod connection;
pub mod executor;
pub mod models;
pub mod schema;

pub use connection::{AnyConnection, DatabaseUrl, Pool};
pub use executor::Db;

/// Anything that went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("could not connect: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("cannot create the database file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("database executor unavailable: {0}")]
    Mailbox(#[from] actix::MailboxError),
}

impl DbError {
    /// Does the error say the database itself is unavailable (no
    /// connection, a lock held elsewhere, a connection cut), rather than
    /// that this statement was wrong? What [`Db::writes_failing`] tracks.
    pub fn is_outage(&self) -> bool {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        match self {
            Self::Pool(_) | Self::Connect(_) | Self::Mailbox(_) => true,
            Self::Query(Error::DatabaseError(kind, _)) => !matches!(
                kind,
                Kind::UniqueViolation
                    | Kind::ForeignKeyViolation
                    | Kind::NotNullViolation
                    | Kind::CheckViolation
            ),
            Self::Query(Error::BrokenTransactionManager) => true,
            Self::Query(_) | Self::File { .. } | Self::Migration(_) => false,
        }
    }

    /// Did the statement break a uniqueness rule (a racing duplicate insert)?
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            Self::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

/// `t` plus a std `Duration` (one too large for chrono leaves `t`): the
/// deadlines and lease ends that rows store are computed this way.
pub fn after(t: chrono::NaiveDateTime, d: std::time::Duration) -> chrono::NaiveDateTime {
    chrono::Duration::from_std(d).map_or(t, |d| t + d)
}

/// The current UTC time at the precision both backends store (PostgreSQL
/// keeps microseconds), so a value written and read back compares equal.
pub fn now() -> chrono::NaiveDateTime {
    use chrono::{DurationRound, TimeDelta};
    let now = chrono::Utc::now().naive_utc();
    now.duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(now)
}
