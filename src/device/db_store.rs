//! The production [`DeviceStore`]: one `device_tokens` row per profile,
//! tokens sealed by the [`Vault`].
//!
//! The `auth` commands are short-lived processes that run one command, so
//! the store holds a plain connection rather than the service's actor `Db`,
//! and its methods block, as the trait says. The profile is always
//! `default`: there is no profile switching.
//!
//! A row has one host, so a token belongs to the host in its row. Saving a
//! different host for the profile (`--phase init` on another host) drops the
//! token of the old one rather than ever sending it to the new host.
//!
//! Without `ENCRYPTION_KEY` the store still opens: reading a profile that
//! holds no token, saving a host and logging out need no key. Anything that
//! must seal or open a token then fails with a message naming the key, and a
//! key that does not open the stored ciphertext is an error, never garbage.
//!
//! The refresh lock is a transaction on a connection of its own, held across
//! the HTTP refresh: `SELECT … FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE`
//! on SQLite. Both wait at most [`LOCK_WAIT`] for another holder.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime};
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use tracing::info;

use super::memory_store::DEFAULT_PROFILE;
use super::store::{DeviceStore, StoreError, StoredToken, TokenLock};
use crate::auth::vault::{SealedColumn, Slot, Vault};
use crate::db::connection::{run_migrations, ConnectionManager};
use crate::db::models::device_token::{self, DeviceToken};
use crate::db::{AnyConnection, DatabaseUrl, DbError};

/// How long a refresher waits for another process's refresh to finish:
/// discovery plus the refresh call, each bounded by the client's timeout.
pub const LOCK_WAIT: Duration = Duration::from_secs(60);

/// See the module docs.
pub struct DbDeviceStore {
    manager: ConnectionManager,
    conn: Mutex<AnyConnection>,
    codec: Codec,
}

impl DbDeviceStore {
    /// Connect to `url` and apply pending migrations. `vault` may be
    /// absent; see the module docs.
    pub fn open(url: &DatabaseUrl, vault: Option<Vault>) -> Result<Self, StoreError> {
        let manager = ConnectionManager::new(url.clone());
        let mut conn = manager
            .establish()
            .map_err(|e| store_error(format!("cannot open {url}"), e))?;
        run_migrations(&mut conn).map_err(|e| store_error(format!("cannot migrate {url}"), e))?;
        Ok(Self {
            manager,
            conn: Mutex::new(conn),
            codec: Codec { vault },
        })
    }

    fn conn(&self) -> MutexGuard<'_, AnyConnection> {
        // A panic mid-statement leaves nothing half-done in memory: the
        // database rolls back an unfinished transaction itself.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `work` in one write transaction on the shared connection.
    fn write<R>(
        &self,
        what: &str,
        work: impl FnOnce(&mut AnyConnection) -> Result<R, DbError>,
    ) -> Result<R, StoreError> {
        let mut conn = self.conn();
        let result = begin_write(&mut conn).and_then(|()| work(&mut conn));
        let result = match result {
            Ok(value) => end(&mut conn, true).map(|()| value),
            Err(e) => {
                let _ = end(&mut conn, false);
                Err(e)
            }
        };
        result.map_err(|e| store_error(what, e))
    }

    fn row(&self, profile: &str) -> Result<Option<DeviceToken>, StoreError> {
        device_token::find(&mut self.conn(), profile)
            .map_err(|e| store_error(format!("cannot read profile `{profile}`"), e))
    }
}

impl DeviceStore for DbDeviceStore {
    fn current_profile(&self) -> Result<String, StoreError> {
        Ok(DEFAULT_PROFILE.to_owned())
    }

    fn host(&self, profile: &str) -> Result<Option<String>, StoreError> {
        Ok(self.row(profile)?.map(|row| row.host))
    }

