//! The HTTP client of the device-code login and the checks every answer
//! goes through before any field of it is trusted.
//!
//! Authorization servers answer in two shapes (flat RFC fields, or the same
//! fields under `data` in a `{code, data, msg}` envelope), sometimes with
//! HTML error pages from a proxy in between. Every body is read with a size
//! cap, parsed as a JSON object, and read field by field with its type
//! checked, so a bad answer becomes a [`DeviceError::Malformed`] naming the
//! field, never a panic and never a half-stored token.

use std::time::Duration;

use reqwest::redirect;
use serde_json::{Map, Value};
use url::Url;

use super::error::{DeviceError, Step};
use crate::domain::BaseUrl;

/// Largest body we read; OAuth answers are a few hundred bytes.
const MAX_BODY: usize = 1024 * 1024;
/// Most redirects followed, and only to https (or loopback http).
const MAX_REDIRECTS: usize = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Ceiling for one OAuth exchange; the MCP check sets its own, shorter one.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The reqwest client shared by every step.
#[derive(Clone)]
pub struct DeviceClient {
    pub(crate) http: reqwest::Client,
}

impl DeviceClient {
    pub fn new() -> Result<Self, DeviceError> {
        let policy = redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if BaseUrl::parse(attempt.url().as_str()).is_err() {
                attempt.error("redirect to a non-https URL refused")
            } else {
                attempt.follow()
            }
        });
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(policy)
            .build()
            .map_err(|e| DeviceError::HttpClient(error_chain(&e)))?;
        Ok(Self { http })
    }

    /// Send `request` and read its answer; only transport failures are
    /// errors here, the status is for the caller to judge.
    pub(crate) async fn send(
        &self,
        step: Step,
        request: reqwest::RequestBuilder,
    ) -> Result<Reply, DeviceError> {
        let request = request
            .build()
            .map_err(|e| DeviceError::HttpClient(error_chain(&e)))?;
        let url = request.url().to_string();
        let network = |e: reqwest::Error| DeviceError::Network {
            step,
            url: url.clone(),
            detail: error_chain(&e),
        };
        let mut response = self.http.execute(request).await.map_err(network)?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(network)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(DeviceError::Malformed {
                    step,
                    detail: format!("the answer (HTTP {status}) is larger than {MAX_BODY} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }
}

/// An HTTP answer, fully read.
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as a JSON object. The body itself is never echoed in the
    /// error: a misbehaving token endpoint may have put a token in it.
    pub fn json_object(&self, step: Step) -> Result<Map<String, Value>, DeviceError> {
        let not_json = |what: &str| DeviceError::Malformed {
            step,
            detail: format!(
                "the {step} endpoint answered HTTP {} with {what} (content-type {}, {} bytes)",
                self.status,
                self.content_type,
                self.body.len()
            ),
        };
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(not_json(&format!(
                "JSON {} instead of an object",
                kind(&other)
            ))),
            Err(_) if self.body.is_empty() => Err(not_json("an empty body")),
            Err(_) => Err(not_json("a body that is not JSON")),
        }
    }
}

/// Pick the object holding the fields: the top level when one of `keys` is
/// a non-empty string there, else a `data` object that has one of `keys`,
/// else the top level (so the missing field is reported there).
pub(crate) fn unwrap_data<'a>(
    map: &'a Map<String, Value>,
    keys: &[&str],
) -> &'a Map<String, Value> {
    let has_value = |m: &Map<String, Value>| {
        keys.iter()
            .any(|k| matches!(m.get(*k), Some(Value::String(s)) if !s.is_empty()))
    };
    if has_value(map) {
        return map;
    }
    match map.get("data") {
        Some(Value::Object(data))
            if keys
                .iter()
                .any(|k| data.get(*k).is_some_and(|v| !v.is_null())) =>
        {
            data
        }
        _ => map,
    }
}

