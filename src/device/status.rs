//! `auth status`: is there a token, and does the server still accept it?
//!
//! The stored token is refreshed first when its expiry has passed, and once
//! more after a 401, under the store's refresh lock so that two processes
//! never spend the same refresh token. A token from `MEEGLE_USER_ACCESS_TOKEN`
//! is checked as is. A stored token is only ever sent to the host that
//! issued it: with `MEEGLE_HOST` naming another host, there is no local
//! token for that host.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::clock::Clock;
use super::env::EnvOverrides;
use super::error::DeviceError;
use super::host::DeviceHost;
use super::mcp::McpCheck;
use super::output::{
    StatusReport, TokenSource, REASON_NO_HOST, REASON_NO_LOCAL_TOKEN, REASON_TOKEN_REJECTED,
};
use super::store::{DeviceStore, StoreError, StoredToken};
use super::wire::DeviceClient;
use crate::supervise::backoff::Backoff;
use crate::telemetry::Masked;

/// How long a refreshed grant whose save failed is kept in memory and
/// saved again. The server has spent the old refresh token by then, so
/// the grant is the only way to stay logged in; a command line cannot wait
/// as long as the service does, but a minute outlasts a restarting
/// database or a lock another process holds.
pub const SAVE_PATIENCE: Duration = Duration::from_secs(60);
/// Waits between those saves.
const SAVE_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(200),
    max: Duration::from_secs(5),
};

/// Work out the status of the current profile. Errors are store failures
/// and malformed overrides; every answer of the server is a report.
pub async fn status(
    client: &DeviceClient,
    store: &dyn DeviceStore,
    env: &EnvOverrides,
    clock: &dyn Clock,
) -> Result<StatusReport, DeviceError> {
    let profile = store.current_profile()?;
    let env_host = env.host.as_deref().map(DeviceHost::parse).transpose()?;
    let saved_host = match store.host(&profile)? {
        Some(h) => Some(DeviceHost::parse(&h)?),
        None => None,
    };
    let host = env_host.clone().or(saved_host);

    if let Some(token) = &env.user_access_token {
        let Some(host) = host else {
            return Ok(StatusReport::NotAuthenticated {
                host: None,
                reason: REASON_NO_HOST.into(),
            });
        };
        let verdict = client.check_mcp(&host, token).await;
        return Ok(report(verdict, host, None, TokenSource::Env));
    }

    let stored = store
        .load_token(&profile)?
        .filter(|t| env_host.as_ref().is_none_or(|h| h.as_str() == t.host));
    let Some(mut token) = stored else {
        return Ok(StatusReport::NotAuthenticated {
            host: host.map(|h| h.as_str().to_owned()),
            reason: REASON_NO_LOCAL_TOKEN.into(),
        });
    };
    let host = DeviceHost::parse(&token.host)?;

    if token.is_expired(clock.now_ms()) {
        match refresh_stored(client, store, &profile, &token, clock).await {
            Ok(Some(fresh)) => token = fresh,
            // Not refreshable: let the server judge the token we have.
            Ok(None) => {}
            Err(e) => return refresh_failure(e, host),
        }
    }
    let mut verdict = client.check_mcp(&host, &token.access_token).await;
    if verdict == McpCheck::Rejected {
        match refresh_stored(client, store, &profile, &token, clock).await {
            Ok(Some(fresh)) => {
                token = fresh;
                verdict = client.check_mcp(&host, &token.access_token).await;
            }
            Ok(None) => {}
            Err(e) => return refresh_failure(e, host),
        }
    }
    let minutes = minutes_left(&token, clock.now_ms());
    Ok(report(verdict, host, minutes, TokenSource::TokenStore))
}

fn report(
    verdict: McpCheck,
    host: DeviceHost,
    expires_in_minutes: Option<i64>,
    source: TokenSource,
) -> StatusReport {
    let host = host.as_str().to_owned();
    match verdict {
        McpCheck::Accepted => StatusReport::Authenticated {
            host,
            expires_in_minutes,
            source,
        },
        McpCheck::Rejected => StatusReport::NotAuthenticated {
            host: Some(host),
            reason: REASON_TOKEN_REJECTED.into(),
        },
        McpCheck::Unreachable(detail) => StatusReport::Unreachable { host, detail },
    }
}

/// A refused refresh means "log in again"; anything else but a store
/// failure means the server could not be asked properly.
fn refresh_failure(error: DeviceError, host: DeviceHost) -> Result<StatusReport, DeviceError> {
    match error {
        DeviceError::Store(_) => Err(error),
        DeviceError::RefreshRejected { .. } => Ok(StatusReport::NotAuthenticated {
            host: Some(host.as_str().to_owned()),
            reason: REASON_TOKEN_REJECTED.into(),
        }),
        other => Ok(StatusReport::Unreachable {
            host: host.as_str().to_owned(),
            detail: other.to_string(),
        }),
    }
}

/// Whole minutes until expiry, never negative; `None` without an expiry.
fn minutes_left(token: &StoredToken, now_ms: i64) -> Option<i64> {
    (token.expires_at_ms > 0).then(|| (token.expires_at_ms.saturating_sub(now_ms) / 60_000).max(0))
}

