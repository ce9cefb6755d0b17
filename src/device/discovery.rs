//! RFC 8414 discovery: `GET https://{host}/.well-known/oauth-authorization-server`.
//!
//! Endpoints are discovered, never hard-coded, and the document is fetched
//! again before every poll and refresh, as the reference client does, so a
//! server may move its endpoints between steps.

use serde_json::{Map, Value};
use url::Url;

use super::error::{DeviceError, Step};
use super::host::DeviceHost;
use super::wire::{DeviceClient, Fields};

/// Where the discovery document lives on every host.
pub const DISCOVERY_PATH: &str = "/.well-known/oauth-authorization-server";

/// The parts of the discovery document the device flow uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub issuer: Url,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub registration_endpoint: Url,
    /// `None` when the server does not offer the device flow.
    pub device_authorization_endpoint: Option<Url>,
}

impl Metadata {
    /// The device endpoint, or `DEVICE_FLOW_UNSUPPORTED`.
    pub fn device_endpoint(&self) -> Result<&Url, DeviceError> {
        self.device_authorization_endpoint
            .as_ref()
            .ok_or(DeviceError::DeviceFlowUnsupported)
    }
}

impl DeviceClient {
    /// Fetch and check the discovery document of `host`.
    pub async fn discover(&self, host: &DeviceHost) -> Result<Metadata, DeviceError> {
        let url = host.base_url().join(DISCOVERY_PATH);
        let reply = self
            .send(
                Step::Discovery,
                self.http.get(url).header("accept", "application/json"),
            )
            .await?;
        if reply.status != 200 {
            return Err(DeviceError::HttpStatus {
                step: Step::Discovery,
                status: reply.status,
            });
        }
        parse_metadata(&reply.json_object(Step::Discovery)?)
    }
}

/// Check a discovery document: the four required fields are present and
/// every endpoint is https (http only on loopback).
pub fn parse_metadata(doc: &Map<String, Value>) -> Result<Metadata, DeviceError> {
    let f = Fields {
        step: Step::Discovery,
        map: doc,
    };
    let device_authorization_endpoint = match f.opt_str("device_authorization_endpoint")? {
        Some(_) => Some(f.secure_url("device_authorization_endpoint")?),
        None => None,
    };
    Ok(Metadata {
        issuer: f.secure_url("issuer")?,
        authorization_endpoint: f.secure_url("authorization_endpoint")?,
        token_endpoint: f.secure_url("token_endpoint")?,
        registration_endpoint: f.secure_url("registration_endpoint")?,
        device_authorization_endpoint,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn full() -> Value {
        json!({
            "issuer": "https://h.example",
            "authorization_endpoint": "https://h.example/authorize",
            "token_endpoint": "https://h.example/token",
            "registration_endpoint": "https://h.example/register",
            "device_authorization_endpoint": "https://h.example/device",
        })
    }

    #[test]
    fn a_complete_document_is_accepted() {
        let m = parse_metadata(&doc(full())).unwrap();
        assert_eq!(m.token_endpoint.as_str(), "https://h.example/token");
        assert_eq!(
            m.device_endpoint().unwrap().as_str(),
            "https://h.example/device"
        );
    }

    #[test]
    fn a_missing_device_endpoint_means_unsupported() {
        let mut d = full();
        d.as_object_mut()
            .unwrap()
            .remove("device_authorization_endpoint");
        let m = parse_metadata(&doc(d)).unwrap();
        assert_eq!(
            m.device_endpoint().unwrap_err().code(),
            "DEVICE_FLOW_UNSUPPORTED"
        );
    }

    #[test]
    fn missing_mistyped_or_insecure_fields_are_invalid() {
        for (key, value) in [
            ("issuer", Value::Null),
            ("token_endpoint", json!(42)),
            ("registration_endpoint", json!("http://h.example/register")),
            ("authorization_endpoint", json!("not a url")),
            (
                "device_authorization_endpoint",
                json!("http://h.example/device"),
            ),
            ("device_authorization_endpoint", json!(["x"])),
        ] {
            let mut d = full();
            d[key] = value;
            let e = parse_metadata(&doc(d)).unwrap_err();
            assert_eq!(e.code(), "OAUTH_DISCOVERY_INVALID", "{key}: {e}");
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn loopback_endpoints_may_use_http() {
        let d = json!({
            "issuer": "http://127.0.0.1:1",
            "authorization_endpoint": "http://127.0.0.1:1/a",
            "token_endpoint": "http://localhost:1/t",
            "registration_endpoint": "http://[::1]:1/r",
        });
        assert!(parse_metadata(&doc(d)).is_ok());
    }
}
