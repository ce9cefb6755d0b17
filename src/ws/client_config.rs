//! `ClientConfig`: the connection settings the platform hands out, first in
//! the bootstrap reply and then in any pong.
//!
//! On the wire the four values are integers in seconds under PascalCase
//! keys; here they are `Duration`s. An update may lack keys (we keep the
//! current value, unlike the Python SDK which assigns blindly and breaks)
//! and a non-positive interval is ignored, because a zero ping or retry
//! interval would turn the client into a busy loop.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The settings a connection runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Reconnect attempts the platform allows; negative means no limit.
    pub reconnect_count: i64,
    /// Wait between reconnect attempts after the first.
    pub reconnect_interval: Duration,
    /// Upper bound of the random wait before the first reconnect attempt.
    pub reconnect_nonce: Duration,
    /// Time between pings.
    pub ping_interval: Duration,
}

impl Default for ClientConfig {
    /// The official SDKs' local defaults, used until the platform sends its own.
    fn default() -> Self {
        Self {
            reconnect_count: -1,
            reconnect_interval: Duration::from_secs(120),
            reconnect_nonce: Duration::from_secs(30),
            ping_interval: Duration::from_secs(120),
        }
    }
}

/// `ClientConfig` as JSON: every key optional on the way in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientConfigUpdate {
    #[serde(rename = "ReconnectCount", default)]
    pub reconnect_count: Option<i64>,
    #[serde(rename = "ReconnectInterval", default)]
    pub reconnect_interval: Option<i64>,
    #[serde(rename = "ReconnectNonce", default)]
    pub reconnect_nonce: Option<i64>,
    #[serde(rename = "PingInterval", default)]
    pub ping_interval: Option<i64>,
}

impl ClientConfigUpdate {
    /// Parse a pong payload or the bootstrap's `ClientConfig` object.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

impl ClientConfig {
    /// This config with whatever `update` carries applied.
    pub fn updated(&self, update: &ClientConfigUpdate) -> Self {
        let positive = |secs: Option<i64>, current: Duration| match secs {
            Some(s) if s > 0 => Duration::from_secs(s.unsigned_abs()),
            _ => current,
        };
        let non_negative = |secs: Option<i64>, current: Duration| match secs {
            Some(s) if s >= 0 => Duration::from_secs(s.unsigned_abs()),
            _ => current,
        };
        Self {
            reconnect_count: update.reconnect_count.unwrap_or(self.reconnect_count),
            reconnect_interval: positive(update.reconnect_interval, self.reconnect_interval),
            reconnect_nonce: non_negative(update.reconnect_nonce, self.reconnect_nonce),
            ping_interval: positive(update.ping_interval, self.ping_interval),
        }
    }

    /// The wire form with all four keys, as a pong should carry it.
    pub fn to_update(&self) -> ClientConfigUpdate {
        let secs = |d: Duration| Some(i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        ClientConfigUpdate {
            reconnect_count: Some(self.reconnect_count),
            reconnect_interval: secs(self.reconnect_interval),
            reconnect_nonce: secs(self.reconnect_nonce),
            ping_interval: secs(self.ping_interval),
        }
    }

    /// `{"ReconnectCount":..,"ReconnectInterval":..,"ReconnectNonce":..,"PingInterval":..}`.
    pub fn to_json(&self) -> Vec<u8> {
        // Four integers always serialise.
        serde_json::to_vec(&self.to_update()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_update_replaces_everything() {
        let json =
            br#"{"ReconnectCount":3,"ReconnectInterval":5,"ReconnectNonce":0,"PingInterval":10}"#;
        let cfg = ClientConfig::default().updated(&ClientConfigUpdate::from_json(json).unwrap());
        assert_eq!(
            cfg,
            ClientConfig {
                reconnect_count: 3,
                reconnect_interval: Duration::from_secs(5),
                reconnect_nonce: Duration::ZERO,
                ping_interval: Duration::from_secs(10),
            }
        );
        assert_eq!(
            ClientConfigUpdate::from_json(&cfg.to_json()).unwrap(),
            cfg.to_update()
        );
    }

    #[test]
    fn missing_or_nonsensical_values_keep_the_current_ones() {
        let current = ClientConfig::default();
        let update =
            ClientConfigUpdate::from_json(br#"{"PingInterval":0,"ReconnectNonce":-4}"#).unwrap();
        assert_eq!(current.updated(&update), current);
        assert!(ClientConfigUpdate::from_json(b"5").is_err());
        assert!(ClientConfigUpdate::from_json(b"{\"PingInterval\":\"soon\"}").is_err());
    }

    #[test]
    fn json_carries_all_four_keys() {
        let v: serde_json::Value =
            serde_json::from_slice(&ClientConfig::default().to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ReconnectCount": -1, "ReconnectInterval": 120, "ReconnectNonce": 30, "PingInterval": 120})
        );
    }
}
