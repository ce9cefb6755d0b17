//! What the device-code login persists, behind a trait so the flow does not
//! depend on diesel: the production store keeps one `device_tokens` row per
//! profile (tokens encrypted by the vault); tests use [`MemoryStore`].
//!
//! The methods are blocking. The CLI calls them directly from its async code
//! because it runs a single command and shares its runtime with nothing else.
//!
//! [`MemoryStore`]: super::memory_store::MemoryStore

use std::fmt;

use crate::telemetry::Masked;

/// A device-code token as stored for one profile.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub access_token: String,
    /// `None` when the server issued no refresh token.
    pub refresh_token: Option<String>,
    /// Unix milliseconds; 0 means the server gave no lifetime, so the token
    /// is only refreshed after the server rejects it.
    pub expires_at_ms: i64,
    /// The public client registered at `--phase init`; refreshes need it.
    pub client_id: String,
    /// Normalised `host[:port]` that issued the token.
    pub host: String,
}

impl StoredToken {
    /// Has the stored lifetime run out at `now_ms`?
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms > 0 && now_ms > self.expires_at_ms
    }
}

impl fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredToken")
            .field("access_token", &Masked(&self.access_token))
            .field("refresh_token", &self.refresh_token.as_deref().map(Masked))
            .field("expires_at_ms", &self.expires_at_ms)
            .field("client_id", &self.client_id)
            .field("host", &self.host)
            .finish()
    }
}

/// A storage failure (database, vault). The store's own error is kept as the
/// source so logs show the whole chain.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// A failure with only a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// A failure caused by another error.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// Persistence for the device-code login.
///
/// A profile may exist with a host but no token (after `--phase init`, or
/// after `logout`, which removes only the token).
pub trait DeviceStore: Send + Sync {
    /// The profile the CLI works on.
    fn current_profile(&self) -> Result<String, StoreError>;

    /// The host saved for `profile`, if any.
    fn host(&self, profile: &str) -> Result<Option<String>, StoreError>;

    /// Save `host` for `profile`, creating the profile if needed and keeping
    /// any stored token.
    fn set_host(&self, profile: &str, host: &str) -> Result<(), StoreError>;

    /// The token stored for `profile`, if any.
    fn load_token(&self, profile: &str) -> Result<Option<StoredToken>, StoreError>;

    /// Store `token` for `profile`, replacing any previous one; the
    /// profile's host becomes `token.host`.
    fn save_token(&self, profile: &str, token: &StoredToken) -> Result<(), StoreError>;

    /// Remove the token of `profile`, keeping its host. Returns whether a
    /// token was there.
    fn delete_token(&self, profile: &str) -> Result<bool, StoreError>;

    /// Lock the token row of `profile` for a refresh.
    ///
    /// A refresh token is single-use, so two processes must never spend the
    /// same one. The caller takes this lock, re-reads the token through it,
    /// and only then calls the token endpoint; a second process blocks here
    /// until the first commits, then sees the rotated token and has nothing
    /// to spend. The lock is held across the HTTP exchange, so it must not
    /// be an in-process mutex alone: the database implementation opens a
    /// transaction and locks the row (`SELECT … FOR UPDATE` on PostgreSQL,
    /// `BEGIN IMMEDIATE` on SQLite). Dropping the lock without
    /// [`TokenLock::commit`] releases it and changes nothing.
    fn lock_token(&self, profile: &str) -> Result<Box<dyn TokenLock + '_>, StoreError>;
}

/// A held refresh lock on one profile's token; see [`DeviceStore::lock_token`].
pub trait TokenLock: Send {
    /// The token as stored when the lock was taken.
    fn token(&self) -> Option<&StoredToken>;

    /// Replace the token and release the lock.
    fn commit(self: Box<Self>, token: &StoredToken) -> Result<(), StoreError>;
}
