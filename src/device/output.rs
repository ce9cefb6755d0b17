//! The exact JSON the `auth` commands print. Scripts parse it and branch on
//! it, so the shapes here are the contract:
//!
//! - success objects go to stdout, errors to stderr as
//!   `{"data":null,"error":{"code","message","retryable"},"meta":{}}`;
//! - keys are sorted; `--format json` (default) indents by two spaces,
//!   `--format ndjson` writes one compact line; each document ends in `\n`.

use std::io::Write;
use std::str::FromStr;

use serde_json::{json, Map, Value};

use super::device_auth::DeviceCode;
use super::error::DeviceError;
use super::wire::encode_sorted;

/// `--format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Json,
    Ndjson,
}

impl FromStr for Format {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Format::Json),
            "ndjson" => Ok(Format::Ndjson),
            other => Err(DeviceError::InvalidOption(format!(
                "unsupported --format `{other}`: use json or ndjson"
            ))),
        }
    }
}

/// `value` with every object's keys in sorted order, whatever order the
/// map type keeps (serde_json's `preserve_order` feature may be on).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sorted(v)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Render one document, newline included.
pub fn render(value: Value, format: Format) -> String {
    let value = sorted(value);
    let text = match format {
        Format::Json => serde_json::to_string_pretty(&value),
        Format::Ndjson => serde_json::to_string(&value),
    };
    // Serialising a `Value` cannot fail: its keys are strings already.
    let mut text = text.unwrap_or_default();
    text.push('\n');
    text
}

/// Write a document. A closed pipe is not worth an error of its own: the
/// exit code still tells the caller what happened.
pub fn emit(out: &mut dyn Write, value: Value, format: Format) {
    let _ = out.write_all(render(value, format).as_bytes());
    let _ = out.flush();
}

/// The stderr envelope for `error`.
pub fn error_envelope(error: &DeviceError) -> Value {
    json!({
        "data": null,
        "error": {
            "code": error.code(),
            "message": error.to_string(),
            "retryable": error.retryable(),
        },
        "meta": {},
    })
}

/// `--phase init` output.
pub fn init_object(code: &DeviceCode, client_id: &str) -> Value {
    let complete = code
        .verification_uri_complete
        .as_deref()
        .map(rewrite_verification_uri)
        .unwrap_or_default();
    json!({
        "client_id": client_id,
        "device_code": code.device_code,
        "expires_in": code.expires_in,
        "interval": code.interval,
        "user_code": code.user_code,
        "verification_uri": code.verification_uri,
        "verification_uri_complete": complete,
    })
}

/// A poll status that is not a success (`authorization_pending`, …).
pub fn poll_status(status: &str) -> Value {
    json!({ "status": status })
}

/// A successful login.
pub fn login_ok() -> Value {
    json!({"message": "Login successful", "status": "ok"})
}

/// A logout (also when there was nothing to remove).
pub fn logout_ok() -> Value {
    json!({"message": "Logged out", "status": "ok"})
}

/// Rename the `user_code` query key to `usercode`, add
/// `channel=meegle-cli`, and re-encode the query with sorted keys — the
/// link the Feishu Project web page expects. Only the query changes; the
/// rest of the link is kept byte for byte.
pub fn rewrite_verification_uri(raw: &str) -> String {
    let (without_fragment, fragment) = match raw.split_once('#') {
        Some((head, frag)) => (head, Some(frag)),
        None => (raw, None),
    };
    let (base, query) = without_fragment
        .split_once('?')
        .unwrap_or((without_fragment, ""));
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let user_code = pairs
        .iter()
        .find(|(k, _)| k == "user_code")
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty());
    if let Some(code) = user_code {
        pairs.retain(|(k, _)| k != "user_code" && k != "usercode");
        pairs.push(("usercode".into(), code));
    }
    pairs.retain(|(k, _)| k != "channel");
    pairs.push(("channel".into(), "meegle-cli".into()));
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut out = format!("{base}?{}", encode_sorted(&borrowed));
    if let Some(frag) = fragment {
        out.push('#');
        out.push_str(frag);
    }
    out
}

/// Where the token `auth status` checked came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// The encrypted `device_tokens` row of the profile.
    TokenStore,
    /// `MEEGLE_USER_ACCESS_TOKEN`.
    Env,
}

impl TokenSource {
    fn as_str(self) -> &'static str {
        match self {
            TokenSource::TokenStore => "token_store",
            TokenSource::Env => "env",
        }
    }
}

/// The `reason` of a token with no local copy.
pub const REASON_NO_LOCAL_TOKEN: &str = "no local token";
/// The `reason` of a token the server refused even after a refresh.
pub const REASON_TOKEN_REJECTED: &str = "token rejected by server";
/// The `reason` prefix of a server that could not be asked.
pub const REASON_UNREACHABLE: &str = "server unreachable";
/// The `reason` when a token exists but no host is known.
pub const REASON_NO_HOST: &str = "no host configured";

