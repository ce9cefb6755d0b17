//! `auth status`: is there a token, and does the server still accept it?
//!
//! The stored token is refreshed first when its expiry has passed, and once
//! more after a 401, under the store's refresh lock so that two processes
//! never spend the same refresh token. A token from `MEEGLE_USER_ACCESS_TOKEN`
//! is checked as is. A stored token is only ever sent to the host that
//! issued it: with `MEEGLE_HOST` naming another host, there is no local
//! token for that host.

use tracing::info;

use super::clock::Clock;
use super::env::EnvOverrides;
use super::error::DeviceError;
use super::host::DeviceHost;
use super::mcp::McpCheck;
use super::output::{
    StatusReport, TokenSource, REASON_NO_HOST, REASON_NO_LOCAL_TOKEN, REASON_TOKEN_REJECTED,
};
use super::store::{DeviceStore, StoredToken};
use super::wire::DeviceClient;
use crate::telemetry::Masked;

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
    lock.commit(&fresh)?;
    info!(%profile, token = %Masked(&fresh.access_token), "device token refreshed");
    Ok(Some(fresh))
}
