//! Forwarding configuration: which events go to which sinks.
//!
//! `FORWARD_SINKS` is a JSON array (or `[[forward.sinks]]` tables in the
//! TOML defaults file, turned into the same JSON by `config`). Every sink is
//! checked at start-up, and a problem is a `ConfigError` naming the sink, so
//! a typo stops the service instead of silently dropping events.
//!
//! An HTTP sink must be `https://` unless it is on loopback: its requests
//! carry the event and a signature anyone on the path could replay. Sink
//! URLs are held as [`SinkAddress`]es, so none of this module's messages or
//! dumps shows their credentials.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use super::address::SinkAddress;
use crate::config::ConfigError;
use crate::domain::base_url::is_loopback;
use crate::domain::Secret;
use crate::supervise::backoff::Backoff;

pub const VAR: &str = "FORWARD_SINKS";

/// Subjects are `<subject_prefix>.<event_type>`.
pub const DEFAULT_SUBJECT_PREFIX: &str = "lark.events";
pub const DEFAULT_STREAM: &str = "LARK_EVENTS";
const DEFAULT_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_CONCURRENCY: usize = 16;
const DEFAULT_MAX_ATTEMPTS: u32 = 25;
const DEFAULT_BACKOFF_BASE_MS: u64 = 500;
const DEFAULT_BACKOFF_MAX_MS: u64 = 5 * 60 * 1000;
/// HMAC keys shorter than this are guessable.
const MIN_SECRET_LEN: usize = 16;

/// One sink as written in configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: Option<String>,
    #[serde(default)]
    events: Vec<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    secret: Option<String>,
    stream: Option<String>,
    subject_prefix: Option<String>,
    timeout_ms: Option<u64>,
    concurrency: Option<usize>,
    max_attempts: Option<u32>,
    backoff_base_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
}

/// Where a sink delivers.
#[derive(Debug, Clone)]
pub enum SinkKind {
    /// POST the envelope, signed with HMAC-SHA256.
    Http { url: SinkAddress, secret: Secret },
    /// Publish to JetStream stream `stream` under `subject_prefix`.
    Nats {
        url: SinkAddress,
        stream: String,
        subject_prefix: String,
    },
}

/// A checked sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    /// Event types or globs (`im.message.*`, `*`).
    pub events: Vec<String>,
    pub kind: SinkKind,
    /// Per attempt (and per card-callback request, within its own deadline).
    pub timeout: Duration,
    /// Deliveries in flight at once, per replica.
    pub concurrency: usize,
    /// Attempts before a row becomes a dead letter.
    pub max_attempts: u32,
    pub backoff: Backoff,
}

impl SinkConfig {
    /// Does this sink take events of `event_type`?
    pub fn accepts(&self, event_type: &str) -> bool {
        self.events.iter().any(|p| glob_match(p, event_type))
    }

    pub fn kind_label(&self) -> &'static str {
        match self.kind {
            SinkKind::Http { .. } => "http",
            SinkKind::Nats { .. } => "nats",
        }
    }
}

/// Every configured sink.
#[derive(Debug, Clone, Default)]
pub struct ForwardSettings {
    pub sinks: Vec<SinkConfig>,
}

impl ForwardSettings {
    /// Parse `FORWARD_SINKS` (absent or empty: no forwarding).
    pub fn parse(raw: Option<&str>) -> Result<Self, ConfigError> {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(Self::default());
        };
        let list: Vec<serde_json::Value> = serde_json::from_str(raw)
            .map_err(|e| invalid(format!("must be a JSON array of sink objects ({e})")))?;
        let mut names = HashSet::new();
        let mut sinks = Vec::with_capacity(list.len());
        for (i, value) in list.into_iter().enumerate() {
            let label = value
                .get("name")
                .and_then(serde_json::Value::as_str)
                .map_or_else(|| format!("#{}", i + 1), |n| format!("`{n}`"));
            let sink_err = |message: String| invalid(format!("sink {label}: {message}"));
            let raw: RawSink =
                serde_json::from_value(value).map_err(|e| sink_err(e.to_string()))?;
            let sink = check(raw).map_err(sink_err)?;
            if !names.insert(sink.name.clone()) {
                return Err(sink_err("another sink has the same name".into()));
            }
            sinks.push(sink);
        }
        Ok(Self { sinks })
    }

    /// The sinks that take events of `event_type`.
    pub fn sinks_for<'a>(&'a self, event_type: &'a str) -> impl Iterator<Item = &'a SinkConfig> {
        self.sinks.iter().filter(move |s| s.accepts(event_type))
    }
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid { var: VAR, message }
}

