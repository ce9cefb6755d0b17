//! Bootstrap of a long connection: `POST /callback/ws/endpoint` trades the
//! app credentials for a one-time WebSocket URL, and a refused WebSocket
//! handshake says through its headers whether trying again makes sense.
//!
//! Everything but [`fetch_endpoint`] is pure, so the code handling rules of
//! §1.1 and §1.8 are unit-tested without a server. The URL carries a ticket
//! and an access key, so it never reaches a log line: [`Endpoint`]'s
//! `Debug` shows only the ids.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite;

use super::client_config::ClientConfigUpdate;
use crate::domain::BaseUrl;

/// Path of the bootstrap call on the open platform's domain.
pub const ENDPOINT_PATH: &str = "/callback/ws/endpoint";
/// The Node SDK's request timeout for the bootstrap call.
pub const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(15);

/// Bootstrap `code`: success.
pub const CODE_OK: i64 = 0;
/// Bootstrap `code`: system busy (retried by the Python and Go SDKs).
pub const CODE_SYSTEM_BUSY: i64 = 1;
/// Bootstrap `code`: internal error (retried by every SDK).
pub const CODE_INTERNAL_ERROR: i64 = 1_000_040_343;
/// `handshake-autherrcode`: the app already has the maximum of connections.
pub const AUTH_ERR_CONNECTION_LIMIT: i64 = 1_000_040_350;

/// Bootstrap request body, spelled as the official SDKs spell it.
#[derive(Serialize)]
pub struct EndpointRequest<'a> {
    #[serde(rename = "AppID")]
    pub app_id: &'a str,
    #[serde(rename = "AppSecret")]
    pub app_secret: &'a str,
}

#[derive(Deserialize)]
struct EndpointResponse {
    code: i64,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    data: Option<EndpointData>,
}

#[derive(Deserialize)]
struct EndpointData {
    #[serde(rename = "URL", default)]
    url: Option<String>,
    #[serde(rename = "ClientConfig", default)]
    client_config: Option<ClientConfigUpdate>,
}

/// Where to connect, and with which settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The full `wss://...` URL, ticket included: use once, never log.
    pub url: String,
    /// Connection id, for logs.
    pub device_id: String,
    /// Goes into every ping's `service` field.
    pub service_id: i32,
    pub client_config: ClientConfigUpdate,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("device_id", &self.device_id)
            .field("service_id", &self.service_id)
            .field("client_config", &self.client_config)
            .finish_non_exhaustive()
    }
}

/// Why the bootstrap gave no usable endpoint.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("endpoint request failed: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("endpoint answered HTTP {0}")]
    Status(u16),
    #[error("endpoint answered something that is not its JSON reply: {0}")]
    BadResponse(String),
    #[error("endpoint is busy (code {code}: {msg})")]
    Busy { code: i64, msg: String },
    #[error("endpoint refused the app (code {code}: {msg}); check APP_ID and APP_SECRET")]
    Rejected { code: i64, msg: String },
    #[error("connection URL is unusable: {0}")]
    BadUrl(&'static str),
}

impl EndpointError {
    /// Worth another attempt later. Only an explicit refusal of the app is not.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, EndpointError::Rejected { .. })
    }
}

/// Read the bootstrap reply (HTTP status and body).
pub fn parse_endpoint_response(status: u16, body: &[u8]) -> Result<Endpoint, EndpointError> {
    if status != 200 {
        return Err(EndpointError::Status(status));
    }
    let reply: EndpointResponse =
        serde_json::from_slice(body).map_err(|e| EndpointError::BadResponse(e.to_string()))?;
    let msg = reply.msg.unwrap_or_default();
    match reply.code {
        CODE_OK => {}
        CODE_SYSTEM_BUSY | CODE_INTERNAL_ERROR => {
            return Err(EndpointError::Busy {
                code: reply.code,
                msg,
            })
        }
        code => return Err(EndpointError::Rejected { code, msg }),
    }
    let data = reply
        .data
        .ok_or_else(|| EndpointError::BadResponse("no `data`".into()))?;
    let url = data
        .url
        .filter(|u| !u.is_empty())
        .ok_or_else(|| EndpointError::BadResponse("no `data.URL`".into()))?;
    let (device_id, service_id) = parse_ws_url(&url)?;
    Ok(Endpoint {
        url,
        device_id,
        service_id,
        client_config: data.client_config.unwrap_or_default(),
    })
}

