//! RFC 8628 device authorization, the token poll, and the refresh grant.
//!
//! The poll ignores the HTTP status (servers answer `authorization_pending`
//! with 200 or 400) and reads `access_token` / `error` from the body, flat
//! or under `data`. The refresh grant, by contrast, must answer 200.

use std::fmt;

use url::Url;

use super::error::{DeviceError, Step};
use super::wire::{encode_sorted, unwrap_data, DeviceClient, Fields, Reply};
use crate::telemetry::Masked;

/// The grant type of a device-code poll.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8628's poll interval when the server names none.
pub const DEFAULT_INTERVAL_SECONDS: u64 = 5;

/// A device code and what the user needs to approve it.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceCode {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    /// As the server sent it (the CLI rewrites it for display).
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    pub interval: u64,
}

impl fmt::Debug for DeviceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCode")
            .field("device_code", &Masked(&self.device_code))
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish()
    }
}

/// Tokens from a successful poll or refresh.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Seconds; `None` when the server gave no lifetime.
    pub expires_in: Option<u64>,
    /// `refresh_token_expires_in`, when the server sent it (Feishu does).
    pub refresh_expires_in: Option<u64>,
    /// The granted scope, when the server sent it.
    pub scope: Option<String>,
}

impl TokenGrant {
    /// Absolute expiry in unix ms, 0 when the server gave no lifetime.
    pub fn expires_at_ms(&self, now_ms: i64) -> i64 {
        match self.expires_in {
            Some(s) if s > 0 => now_ms.saturating_add(
                i64::try_from(s)
                    .unwrap_or(i64::MAX / 1000)
                    .saturating_mul(1000),
            ),
            _ => 0,
        }
    }
}

impl fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGrant")
            .field("access_token", &Masked(&self.access_token))
            .field("refresh_token", &self.refresh_token.as_deref().map(Masked))
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// What one poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    Granted(TokenGrant),
    Pending,
    SlowDown,
    Expired,
}

impl PollOutcome {
    /// The `status` the CLI prints for this outcome.
    pub fn status(&self) -> &'static str {
        match self {
            PollOutcome::Granted(_) => "ok",
            PollOutcome::Pending => "authorization_pending",
            PollOutcome::SlowDown => "slow_down",
            PollOutcome::Expired => "expired_token",
        }
    }
}

impl DeviceClient {
    /// Ask `endpoint` for a device code for `client_id` (no scope, no secret).
    pub async fn request_device_code(
        &self,
        endpoint: &Url,
        client_id: &str,
    ) -> Result<DeviceCode, DeviceError> {
        let reply = self
            .send(
                Step::DeviceAuthorization,
                form_post(self, endpoint, &[("client_id", client_id)]),
            )
            .await?;
        parse_device_code(&reply)
    }

    /// Poll `token_endpoint` once for `device_code`.
    pub async fn poll_token(
        &self,
        token_endpoint: &Url,
        device_code: &str,
        client_id: &str,
    ) -> Result<PollOutcome, DeviceError> {
        let form = [
            ("client_id", client_id),
            ("device_code", device_code),
            ("grant_type", DEVICE_CODE_GRANT),
        ];
        let reply = self
            .send(Step::TokenPoll, form_post(self, token_endpoint, &form))
            .await?;
        parse_poll(&reply)
    }