fn check(raw: RawSink) -> Result<SinkConfig, String> {
    let name = raw
        .name
        .filter(|n| !n.trim().is_empty())
        .ok_or("needs a `name`")?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("`name` may hold only letters, digits, `-` and `_`".into());
    }
    if raw.events.is_empty() || raw.events.iter().any(|e| e.trim().is_empty()) {
        return Err("`events` must list event types or globs, e.g. [\"im.message.*\"]".into());
    }
    let kind = match raw.kind.as_deref() {
        Some("http") => {
            let url = SinkAddress::new(raw.url.ok_or("an http sink needs a `url`")?);
            check_http_url(&url)?;
            let secret = raw
                .secret
                .ok_or("an http sink needs a `secret` to sign with")?;
            if secret.len() < MIN_SECRET_LEN {
                return Err(format!(
                    "`secret` must be at least {MIN_SECRET_LEN} characters"
                ));
            }
            SinkKind::Http {
                url,
                secret: Secret::new(secret),
            }
        }
        Some("nats") => {
            let url = SinkAddress::new(raw.url.unwrap_or_else(|| "nats://127.0.0.1:4222".into()));
            if !url.expose().starts_with("nats://") && !url.expose().starts_with("tls://") {
                return Err(format!("`url` must be nats://HOST:PORT, not {url}"));
            }
            let stream = raw.stream.unwrap_or_else(|| DEFAULT_STREAM.into());
            if stream.is_empty()
                || stream
                    .chars()
                    .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
            {
                return Err(format!(
                    "`stream` {stream:?} is not a JetStream stream name (no spaces, `.`, `*`, `>`)"
                ));
            }
            let subject_prefix = raw
                .subject_prefix
                .unwrap_or_else(|| DEFAULT_SUBJECT_PREFIX.into());
            if subject_prefix.is_empty()
                || subject_prefix.ends_with('.')
                || subject_prefix
                    .chars()
                    .any(|c| c.is_whitespace() || matches!(c, '*' | '>'))
            {
                return Err(format!(
                    "`subject_prefix` {subject_prefix:?} is not a subject"
                ));
            }
            SinkKind::Nats {
                url,
                stream,
                subject_prefix,
            }
        }
        Some(other) => return Err(format!("`type` {other:?} is neither \"http\" nor \"nats\"")),
        None => return Err("needs a `type`: \"http\" or \"nats\"".into()),
    };
    let positive = |field: &str, v: Option<u64>, default: u64| -> Result<u64, String> {
        match v {
            Some(0) => Err(format!("`{field}` must be positive")),
            Some(n) => Ok(n),
            None => Ok(default),
        }
    };
    let timeout =
        Duration::from_millis(positive("timeout_ms", raw.timeout_ms, DEFAULT_TIMEOUT_MS)?);
    let concurrency = positive(
        "concurrency",
        raw.concurrency.map(|n| n as u64),
        DEFAULT_CONCURRENCY as u64,
    )? as usize;
    let max_attempts = positive(
        "max_attempts",
        raw.max_attempts.map(u64::from),
        u64::from(DEFAULT_MAX_ATTEMPTS),
    )? as u32;
    let base = positive(
        "backoff_base_ms",
        raw.backoff_base_ms,
        DEFAULT_BACKOFF_BASE_MS,
    )?;
    let max = positive("backoff_max_ms", raw.backoff_max_ms, DEFAULT_BACKOFF_MAX_MS)?;
    if max < base {
        return Err("`backoff_max_ms` is below `backoff_base_ms`".into());
    }
    Ok(SinkConfig {
        name,
        events: raw.events,
        kind,
        timeout,
        concurrency,
        max_attempts,
        backoff: Backoff {
            base: Duration::from_millis(base),
            max: Duration::from_millis(max),
        },
    })
}