/// `device_id` and `service_id` from the connection URL's query; the Python
/// SDK gives up on a URL without them, and so do we.
pub fn parse_ws_url(url: &str) -> Result<(String, i32), EndpointError> {
    let parsed = url::Url::parse(url).map_err(|_| EndpointError::BadUrl("not a URL"))?;
    if !matches!(parsed.scheme(), "ws" | "wss") {
        return Err(EndpointError::BadUrl("scheme is not ws:// or wss://"));
    }
    let query = |key: &str| {
        parsed
            .query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.is_empty())
    };
    let device_id = query("device_id").ok_or(EndpointError::BadUrl("no device_id"))?;
    let service_id = query("service_id")
        .ok_or(EndpointError::BadUrl("no service_id"))?
        .parse::<i32>()
        .map_err(|_| EndpointError::BadUrl("service_id is not an integer"))?;
    Ok((device_id, service_id))
}

/// Ask the platform for a connection URL. Every (re)connect needs a fresh
/// one, because the ticket in it is single-use.
///
/// The request carries `AppSecret`, so it must never be re-sent to another
/// host: its client follows no redirects, and a 3xx answer is an
/// [`EndpointError::Status`] like any other non-200 (retried later). The
/// client is built per call: reconnects come minutes apart, so a pooled
/// connection would be gone by the next one anyway.
pub async fn fetch_endpoint(
    base: &BaseUrl,
    app_id: &str,
    app_secret: &str,
) -> Result<Endpoint, EndpointError> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let response = http
        .post(base.join(ENDPOINT_PATH))
        .timeout(ENDPOINT_TIMEOUT)
        .header("locale", "zh")
        .json(&EndpointRequest { app_id, app_secret })
        .send()
        .await?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    parse_endpoint_response(status, &body)
}

/// What a refused handshake means for the reconnect loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// 403: the app may not connect; retrying cannot help.
    Forbidden,
    /// 514 with auth error 1000040350: the app already has 50 connections.
    ConnectionLimit,
    /// Anything else is a server-side problem: retry.
    Retryable,
}

/// A non-101 answer to the WebSocket upgrade, read from its
/// `handshake-status`, `handshake-msg` and `handshake-autherrcode` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRefusal {
    /// `handshake-status`, or the HTTP status when that header is missing.
    pub status: u16,
    pub auth_err_code: Option<i64>,
    pub message: Option<String>,
}

impl HandshakeRefusal {
    /// Build from the response status and headers; header names compare
    /// case-insensitively (Go spells them `Handshake-Status`).
    pub fn from_response<'a>(
        http_status: u16,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let mut refusal = Self {
            status: http_status,
            auth_err_code: None,
            message: None,
        };
        for (name, value) in headers {
            let value = value.trim();
            if name.eq_ignore_ascii_case("handshake-status") {
                if let Ok(status) = value.parse() {
                    refusal.status = status;
                }
            } else if name.eq_ignore_ascii_case("handshake-autherrcode") {
                refusal.auth_err_code = value.parse().ok();
            } else if name.eq_ignore_ascii_case("handshake-msg") {
                refusal.message = Some(value.to_owned());
            }
        }
        refusal
    }

    /// The refusal inside a failed `connect_async`, if that is why it failed.
    pub fn from_ws_error(err: &tungstenite::Error) -> Option<Self> {
        let tungstenite::Error::Http(response) = err else {
            return None;
        };
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
        Some(Self::from_response(response.status().as_u16(), headers))
    }

    pub fn kind(&self) -> RefusalKind {
        match (self.status, self.auth_err_code) {
            (403, _) => RefusalKind::Forbidden,
            (514, Some(AUTH_ERR_CONNECTION_LIMIT)) => RefusalKind::ConnectionLimit,
            _ => RefusalKind::Retryable,
        }
    }

    pub fn is_fatal(&self) -> bool {
        self.kind() != RefusalKind::Retryable
    }
}