    fn set_host(&self, profile: &str, host: &str) -> Result<(), StoreError> {
        self.write(&format!("cannot save the host of `{profile}`"), |c| {
            let now = crate::db::now();
            let row = match device_token::find(c, profile)? {
                Some(row) if row.host == host => DeviceToken {
                    updated_at: now,
                    ..row
                },
                previous => {
                    if previous.is_some_and(|row| row.access_token_enc.is_some()) {
                        info!(%profile, %host, "host changed; the old host's token is dropped");
                    }
                    DeviceToken {
                        profile: profile.to_owned(),
                        host: host.to_owned(),
                        client_id: None,
                        access_token_enc: None,
                        refresh_token_enc: None,
                        expires_at: None,
                        updated_at: now,
                    }
                }
            };
            device_token::upsert(c, &row)
        })
    }

    fn load_token(&self, profile: &str) -> Result<Option<StoredToken>, StoreError> {
        match self.row(profile)? {
            Some(row) => self.codec.open(row),
            None => Ok(None),
        }
    }

    fn save_token(&self, profile: &str, token: &StoredToken) -> Result<(), StoreError> {
        let row = self.codec.seal(profile, token)?;
        self.write(&format!("cannot save the token of `{profile}`"), |c| {
            device_token::upsert(c, &row)
        })
    }

    fn delete_token(&self, profile: &str) -> Result<bool, StoreError> {
        device_token::clear_token(&mut self.conn(), profile, crate::db::now())
            .map_err(|e| store_error(format!("cannot remove the token of `{profile}`"), e))
    }

    fn lock_token(&self, profile: &str) -> Result<Box<dyn TokenLock + '_>, StoreError> {
        let what = format!("cannot lock the token of `{profile}`");
        let mut conn = self
            .manager
            .establish()
            .map_err(|e| store_error(&what, e))?;
        begin_locked(&mut conn).map_err(|e| store_error(&what, e))?;
        // From here on, dropping the lock rolls the transaction back.
        let mut lock = DbTokenLock {
            conn,
            open: true,
            codec: self.codec.clone(),
            profile: profile.to_owned(),
            token: None,
        };
        let row = device_token::find_for_update(&mut lock.conn, profile)
            .map_err(|e| store_error(&what, e))?;
        lock.token = match row {
            Some(row) => self.codec.open(row)?,
            None => None,
        };
        Ok(Box::new(lock))
    }
}

/// A held refresh lock: an open transaction on a connection of its own.
struct DbTokenLock {
    conn: AnyConnection,
    /// The transaction has not been committed or rolled back yet.
    open: bool,
    codec: Codec,
    profile: String,
    token: Option<StoredToken>,
}

impl TokenLock for DbTokenLock {
    fn token(&self) -> Option<&StoredToken> {
        self.token.as_ref()
    }

    fn commit(mut self: Box<Self>, token: &StoredToken) -> Result<(), StoreError> {
        let what = format!("cannot save the refreshed token of `{}`", self.profile);
        let row = self.codec.seal(&self.profile, token)?;
        device_token::upsert(&mut self.conn, &row).map_err(|e| store_error(&what, e))?;
        // Whatever the outcome, the transaction is over: a failed COMMIT has
        // rolled back, and the connection closes with the lock.
        self.open = false;
        end(&mut self.conn, true).map_err(|e| store_error(&what, e))
    }
}

impl Drop for DbTokenLock {
    fn drop(&mut self) {
        if self.open {
            // Closing the connection right after also ends the transaction,
            // so a failed rollback leaves no lock behind.
            let _ = end(&mut self.conn, false);
        }
    }
}

/// Converts between [`StoredToken`] and a row, sealing and opening the
/// token columns.
#[derive(Clone)]
struct Codec {
    vault: Option<Vault>,
}

impl Codec {
    fn vault(&self) -> Result<&Vault, StoreError> {
        self.vault
            .as_ref()
            .ok_or_else(|| key_missing("the stored token is encrypted with it"))
    }

    fn seal(&self, profile: &str, token: &StoredToken) -> Result<DeviceToken, StoreError> {
        let vault = self.vault()?;
        let seal = |column: SealedColumn, plain: &str| {
            vault
                .seal(Slot::new(column, profile), plain)
                .map_err(|e| store_error(format!("cannot encrypt the token of `{profile}`"), e))
        };
        let expires_at = match token.expires_at_ms {
            ms if ms <= 0 => None,
            ms => Some(
                DateTime::from_timestamp_millis(ms)
                    .ok_or_else(|| StoreError::msg(format!("expiry {ms} ms is out of range")))?
                    .naive_utc(),
            ),
        };
        Ok(DeviceToken {
            profile: profile.to_owned(),
            host: token.host.clone(),
            client_id: Some(token.client_id.clone()),
            access_token_enc: Some(seal(SealedColumn::DeviceAccessToken, &token.access_token)?),
            refresh_token_enc: token
                .refresh_token
                .as_deref()
                .map(|t| seal(SealedColumn::DeviceRefreshToken, t))
                .transpose()?,
            expires_at,
            updated_at: crate::db::now(),
        })
    }