/// An HTTP sink's URL: `https://`, or `http://` on a loopback host.
fn check_http_url(url: &SinkAddress) -> Result<(), String> {
    let parsed =
        url::Url::parse(url.expose()).map_err(|e| format!("`url` {url} is not a URL ({e})"))?;
    let host = parsed
        .host()
        .ok_or_else(|| format!("`url` {url} has no host"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&host) => Ok(()),
        "http" => Err(format!(
            "`url` {url} must use https:// (plain http:// is allowed only for 127.0.0.1, ::1 \
             and localhost): events and their signatures must not cross a network in the clear"
        )),
        _ => Err(format!(
            "`url` must be https:// (or http:// on loopback), not {url}"
        )),
    }
}

/// `*` matches any run of characters (dots included); everything else is literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let last = parts.pop().unwrap_or("");
    for part in parts {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_prefixes_and_everything() {
        assert!(glob_match("im.message.*", "im.message.receive_v1"));
        assert!(!glob_match("im.message.*", "im.chat.updated_v1"));
        assert!(glob_match("*", "anything.at.all"));
        assert!(glob_match("im.*.receive_v1", "im.message.receive_v1"));
        assert!(glob_match("card.action.trigger", "card.action.trigger"));
        assert!(!glob_match("card.action.trigger", "card.action.trigger2"));
        assert!(!glob_match("a*a", "a"));
    }

    #[test]
    fn a_good_list_parses_with_defaults() {
        let s = ForwardSettings::parse(Some(
            r#"[{"name":"hook","type":"http","events":["im.message.*"],"url":"http://127.0.0.1:9/x","secret":"0123456789abcdef"},
                {"name":"bus","type":"nats","events":["*"]}]"#,
        ))
        .unwrap();
        assert_eq!(s.sinks.len(), 2);
        assert_eq!(s.sinks[0].concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(s.sinks_for("im.message.receive_v1").count(), 2);
        assert_eq!(s.sinks_for("contact.user.updated_v3").count(), 1);
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn http_sinks_need_https_off_loopback() {
        let sink = |url: &str| {
            ForwardSettings::parse(Some(
                &serde_json::json!([{"name": "hook", "type": "http", "events": ["*"],
                    "url": url, "secret": "0123456789abcdef"}])
                .to_string(),
            ))
        };
        for ok in [
            "https://events.example.com/in",
            "http://127.0.0.1:9/x",
            "http://localhost:9/x",
            "http://[::1]:9/x",
        ] {
            assert!(sink(ok).is_ok(), "{ok}");
        }
        let err = sink("http://hook:pa55word@events.example.com/in")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(VAR) && err.contains("`hook`") && err.contains("https://"),
            "{err}"
        );
        assert!(
            !err.contains("pa55word"),
            "credentials are not echoed: {err}"
        );
    }

    #[test]
    fn problems_name_the_sink() {
        let cases = [
            (
                r#"[{"name":"a","type":"http","events":["*"],"url":"ftp://x","secret":"0123456789abcdef"}]"#,
                "`a`",
            ),
            (
                r#"[{"name":"b","type":"http","events":["*"],"url":"http://x"}]"#,
                "`b`",
            ),
            (r#"[{"name":"c","type":"smtp","events":["*"]}]"#, "`c`"),
            (r#"[{"name":"d","type":"nats","events":[]}]"#, "`d`"),
            (
                r#"[{"name":"e","type":"nats","events":["*"],"stream":"a.b"}]"#,
                "`e`",
            ),
            (
                r#"[{"name":"f","type":"nats","events":["*"],"colour":"red"}]"#,
                "`f`",
            ),
            (
                r#"[{"name":"g","type":"nats","events":["*"]},{"name":"g","type":"nats","events":["*"]}]"#,
                "`g`",
            ),
            (
                r#"[{"name":"h","type":"nats","events":["*"],"concurrency":0}]"#,
                "`h`",
            ),
        ];
        for (json, name) in cases {
            let err = ForwardSettings::parse(Some(json)).unwrap_err().to_string();
            assert!(err.starts_with(VAR) && err.contains(name), "{json}: {err}");
        }
        assert!(ForwardSettings::parse(Some("{")).is_err());
        assert!(ForwardSettings::parse(None).unwrap().sinks.is_empty());
    }
}
