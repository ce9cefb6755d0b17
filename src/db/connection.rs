//! Connections: which backend a `DATABASE_URL` names, how connections are
//! made and pooled, and the embedded migrations.
//!
//! `AnyConnection` lets one query code path serve SQLite and PostgreSQL. We
//! never let diesel guess the backend from the string (its `establish` tries
//! each backend in turn, and SQLite accepts any path, so a mistyped
//! PostgreSQL URL would silently become a file): [`DatabaseUrl`] decides by
//! scheme and [`ConnectionManager`] opens exactly that backend.
//!
//! A SQLite file the service creates is made readable by its owner only
//! (0600) before SQLite opens it, whatever the process umask: it holds
//! the sessions and their (encrypted) tokens. SQLite gives the `-wal` and
//! `-shm` files it creates the database file's permissions (`robust_open`
//! with `findCreateFileMode` in SQLite's `os_unix.c`), so they follow.

use std::fmt;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::DbError;

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// How long a SQLite writer waits for the lock before `database is locked`.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// A connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// A parsed `DATABASE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH` (or `sqlite:PATH`); the path is relative to the working directory.
    Sqlite(String),
    /// `postgres://…` or `postgresql://…`, passed to libpq as is.
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if let Some(path) = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://lark-service.db".into());
            }
            return Ok(Self::Sqlite(path.to_owned()));
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            url::Url::parse(raw).map_err(|e| format!("not a valid PostgreSQL URL ({e})"))?;
            return Ok(Self::Postgres(raw.to_owned()));
        }
        Err(format!(
            "`{}` is neither sqlite://PATH nor postgres://USER@HOST/DB",
            redact(raw)
        ))
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// Hide a password in a URL before it reaches a message.
fn redact(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => raw.to_owned(),
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "sqlite://{p}"),
            Self::Postgres(u) => f.write_str(&redact(u)),
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Opens connections of the backend the URL names, with per-connection
/// settings applied.
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    url: DatabaseUrl,
}

impl ConnectionManager {
    pub fn new(url: DatabaseUrl) -> Self {
        Self { url }
    }

    /// Open one connection.
    pub fn establish(&self) -> Result<AnyConnection, DbError> {
        match &self.url {
            DatabaseUrl::Postgres(u) => Ok(AnyConnection::Postgresql(PgConnection::establish(u)?)),
            DatabaseUrl::Sqlite(path) => {
                create_private(path)?;
                let mut c = SqliteConnection::establish(path)?;
                // The busy timeout comes first: switching to WAL takes a
                // lock too, and another process may hold it. WAL lets
                // readers proceed during a write; the timeout makes
                // concurrent writers queue instead of failing. FULL syncs
                // the WAL on every commit: with NORMAL a power loss can
                // undo commits already acked (ledger rows, outbox rows,
                // rotated token pairs). The ledger's group commit keeps
                // that one fsync per batch of events.
                c.batch_execute(&format!(
                    "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
                ))?;
                Ok(AnyConnection::Sqlite(c))
            }
        }
    }
}

/// Create the SQLite file at `path` with mode 0600 if it does not exist
/// yet. An existing file keeps the mode its owner gave it; in-memory and
/// URI-style names (`:memory:`, `file:…`) are SQLite's to handle.
fn create_private(path: &str) -> Result<(), DbError> {
    use std::os::unix::fs::OpenOptionsExt;
    if path == ":memory:" || path.starts_with("file:") {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(DbError::File {
            path: path.to_owned(),
            source: e,
        }),
    }
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = AnyConnection;
    type Error = DbError;

    fn connect(&self) -> Result<AnyConnection, DbError> {
        self.establish()
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), DbError> {
        conn.batch_execute("SELECT 1").map_err(DbError::from)
    }

    fn has_broken(&self, _conn: &mut AnyConnection) -> bool {
        false
    }
}

pub type Pool = r2d2::Pool<ConnectionManager>;
pub type PooledConnection = r2d2::PooledConnection<ConnectionManager>;

/// Build a pool. SQLite gets fewer connections: it has one writer anyway.
pub fn build_pool(url: &DatabaseUrl) -> Result<Pool, DbError> {
    let size = match url {
        DatabaseUrl::Sqlite(_) => 4,
        DatabaseUrl::Postgres(_) => 10,
    };
    r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(5))
        .build(ConnectionManager::new(url.clone()))
        .map_err(DbError::from)
}

/// Apply pending migrations; returns how many ran.
pub fn run_migrations(conn: &mut AnyConnection) -> Result<usize, DbError> {
    let applied = match conn {
        AnyConnection::Postgresql(c) => c.run_pending_migrations(PG_MIGRATIONS),
        AnyConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
    }
    .map_err(|e| DbError::Migration(e.to_string()))?;
    Ok(applied.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_their_backend_by_scheme() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://lark.db").unwrap(),
            DatabaseUrl::Sqlite("lark.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:x.db").unwrap(),
            DatabaseUrl::Sqlite("x.db".into())
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://u@h/db").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
        assert!(DatabaseUrl::parse("mysql://h/db").is_err());
        assert!(DatabaseUrl::parse("lark.db").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn a_new_sqlite_file_and_its_wal_are_private() {
        use diesel::connection::SimpleConnection;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private.db");
        let url = DatabaseUrl::parse(&format!("sqlite://{}", path.display())).unwrap();
        let mut conn = ConnectionManager::new(url).establish().unwrap();
        conn.batch_execute("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
        let mode = |suffix: &str| {
            let file = format!("{}{suffix}", path.display());
            std::fs::metadata(&file)
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(""), 0o600);
        assert_eq!(mode("-wal"), 0o600);
        assert_eq!(mode("-shm"), 0o600);
    }

    #[test]
    fn passwords_are_not_echoed() {
        let u = DatabaseUrl::parse("postgres://u:hunter2@h/db").unwrap();
        assert!(!u.to_string().contains("hunter2"));
    }
}