    /// Spend `refresh_token`. A new refresh token is returned only when the
    /// server rotated it; the caller keeps the old one otherwise.
    pub async fn refresh(
        &self,
        token_endpoint: &Url,
        refresh_token: &str,
        client_id: &str,
    ) -> Result<TokenGrant, DeviceError> {
        let form = [
            ("client_id", client_id),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        let reply = self
            .send(Step::Refresh, form_post(self, token_endpoint, &form))
            .await?;
        parse_refresh(&reply)
    }
}

fn form_post(client: &DeviceClient, url: &Url, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
    client
        .http
        .post(url.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(encode_sorted(form))
}

/// The device authorization answer, status ignored (as the reference
/// client does): only a usable `device_code` counts.
fn parse_device_code(reply: &Reply) -> Result<DeviceCode, DeviceError> {
    parse_device_code_with(reply, None)
}

/// [`parse_device_code`] for servers whose `expires_in` is optional:
/// `default_lifetime` replaces a missing one (`None`: it is required).
pub(crate) fn parse_device_code_with(
    reply: &Reply,
    default_lifetime: Option<u64>,
) -> Result<DeviceCode, DeviceError> {
    let step = Step::DeviceAuthorization;
    let doc = reply.json_object(step)?;
    let f = Fields {
        step,
        map: unwrap_data(&doc, &["device_code"]),
    };
    let Some(device_code) = f.opt_str("device_code")? else {
        let why = server_error(&doc)
            .unwrap_or_else(|| format!("the answer (HTTP {}) has no device_code", reply.status));
        return Err(DeviceError::Malformed { step, detail: why });
    };
    let verification_uri = f.secure_url_str("verification_uri")?;
    let verification_uri_complete = match f.opt_str("verification_uri_complete")? {
        Some(_) => Some(f.secure_url_str("verification_uri_complete")?.to_owned()),
        None => None,
    };
    let expires_in = f
        .opt_u64("expires_in")?
        .filter(|s| *s > 0)
        .or(default_lifetime)
        .ok_or_else(|| DeviceError::Malformed {
            step,
            detail: "the answer has no positive `expires_in`".into(),
        })?;
    Ok(DeviceCode {
        device_code: device_code.to_owned(),
        user_code: f.req_str("user_code")?.to_owned(),
        verification_uri: verification_uri.to_owned(),
        verification_uri_complete,
        expires_in,
        interval: f
            .opt_u64("interval")?
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_INTERVAL_SECONDS),
    })
}

pub(crate) fn parse_poll(reply: &Reply) -> Result<PollOutcome, DeviceError> {
    let doc = reply.json_object(Step::TokenPoll)?;
    let map = unwrap_data(&doc, &["access_token", "error"]);
    let f = Fields {
        step: Step::TokenPoll,
        map,
    };
    if f.opt_str("access_token")?.is_some() {
        return grant(&f).map(PollOutcome::Granted);
    }
    match f.opt_str("error")? {
        Some("authorization_pending") => Ok(PollOutcome::Pending),
        Some("slow_down") => Ok(PollOutcome::SlowDown),
        Some("expired_token") => Ok(PollOutcome::Expired),
        Some(other) => Err(DeviceError::AuthorizationFailed(other.to_owned())),
        None => Err(DeviceError::Malformed {
            step: Step::TokenPoll,
            detail: format!(
                "the answer (HTTP {}) has neither access_token nor error",
                reply.status
            ),
        }),
    }
}

fn parse_refresh(reply: &Reply) -> Result<TokenGrant, DeviceError> {
    let step = Step::Refresh;
    if reply.status != 200 {
        if reply.status >= 500 || reply.status == 429 {
            return Err(DeviceError::HttpStatus {
                step,
                status: reply.status,
            });
        }
        // The error code is informative only; a non-JSON refusal is still a refusal.
        let error = reply
            .json_object(step)
            .ok()
            .and_then(|doc| server_error(&doc));
        return Err(DeviceError::RefreshRejected {
            status: reply.status,
            error,
        });
    }
    let doc = reply.json_object(step)?;
    grant(&Fields {
        step,
        map: unwrap_data(&doc, &["access_token"]),
    })
}

fn grant(f: &Fields<'_>) -> Result<TokenGrant, DeviceError> {
    Ok(TokenGrant {
        access_token: f.req_str("access_token")?.to_owned(),
        refresh_token: f.opt_str("refresh_token")?.map(str::to_owned),
        expires_in: f.opt_u64("expires_in")?,
        refresh_expires_in: f.opt_u64("refresh_token_expires_in")?,
        scope: f.opt_str("scope")?.map(str::to_owned),
    })
}

/// `error` (and `error_description`) of an RFC 6749 error answer, flat or
/// under `data`, when they are strings.
fn server_error(doc: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let map = unwrap_data(doc, &["error"]);
    let error = map.get("error")?.as_str()?;
    Some(
        match map.get("error_description").and_then(|d| d.as_str()) {
            Some(d) if !d.is_empty() => format!("{error}: {d}"),
            _ => error.to_owned(),
        },
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn reply(status: u16, v: Value) -> Reply {
        Reply {
            status,
            content_type: "application/json".into(),
            body: serde_json::to_vec(&v).unwrap(),
        }
    }

    fn code_doc() -> Value {
        json!({
            "device_code": "dc_abc", "user_code": "WXYZ-1234",
            "verification_uri": "https://h.example/verify",
            "verification_uri_complete": "https://h.example/verify?user_code=WXYZ-1234",
            "expires_in": 600, "interval": 5
        })
    }

    #[test]
    fn device_codes_are_read_flat_or_wrapped() {
        let flat = parse_device_code(&reply(200, code_doc())).unwrap();
        assert_eq!(flat.device_code, "dc_abc");
        let wrapped = parse_device_code(&reply(
            200,
            json!({"code": 0, "msg": "ok", "data": code_doc()}),
        ))
        .unwrap();
        assert_eq!(flat, wrapped);
        let mut no_interval = code_doc();
        no_interval.as_object_mut().unwrap().remove("interval");
        assert_eq!(
            parse_device_code(&reply(200, no_interval))
                .unwrap()
                .interval,
            5
        );
    }

    #[test]
    fn unusable_device_codes_are_refused() {
        for (key, value) in [
            ("device_code", Value::Null),
            ("device_code", json!(7)),
            ("user_code", Value::Null),
            ("verification_uri", json!("http://h.example/verify")),
            ("expires_in", json!("600")),
            ("expires_in", Value::Null),
            ("interval", json!(-5)),
        ] {
            let mut d = code_doc();
            d[key] = value;
            let e = parse_device_code(&reply(200, d)).unwrap_err();
            assert_eq!(e.code(), "DEVICE_CODE_FAILED", "{key}: {e}");
        }
        let e = parse_device_code(&reply(400, json!({"error": "invalid_client"}))).unwrap_err();
        assert!(e.to_string().contains("invalid_client"), "{e}");
    }

    #[test]
    fn polls_ignore_the_status_and_read_the_body() {
        assert_eq!(
            parse_poll(&reply(400, json!({"error": "authorization_pending"}))).unwrap(),
            PollOutcome::Pending
        );
        assert_eq!(
            parse_poll(&reply(200, json!({"data": {"error": "slow_down"}}))).unwrap(),
            PollOutcome::SlowDown
        );
        assert_eq!(
            parse_poll(&reply(400, json!({"error": "expired_token"}))).unwrap(),
            PollOutcome::Expired
        );
        let ok = parse_poll(&reply(200, json!({"code": 0, "data": {"access_token": "a", "refresh_token": "r", "expires_in": 7200}}))).unwrap();
        assert_eq!(
            ok,
            PollOutcome::Granted(TokenGrant {
                access_token: "a".into(),
                refresh_token: Some("r".into()),
                expires_in: Some(7200),
                refresh_expires_in: None,
                scope: None,
            })
        );
        let denied = parse_poll(&reply(400, json!({"error": "access_denied"}))).unwrap_err();
        assert_eq!(
            denied.to_string(),
            "Device code authorization failed: access_denied"
        );
        assert_eq!(
            parse_poll(&reply(200, json!({}))).unwrap_err().code(),
            "DEVICE_CODE_FAILED"
        );
        assert_eq!(
            parse_poll(&reply(200, json!({"access_token": "a", "expires_in": "x"})))
                .unwrap_err()
                .code(),
            "DEVICE_CODE_FAILED"
        );
    }

    #[test]
    fn refreshes_need_200_and_keep_the_rotation_optional() {
        let g =
            parse_refresh(&reply(200, json!({"access_token": "a2", "expires_in": 60}))).unwrap();
        assert_eq!(g.refresh_token, None);
        let e = parse_refresh(&reply(400, json!({"error": "invalid_grant"}))).unwrap_err();
        assert!(
            matches!(e, DeviceError::RefreshRejected { status: 400, ref error } if error.as_deref() == Some("invalid_grant"))
        );
        let e = parse_refresh(&reply(503, json!({}))).unwrap_err();
        assert!(matches!(e, DeviceError::HttpStatus { status: 503, .. }));
        let e = parse_refresh(&reply(200, json!({"refresh_token": "r"}))).unwrap_err();
        assert_eq!(e.code(), "TOKEN_REFRESH_FAILED");
    }

    #[test]
    fn expiry_is_absolute_and_zero_without_a_lifetime() {
        let g = TokenGrant {
            access_token: "a".into(),
            refresh_token: None,
            expires_in: Some(60),
            refresh_expires_in: None,
            scope: None,
        };
        assert_eq!(g.expires_at_ms(1_000), 61_000);
        let g = TokenGrant {
            expires_in: None,
            ..g
        };
        assert_eq!(g.expires_at_ms(1_000), 0);
    }
}