impl fmt::Display for HandshakeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "status {}", self.status)?;
        if let Some(code) = self.auth_err_code {
            write!(f, ", auth error {code}")?;
        }
        if let Some(msg) = &self.message {
            write!(f, ": {msg}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "wss://msg-frontier.feishu.cn/ws/v2?fpid=493&aid=552564&device_id=7&access_key=k&service_id=33&ticket=t";

    fn reply(code: i64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "code": code, "msg": "m",
            "data": {"URL": URL, "ClientConfig": {"ReconnectCount": -1, "ReconnectInterval": 120, "ReconnectNonce": 30, "PingInterval": 120}}
        }))
        .unwrap()
    }

    #[test]
    fn request_body_matches_the_sdks() {
        let body = serde_json::to_string(&EndpointRequest {
            app_id: "cli_x",
            app_secret: "s",
        })
        .unwrap();
        assert_eq!(body, r#"{"AppID":"cli_x","AppSecret":"s"}"#);
    }

    #[test]
    fn successful_reply_yields_url_ids_and_config() {
        let ep = parse_endpoint_response(200, &reply(0)).unwrap();
        assert_eq!(ep.url, URL);
        assert_eq!(ep.device_id, "7");
        assert_eq!(ep.service_id, 33);
        assert_eq!(ep.client_config.ping_interval, Some(120));
        assert_eq!(ep.client_config.reconnect_count, Some(-1));
        let debug = format!("{ep:?}");
        assert!(
            !debug.contains("ticket") && !debug.contains("access_key"),
            "{debug}"
        );
    }

    #[test]
    fn codes_are_classified_as_the_sdks_do() {
        for code in [CODE_SYSTEM_BUSY, CODE_INTERNAL_ERROR] {
            let err = parse_endpoint_response(200, &reply(code)).unwrap_err();
            assert!(matches!(err, EndpointError::Busy { .. }), "{err:?}");
            assert!(err.is_retryable());
        }
        let err = parse_endpoint_response(200, &reply(99991543)).unwrap_err();
        assert!(matches!(
            err,
            EndpointError::Rejected { code: 99991543, .. }
        ));
        assert!(!err.is_retryable());
        let err = parse_endpoint_response(502, b"<html>").unwrap_err();
        assert!(matches!(err, EndpointError::Status(502)) && err.is_retryable());
        let err = parse_endpoint_response(200, b"<html>").unwrap_err();
        assert!(matches!(err, EndpointError::BadResponse(_)) && err.is_retryable());
        let err = parse_endpoint_response(200, br#"{"code":0,"data":{}}"#).unwrap_err();
        assert!(matches!(err, EndpointError::BadResponse(_)));
    }

    #[test]
    fn url_without_ids_is_refused() {
        assert!(matches!(
            parse_ws_url("wss://h/ws/v2?fpid=1&service_id=3"),
            Err(EndpointError::BadUrl("no device_id"))
        ));
        assert!(matches!(
            parse_ws_url("wss://h/ws/v2?fpid=1&device_id=3"),
            Err(EndpointError::BadUrl("no service_id"))
        ));
        assert!(parse_ws_url("wss://h/ws/v2?device_id=1&service_id=x").is_err());
        assert!(parse_ws_url("https://h/ws/v2?device_id=1&service_id=2").is_err());
        assert_eq!(
            parse_ws_url("ws://127.0.0.1:9/ws/v2?fpid=1&device_id=a&service_id=-2&ticket=t")
                .unwrap(),
            ("a".to_owned(), -2)
        );
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_with_the_app_secret() {
        use crate::sim::event_sink::EventSink;
        let elsewhere = EventSink::start("0123456789abcdef").unwrap();
        let redirector = EventSink::start("0123456789abcdef").unwrap();
        redirector.set_redirect(Some(elsewhere.url()));
        let base = BaseUrl::parse(redirector.url()).unwrap();
        let err = fetch_endpoint(&base, "cli_x", "app-secret-value")
            .await
            .unwrap_err();
        assert!(matches!(err, EndpointError::Status(307)), "{err:?}");
        assert!(err.is_retryable());
        assert_eq!(redirector.requests(), 1);
        assert_eq!(elsewhere.requests(), 0, "the request went no further");
    }

    #[test]
    fn handshake_refusals_are_classified_case_insensitively() {
        let forbidden = HandshakeRefusal::from_response(403, []);
        assert_eq!(forbidden.kind(), RefusalKind::Forbidden);
        assert!(forbidden.is_fatal());

        let limit = HandshakeRefusal::from_response(
            400,
            [
                ("Handshake-Status", "514"),
                ("HANDSHAKE-AUTHERRCODE", "1000040350"),
                ("handshake-msg", "too many connections"),
            ],
        );
        assert_eq!(limit.status, 514);
        assert_eq!(limit.kind(), RefusalKind::ConnectionLimit);
        assert_eq!(
            limit.to_string(),
            "status 514, auth error 1000040350: too many connections"
        );

        let auth = HandshakeRefusal::from_response(514, [("handshake-autherrcode", "1000040351")]);
        assert_eq!(auth.kind(), RefusalKind::Retryable);
        assert!(!HandshakeRefusal::from_response(500, []).is_fatal());
        assert!(!HandshakeRefusal::from_response(502, [("handshake-status", "junk")]).is_fatal());
    }
}