    /// The token in `row`; `None` for a row with a host only.
    fn open(&self, row: DeviceToken) -> Result<Option<StoredToken>, StoreError> {
        let Some(access_enc) = row.access_token_enc else {
            return Ok(None);
        };
        let vault = self.vault()?;
        let open = |column: SealedColumn, sealed: &str| {
            vault
                .open(Slot::new(column, &row.profile), sealed)
                .map_err(|e| {
                    store_error(
                        format!("the stored token of `{}` cannot be read", row.profile),
                        e,
                    )
                })
        };
        let client_id = row.client_id.clone().ok_or_else(|| {
            StoreError::msg(format!(
                "the stored token of `{}` has no client_id; log in again",
                row.profile
            ))
        })?;
        Ok(Some(StoredToken {
            access_token: open(SealedColumn::DeviceAccessToken, &access_enc)?,
            refresh_token: row
                .refresh_token_enc
                .as_deref()
                .map(|t| open(SealedColumn::DeviceRefreshToken, t))
                .transpose()?,
            expires_at_ms: row.expires_at.map_or(0, expiry_ms),
            client_id,
            host: row.host,
        }))
    }
}

/// The error for a missing `ENCRYPTION_KEY`; `why` says what needs it.
pub fn key_missing(why: &str) -> StoreError {
    StoreError::msg(format!(
        "ENCRYPTION_KEY is not set, and {why}; set it to the service's 64 hex characters \
         (`openssl rand -hex 32` makes a new one)"
    ))
}

fn expiry_ms(at: NaiveDateTime) -> i64 {
    at.and_utc().timestamp_millis()
}

/// `what` failed because of `source`; the message carries the cause,
/// because the CLI prints only the message.
fn store_error(
    what: impl std::fmt::Display,
    source: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::with_source(format!("{what}: {source}"), source)
}

/// Begin a transaction that will write. SQLite takes its write lock now,
/// because a deferred transaction that reads and then writes can fail with
/// `database is locked` however long the busy timeout is.
fn begin_write(conn: &mut AnyConnection) -> Result<(), DbError> {
    match conn {
        AnyConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
        }
        AnyConnection::Postgresql(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    Ok(())
}

/// [`begin_write`] for the refresh lock, waiting up to [`LOCK_WAIT`] for
/// another holder: SQLite's busy timeout covers `BEGIN IMMEDIATE`,
/// PostgreSQL's `lock_timeout` the `FOR UPDATE` that follows.
fn begin_locked(conn: &mut AnyConnection) -> Result<(), DbError> {
    let wait_ms = LOCK_WAIT.as_millis();
    if let AnyConnection::Sqlite(c) = conn {
        c.batch_execute(&format!("PRAGMA busy_timeout = {wait_ms}"))?;
    }
    begin_write(conn)?;
    if let AnyConnection::Postgresql(c) = conn {
        c.batch_execute(&format!("SET LOCAL lock_timeout = {wait_ms}"))?;
    }
    Ok(())
}

/// Commit or roll back the transaction [`begin_write`] opened.
fn end(conn: &mut AnyConnection, commit: bool) -> Result<(), DbError> {
    match (conn, commit) {
        (AnyConnection::Sqlite(c), true) => AnsiTransactionManager::commit_transaction(c)?,
        (AnyConnection::Sqlite(c), false) => AnsiTransactionManager::rollback_transaction(c)?,
        (AnyConnection::Postgresql(c), true) => AnsiTransactionManager::commit_transaction(c)?,
        (AnyConnection::Postgresql(c), false) => AnsiTransactionManager::rollback_transaction(c)?,
    }
    Ok(())
}
