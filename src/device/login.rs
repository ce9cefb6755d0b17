//! `auth login --device-code`: the init phase (discover, register, request
//! a device code) and the poll phase, once or blocking until a verdict.

use std::time::Duration;

use tracing::{debug, info};

use super::clock::Clock;
use super::device_auth::{DeviceCode, PollOutcome, TokenGrant, DEFAULT_INTERVAL_SECONDS};
use super::error::DeviceError;
use super::host::DeviceHost;
use super::store::StoredToken;
use super::wire::DeviceClient;

/// The shortest interval the blocking poll waits between polls.
pub const MIN_INTERVAL: Duration = Duration::from_secs(DEFAULT_INTERVAL_SECONDS);
/// What RFC 8628 adds to the interval after each `slow_down`.
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// Discover `host`, register a client and request a device code.
/// Returns the code and the `client_id` the poll phase needs.
pub async fn init(
    client: &DeviceClient,
    host: &DeviceHost,
) -> Result<(DeviceCode, String), DeviceError> {
    let metadata = client.discover(host).await?;
    let device_endpoint = metadata.device_endpoint()?;
    let client_id = client.register(&metadata.registration_endpoint).await?;
    let code = client
        .request_device_code(device_endpoint, &client_id)
        .await?;
    // The user code lets whoever reads it approve the login in the user's
    // place while it is valid: only debug logs carry it.
    info!(%host, "device code issued");
    debug!(%host, user_code = %code.user_code, "device code issued");
    Ok((code, client_id))
}

/// One poll: re-discover the token endpoint, then ask it.
pub async fn poll_once(
    client: &DeviceClient,
    host: &DeviceHost,
    device_code: &str,
    client_id: &str,
) -> Result<PollOutcome, DeviceError> {
    let metadata = client.discover(host).await?;
    client
        .poll_token(&metadata.token_endpoint, device_code, client_id)
        .await
}

/// Blocking poll parameters.
#[derive(Debug, Clone)]
pub struct PollPlan {
    pub interval: Duration,
    pub expires_in: Duration,
}

/// Poll until a grant, sleeping one interval before each poll (including
/// the first: the user has only just been shown the code), adding
/// [`SLOW_DOWN_STEP`] after every `slow_down`, and giving up with
/// `DEVICE_CODE_EXPIRED` at the deadline or on `expired_token`.
pub async fn poll_until_granted(
    client: &DeviceClient,
    clock: &dyn Clock,
    host: &DeviceHost,
    device_code: &str,
    client_id: &str,
    plan: &PollPlan,
) -> Result<TokenGrant, DeviceError> {
    let mut interval = plan.interval.max(MIN_INTERVAL);
    let expires_ms = i64::try_from(plan.expires_in.as_millis()).unwrap_or(i64::MAX);
    let deadline = clock.now_ms().saturating_add(expires_ms);
    while clock.now_ms() < deadline {
        clock.sleep(interval).await;
        match poll_once(client, host, device_code, client_id).await? {
            PollOutcome::Granted(grant) => return Ok(grant),
            PollOutcome::Pending => {}
            PollOutcome::SlowDown => interval += SLOW_DOWN_STEP,
            PollOutcome::Expired => return Err(DeviceError::Expired),
        }
    }
    Err(DeviceError::Expired)
}

/// The row to store for a fresh grant.
pub fn stored_token(
    grant: &TokenGrant,
    client_id: &str,
    host: &DeviceHost,
    now_ms: i64,
) -> StoredToken {
    StoredToken {
        access_token: grant.access_token.clone(),
        refresh_token: grant.refresh_token.clone(),
        expires_at_ms: grant.expires_at_ms(now_ms),
        client_id: client_id.to_owned(),
        host: host.as_str().to_owned(),
    }
}