/// The result of `auth status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusReport {
    Authenticated {
        host: String,
        /// `None` for tokens with no stored expiry (env tokens).
        expires_in_minutes: Option<i64>,
        source: TokenSource,
    },
    /// No token, or a token the server refused: log in again (exit 1).
    NotAuthenticated {
        host: Option<String>,
        reason: String,
    },
    /// The server could not be asked: try again later (exit 2).
    Unreachable { host: String, detail: String },
}

impl StatusReport {
    /// The JSON object printed on stdout.
    pub fn to_json(&self) -> Value {
        match self {
            StatusReport::Authenticated {
                host,
                expires_in_minutes,
                source,
            } => json!({
                "authenticated": true,
                "expires_in_minutes": expires_in_minutes,
                "host": host,
                "source": source.as_str(),
            }),
            StatusReport::NotAuthenticated { host, reason } => json!({
                "authenticated": false,
                "host": host,
                "reason": reason,
            }),
            StatusReport::Unreachable { host, detail } => json!({
                "authenticated": false,
                "host": host,
                "reason": format!("{REASON_UNREACHABLE}: {detail}"),
            }),
        }
    }

    /// 0 authenticated, 1 log in again, 2 retry later.
    pub fn exit_code(&self) -> i32 {
        match self {
            StatusReport::Authenticated { .. } => 0,
            StatusReport::NotAuthenticated { .. } => 1,
            StatusReport::Unreachable { .. } => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_sorted_and_indented_and_ndjson_is_one_line() {
        let v = json!({"status": "ok", "message": "Login successful"});
        assert_eq!(
            render(v.clone(), Format::Json),
            "{\n  \"message\": \"Login successful\",\n  \"status\": \"ok\"\n}\n"
        );
        assert_eq!(
            render(v, Format::Ndjson),
            "{\"message\":\"Login successful\",\"status\":\"ok\"}\n"
        );
    }

    #[test]
    fn the_error_envelope_matches_the_contract() {
        let e = DeviceError::AuthorizationFailed("access_denied".into());
        assert_eq!(
            render(error_envelope(&e), Format::Ndjson),
            "{\"data\":null,\"error\":{\"code\":\"DEVICE_CODE_FAILED\",\"message\":\"Device code authorization failed: access_denied\",\"retryable\":true},\"meta\":{}}\n"
        );
        assert_eq!(
            render(error_envelope(&e), Format::Json),
            "{\n  \"data\": null,\n  \"error\": {\n    \"code\": \"DEVICE_CODE_FAILED\",\n    \"message\": \"Device code authorization failed: access_denied\",\n    \"retryable\": true\n  },\n  \"meta\": {}\n}\n"
        );
    }

    #[test]
    fn verification_links_are_rewritten_like_the_reference_client() {
        assert_eq!(
            rewrite_verification_uri("https://H/verify?user_code=WXYZ-1234"),
            "https://H/verify?channel=meegle-cli&usercode=WXYZ-1234"
        );
        assert_eq!(
            rewrite_verification_uri(
                "https://h.example/v?z=1&user_code=AB%20C&channel=web&a=x~y*#frag"
            ),
            "https://h.example/v?a=x~y%2A&channel=meegle-cli&usercode=AB+C&z=1#frag"
        );
        assert_eq!(
            rewrite_verification_uri("https://h.example/v"),
            "https://h.example/v?channel=meegle-cli"
        );
    }

    #[test]
    fn status_objects_and_exit_codes() {
        let r = StatusReport::NotAuthenticated {
            host: None,
            reason: REASON_NO_LOCAL_TOKEN.into(),
        };
        assert_eq!(
            render(r.to_json(), Format::Ndjson),
            "{\"authenticated\":false,\"host\":null,\"reason\":\"no local token\"}\n"
        );
        assert_eq!(r.exit_code(), 1);
        let r = StatusReport::Authenticated {
            host: "H".into(),
            expires_in_minutes: Some(119),
            source: TokenSource::TokenStore,
        };
        assert_eq!(
            render(r.to_json(), Format::Ndjson),
            "{\"authenticated\":true,\"expires_in_minutes\":119,\"host\":\"H\",\"source\":\"token_store\"}\n"
        );
        let r = StatusReport::Unreachable {
            host: "H".into(),
            detail: "server returned error (503)".into(),
        };
        assert_eq!(
            r.to_json()["reason"],
            "server unreachable: server returned error (503)"
        );
        assert_eq!(r.exit_code(), 2);
    }
}
