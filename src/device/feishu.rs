//! The client side of Feishu's own device flow (`lark-open-platform.md`
//! §8.4), the third way a Feishu user can authorize the app: the accounts
//! host issues a user code for the app's own credentials, and polling its
//! token endpoint yields a `user_access_token`.
//!
//! Unlike the Meegle flow there is no discovery or registration: the app
//! authenticates with HTTP Basic `app_id:app_secret` when asking for the
//! code and with `client_secret` in the form when polling. The parsing and
//! validation are shared with [`super::device_auth`].

use std::fmt;
use std::time::Duration;

use base64::Engine;

use super::device_auth::{
    parse_device_code_with, parse_poll, DeviceCode, PollOutcome, DEVICE_CODE_GRANT,
};
use super::error::{DeviceError, Step};
use super::wire::{encode_sorted, DeviceClient};
use crate::domain::scopes::OFFLINE_ACCESS;
use crate::domain::BaseUrl;

pub const DEVICE_AUTHORIZATION_PATH: &str = "/oauth/v1/device_authorization";
pub const TOKEN_PATH: &str = "/oauth/v3/token";
/// `expires_in` of a device code when the host names none.
pub const DEFAULT_CODE_LIFETIME_SECONDS: u64 = 240;
/// `slow_down` adds 5 s to the interval, up to this ceiling.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Access-token lifetime assumed when the answer has none.
pub const DEFAULT_EXPIRES_IN_SECONDS: u64 = 7200;
/// Refresh-token lifetime assumed when the answer has none.
pub const DEFAULT_REFRESH_EXPIRES_IN_SECONDS: u64 = 604_800;

/// Device-flow client for one app on one accounts host.
#[derive(Clone)]
pub struct FeishuDeviceClient {
    client: DeviceClient,
    accounts: BaseUrl,
    app_id: String,
    app_secret: String,
}

impl fmt::Debug for FeishuDeviceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeishuDeviceClient")
            .field("accounts", &self.accounts)
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

/// Tokens of a completed Feishu device login.
#[derive(Clone, PartialEq, Eq)]
pub struct FeishuGrant {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: u64,
    /// Equals `expires_in` when no refresh token was issued.
    pub refresh_token_expires_in: u64,
    pub scope: Option<String>,
}

impl fmt::Debug for FeishuGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeishuGrant")
            .field(
                "access_token",
                &crate::telemetry::Masked(&self.access_token),
            )
            .field("expires_in", &self.expires_in)
            .field("refresh_token_expires_in", &self.refresh_token_expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// What one Feishu poll found. `access_denied` arrives as an error
/// ([`DeviceError::AuthorizationFailed`]); `invalid_grant` counts as expiry,
/// as the reference client treats it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeishuPoll {
    Granted(FeishuGrant),
    Pending,
    SlowDown,
    Expired,
}

impl FeishuDeviceClient {
    pub fn new(client: DeviceClient, accounts: BaseUrl, app_id: &str, app_secret: &str) -> Self {
        Self {
            client,
            accounts,
            app_id: app_id.to_owned(),
            app_secret: app_secret.to_owned(),
        }
    }

    /// Where device codes are asked for, for error messages.
    pub fn device_authorization_url(&self) -> String {
        self.accounts.join(DEVICE_AUTHORIZATION_PATH)
    }

    /// Ask for a device code covering `scope` (plus `offline_access`).
    pub async fn authorize(&self, scope: &str) -> Result<DeviceCode, DeviceError> {
        let scope = with_offline_access(scope);
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.app_id, self.app_secret));
        let request = self
            .client
            .http
            .post(self.accounts.join(DEVICE_AUTHORIZATION_PATH))
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode_sorted(&[
                ("client_id", &self.app_id),
                ("scope", &scope),
            ]));
        let reply = self.client.send(Step::DeviceAuthorization, request).await?;
        let mut code = parse_device_code_with(&reply, Some(DEFAULT_CODE_LIFETIME_SECONDS))?;
        if code.verification_uri_complete.is_none() {
            code.verification_uri_complete = Some(code.verification_uri.clone());
        }
        Ok(code)
    }

    /// Poll once for `device_code`.
    pub async fn poll(&self, device_code: &str) -> Result<FeishuPoll, DeviceError> {
        let form = [
            ("client_id", self.app_id.as_str()),
            ("client_secret", self.app_secret.as_str()),
            ("device_code", device_code),
            ("grant_type", DEVICE_CODE_GRANT),
        ];
        let request = self
            .client
            .http
            .post(self.accounts.join(TOKEN_PATH))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode_sorted(&form));
        let reply = self.client.send(Step::TokenPoll, request).await?;
        Ok(match parse_poll(&reply) {
            Ok(PollOutcome::Granted(grant)) => {
                let expires_in = grant.expires_in.unwrap_or(DEFAULT_EXPIRES_IN_SECONDS);
                let refresh_token_expires_in = match &grant.refresh_token {
                    Some(_) => grant
                        .refresh_expires_in
                        .unwrap_or(DEFAULT_REFRESH_EXPIRES_IN_SECONDS),
                    None => expires_in,
                };
                FeishuPoll::Granted(FeishuGrant {
                    access_token: grant.access_token,
                    refresh_token: grant.refresh_token,
                    expires_in,
                    refresh_token_expires_in,
                    scope: grant.scope,
                })
            }
            Ok(PollOutcome::Pending) => FeishuPoll::Pending,
            Ok(PollOutcome::SlowDown) => FeishuPoll::SlowDown,
            Ok(PollOutcome::Expired) => FeishuPoll::Expired,
            Err(DeviceError::AuthorizationFailed(e)) if e == "invalid_grant" => FeishuPoll::Expired,
            Err(e) => return Err(e),
        })
    }
}

/// `scope` with `offline_access` appended unless it is there already.
pub fn with_offline_access(scope: &str) -> String {
    let scope = scope.trim();
    if scope.split_whitespace().any(|s| s == OFFLINE_ACCESS) {
        scope.to_owned()
    } else if scope.is_empty() {
        OFFLINE_ACCESS.to_owned()
    } else {
        format!("{scope} {OFFLINE_ACCESS}")
    }
}

/// The interval after `poll`: `slow_down` adds 5 s, capped at
/// [`MAX_INTERVAL`]; everything else keeps it.
pub fn next_interval(current: Duration, poll: &FeishuPoll) -> Duration {
    match poll {
        FeishuPoll::SlowDown => (current + Duration::from_secs(5)).min(MAX_INTERVAL),
        _ => current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_access_is_appended_once() {
        assert_eq!(with_offline_access(""), "offline_access");
        assert_eq!(
            with_offline_access("contact:user"),
            "contact:user offline_access"
        );
        assert_eq!(with_offline_access("offline_access a"), "offline_access a");
    }

    #[test]
    fn slow_down_backs_off_up_to_a_minute() {
        let s = Duration::from_secs;
        assert_eq!(next_interval(s(5), &FeishuPoll::SlowDown), s(10));
        assert_eq!(next_interval(s(58), &FeishuPoll::SlowDown), s(60));
        assert_eq!(next_interval(s(5), &FeishuPoll::Pending), s(5));
    }
}