/// Typed reads of one JSON object, reporting problems for `step`.
pub(crate) struct Fields<'a> {
    pub step: Step,
    pub map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn malformed(&self, detail: String) -> DeviceError {
        DeviceError::Malformed {
            step: self.step,
            detail,
        }
    }

    /// A string field; absent, `null` and `""` are `None`.
    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, DeviceError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.malformed(format!("`{key}` is {}, expected a string", kind(other))))
            }
        }
    }

    /// A string field that must be present and non-empty.
    pub fn req_str(&self, key: &str) -> Result<&'a str, DeviceError> {
        self.opt_str(key)?
            .ok_or_else(|| self.malformed(format!("the answer has no `{key}`")))
    }

    /// A non-negative integer field; absent and `null` are `None`.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, DeviceError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
                self.malformed(format!("`{key}` is {n}, expected a non-negative integer"))
            }),
            Some(other) => {
                Err(self.malformed(format!("`{key}` is {}, expected an integer", kind(other))))
            }
        }
    }

    /// A URL field that must be https (or http on loopback).
    pub fn secure_url(&self, key: &str) -> Result<Url, DeviceError> {
        let raw = self.secure_url_str(key)?;
        Url::parse(raw).map_err(|e| self.malformed(format!("`{key}` is not a URL: {e}")))
    }

    /// Like [`Fields::secure_url`], but the text exactly as the server sent it.
    pub fn secure_url_str(&self, key: &str) -> Result<&'a str, DeviceError> {
        let raw = self.req_str(key)?;
        BaseUrl::parse(raw).map_err(|e| self.malformed(format!("`{key}`: {e}")))?;
        Ok(raw)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `application/x-www-form-urlencoded` the way Go's `url.Values.Encode`
/// writes it: keys sorted, unreserved bytes `A-Za-z0-9-_.~` kept, space as
/// `+`, everything else `%XX`. Used for request forms and for rewriting
/// `verification_uri_complete`, so both match the reference client byte
/// for byte.
pub(crate) fn encode_sorted(pairs: &[(&str, &str)]) -> String {
    let mut sorted: Vec<&(&str, &str)> = pairs.iter().collect();
    // A stable sort keeps repeated keys in their given order, as Go does.
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An error and its sources, `: `-joined, so "connection refused" is not
/// hidden behind reqwest's "error sending request".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn forms_are_encoded_like_go() {
        assert_eq!(
            encode_sorted(&[("grant_type", "urn:x"), ("client_id", "a b*~")]),
            "client_id=a+b%2A~&grant_type=urn%3Ax"
        );
    }

    #[test]
    fn flat_fields_win_over_data() {
        let m = obj(json!({"device_code": "flat", "data": {"device_code": "wrapped"}}));
        assert_eq!(unwrap_data(&m, &["device_code"])["device_code"], "flat");
        let m = obj(json!({"code": 0, "data": {"device_code": "wrapped"}, "msg": "ok"}));
        assert_eq!(unwrap_data(&m, &["device_code"])["device_code"], "wrapped");
        let m = obj(json!({"code": 0, "data": null}));
        assert!(unwrap_data(&m, &["device_code"]).contains_key("code"));
    }

    #[test]
    fn wrong_types_are_reported_by_name() {
        let m = obj(json!({"a": 1, "b": "x", "n": -1, "u": "http://example.com/t"}));
        let f = Fields {
            step: Step::TokenPoll,
            map: &m,
        };
        assert!(f
            .opt_str("a")
            .unwrap_err()
            .to_string()
            .contains("`a` is a number"));
        assert_eq!(f.req_str("b").unwrap(), "x");
        assert!(f.req_str("zz").unwrap_err().to_string().contains("no `zz`"));
        assert!(f.opt_u64("n").is_err());
        assert!(f.opt_u64("b").is_err());
        assert_eq!(f.opt_u64("zz").unwrap(), None);
        assert!(f.secure_url("u").is_err());
    }

    #[test]
    fn non_json_bodies_are_described_without_echoing_them() {
        let r = Reply {
            status: 502,
            content_type: "text/html".into(),
            body: b"<html>secret-ish</html>".to_vec(),
        };
        let e = r.json_object(Step::TokenPoll).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("HTTP 502"), "{text}");
        assert!(text.contains("text/html"), "{text}");
        assert!(!text.contains("secret-ish"), "{text}");
        let r = Reply {
            status: 200,
            content_type: "application/json".into(),
            body: b"[1]".to_vec(),
        };
        assert!(r
            .json_object(Step::Discovery)
            .unwrap_err()
            .to_string()
            .contains("an array"));
    }
}