/// Replace `spent` by a refreshed token, under the refresh lock.
///
/// Under the lock the row is read again: if it no longer holds `spent`,
/// another process refreshed (or logged in) meanwhile and its token is
/// returned without spending anything. `Ok(None)` means there is nothing to
/// refresh with (the token is gone, or it has no refresh token). The
/// server's new refresh token replaces the old one only if it sent one.
pub async fn refresh_stored(
    client: &DeviceClient,
    store: &dyn DeviceStore,
    profile: &str,
    spent: &StoredToken,
    clock: &dyn Clock,
) -> Result<Option<StoredToken>, DeviceError> {
    let lock = store.lock_token(profile)?;
    let Some(current) = lock.token().cloned() else {
        return Ok(None);
    };
    if current.access_token != spent.access_token {
        return Ok(Some(current));
    }
    let Some(refresh_token) = current.refresh_token.clone() else {
        return Ok(None);
    };
    let host = DeviceHost::parse(&current.host)?;
    let metadata = client.discover(&host).await?;
    let grant = client
        .refresh(&metadata.token_endpoint, &refresh_token, &current.client_id)
        .await?;
    let fresh = StoredToken {
        access_token: grant.access_token.clone(),
        refresh_token: grant.refresh_token.clone().or(Some(refresh_token)),
        expires_at_ms: grant.expires_at_ms(clock.now_ms()),
        client_id: current.client_id.clone(),
        host: current.host.clone(),
    };
    if let Err(first) = lock.commit(&fresh) {
        save_until_stored(store, profile, &fresh, first, SAVE_PATIENCE).await?;
    }
    info!(%profile, token = %Masked(&fresh.access_token), "device token refreshed");
    Ok(Some(fresh))
}

/// Save `fresh` again after its first save failed with `first`, for up to
/// `patience`; the last error if it never took.
async fn save_until_stored(
    store: &dyn DeviceStore,
    profile: &str,
    fresh: &StoredToken,
    first: StoreError,
    patience: Duration,
) -> Result<(), StoreError> {
    warn!(%profile, error = %first, "saving the refreshed device token failed; keeping it and retrying");
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        tokio::time::sleep(SAVE_BACKOFF.delay(attempt)).await;
        match store.save_token(profile, fresh) {
            Ok(()) => {
                info!(%profile, attempts = attempt + 1, "refreshed device token saved after retrying");
                return Ok(());
            }
            Err(e) if started.elapsed() < patience => {
                warn!(%profile, error = %e, attempt, "saving the refreshed device token failed again");
            }
            Err(e) => {
                return Err(StoreError::with_source(
                    format!(
                        "the refreshed token of `{profile}` could not be saved for {patience:?} \
                         (the old refresh token is spent): log in again"
                    ),
                    e,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::device::memory_store::MemoryStore;
    use crate::device::store::TokenLock;

    /// A memory store whose saves fail a set number of times.
    struct Flaky {
        inner: MemoryStore,
        failures: AtomicUsize,
    }

    impl DeviceStore for Flaky {
        fn current_profile(&self) -> Result<String, StoreError> {
            self.inner.current_profile()
        }
        fn host(&self, profile: &str) -> Result<Option<String>, StoreError> {
            self.inner.host(profile)
        }
        fn set_host(&self, profile: &str, host: &str) -> Result<(), StoreError> {
            self.inner.set_host(profile, host)
        }
        fn load_token(&self, profile: &str) -> Result<Option<StoredToken>, StoreError> {
            self.inner.load_token(profile)
        }
        fn save_token(&self, profile: &str, token: &StoredToken) -> Result<(), StoreError> {
            let left = self.failures.load(Ordering::SeqCst);
            if left > 0 {
                self.failures.store(left - 1, Ordering::SeqCst);
                return Err(StoreError::msg("database is locked"));
            }
            self.inner.save_token(profile, token)
        }
        fn delete_token(&self, profile: &str) -> Result<bool, StoreError> {
            self.inner.delete_token(profile)
        }
        fn lock_token(&self, profile: &str) -> Result<Box<dyn TokenLock + '_>, StoreError> {
            self.inner.lock_token(profile)
        }
    }

    fn grant() -> StoredToken {
        StoredToken {
            access_token: "u-fresh-access".into(),
            refresh_token: Some("fresh-refresh".into()),
            expires_at_ms: 1,
            client_id: "cid".into(),
            host: "project.feishu.cn".into(),
        }
    }

    #[actix_rt::test]
    async fn a_grant_whose_save_fails_is_kept_and_saved_once_the_store_takes_it() {
        let store = Flaky {
            inner: MemoryStore::default(),
            failures: AtomicUsize::new(3),
        };
        let first = StoreError::msg("commit failed");
        save_until_stored(&store, "default", &grant(), first, SAVE_PATIENCE)
            .await
            .expect("saved after the failures");
        assert_eq!(store.load_token("default").unwrap(), Some(grant()));
    }

    #[actix_rt::test]
    async fn a_store_that_never_recovers_is_a_clear_error_after_the_patience() {
        let store = Flaky {
            inner: MemoryStore::default(),
            failures: AtomicUsize::new(usize::MAX),
        };
        let first = StoreError::msg("commit failed");
        let err = save_until_stored(&store, "default", &grant(), first, Duration::ZERO)
            .await
            .expect_err("never saved");
        assert!(err.to_string().contains("log in again"), "{err}");
        assert_eq!(store.load_token("default").unwrap(), None);
    }
}
