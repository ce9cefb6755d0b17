//! Typed configuration.
//!
//! [`Settings::load`] layers three sources, lowest precedence first: the
//! defaults in `config/default.toml` (built into the binary, so it runs from
//! any directory), a `.env` file in the working directory, then the process
//! environment. Keys are the environment names from the design
//! (`APP_ID`, `WEBSOCKET_HEARTBEAT_INTERVAL`, …) everywhere, so an operator
//! never has to translate between a file and a variable.
//!
//! Values are parsed here, once: the rest of the code receives `BaseUrl`s,
//! `Duration`s, an `EncryptionKey`, a `CronSchedule`. A bad value is a
//! [`ConfigError`] naming the variable and what it expects.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::auth::vault::{EncryptionKey, Vault};
use crate::db::connection::DatabaseUrl;
use crate::domain::{BaseUrl, Scopes, Secret};
use crate::forward::config::ForwardSettings;
use crate::sync::schedule::CronSchedule;

const DEFAULTS: &str = include_str!("../config/default.toml");

/// Every variable the service reads. Anything else in the environment is
/// ignored; an unknown key in the defaults file is a programming error
/// caught by a test.
pub const KEYS: &[&str] = &[
    "APP_ID",
    "APP_SECRET",
    "DATABASE_URL",
    "ENCRYPTION_KEY",
    "ENCRYPTION_KEY_PREVIOUS",
    "LARK_DOMAIN",
    "LARK_ACCOUNTS_DOMAIN",
    "AILY_APP_ID",
    "AILY_SKILL_ID",
    "AILY_RUN_TIMEOUT_SECONDS",
    "AILY_POLL_INTERVAL_MS",
    "HTTP_BIND",
    "ADMIN_TOKEN",
    "WEBSOCKET_MAX_RECONNECT_RETRIES",
    "WEBSOCKET_HEARTBEAT_INTERVAL",
    "WEBSOCKET_FALLBACK_TO_HTTP",
    "LARK_ENCRYPT_KEY",
    "LARK_VERIFICATION_TOKEN",
    "OAUTH_REDIRECT_URI",
    "OAUTH_SCOPES",
    "USER_INFO_SYNC_ENABLED",
    "USER_INFO_SYNC_SCHEDULE",
    "AUTH_SESSION_TTL_SECONDS",
    "TOKEN_REFRESH_AHEAD_SECONDS",
    "TOKEN_REFRESH_INTERVAL_SECONDS",
    "TOKEN_REFRESH_CONCURRENCY",
    "TOKEN_REFRESH_SEND_AUTH_CARD",
    "FORWARD_SINKS",
];

/// A configuration problem, always naming the variable at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
    #[error("missing required settings for `serve`: {}; set them in the environment or in .env", .0.join(", "))]
    Missing(Vec<&'static str>),
    #[error("could not read {path}: {message}")]
    Source { path: String, message: String },
}

/// `ADMIN_TOKEN`s shorter than this are guessable by brute force over the
/// network; `openssl rand -hex 24` gives 48 characters.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

fn invalid(var: &'static str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        var,
        message: message.to_string(),
    }
}

/// App credentials and the platform's addresses.
#[derive(Debug, Clone)]
pub struct LarkSettings {
    pub app_id: Option<String>,
    pub app_secret: Option<Secret>,
    pub domain: BaseUrl,
    pub accounts_domain: BaseUrl,
    /// For the HTTP callback fallback.
    pub encrypt_key: Option<Secret>,
    pub verification_token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: DatabaseUrl,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub bind: SocketAddr,
    pub admin_token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct WsSettings {
    pub max_reconnect_retries: u32,
    pub heartbeat_interval: Duration,
    pub fallback_to_http: bool,
}

#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub redirect_uri: Option<url::Url>,
    /// Asked of every user by every flow; `offline_access` included.
    pub scopes: Scopes,
}

#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub enabled: bool,
    pub schedule: CronSchedule,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub session_ttl: Duration,
    pub refresh_ahead: Duration,
    /// How often the token refresher looks for due sessions.
    pub refresh_interval: Duration,
    /// Refreshes in flight at once, per replica.
    pub refresh_concurrency: usize,
    /// Send a new authorization card to a user whose refresh token was
    /// refused for good.
    pub refresh_sends_auth_card: bool,
}

#[derive(Debug, Clone)]
pub struct AilySettings {
    pub app_id: Option<String>,
    pub skill_id: Option<String>,
    /// The longest one AI call may take, run and polls included.
    pub run_timeout: Duration,
    /// Time between polls of a run.
    pub poll_interval: Duration,
}

/// The whole configuration, parsed.
#[derive(Debug, Clone)]
pub struct Settings {
    pub lark: LarkSettings,
    pub database: DatabaseSettings,
    pub encryption_key: Option<EncryptionKey>,
    /// Older keys that still open stored tokens during a rotation
    /// (`ENCRYPTION_KEY_PREVIOUS`); they never seal.
    pub encryption_key_previous: Vec<EncryptionKey>,
    pub http: HttpSettings,
    pub ws: WsSettings,
    pub oauth: OAuthSettings,
    pub sync: SyncSettings,
    pub auth: AuthSettings,
    pub aily: AilySettings,
    /// Where the app's events are forwarded (`FORWARD_SINKS`).
    pub forward: ForwardSettings,
}

/// Raw `KEY → value` pairs, before parsing.
pub type RawSettings = BTreeMap<String, String>;

impl Settings {
    /// Defaults, then `./.env` if present, then the environment.
    pub fn load() -> Result<Self, ConfigError> {
        let mut raw = defaults()?;
        overlay_dotenv(&mut raw, Path::new(".env"))?;
        overlay(&mut raw, std::env::vars());
        Self::from_raw(&raw)
    }

    /// Parse raw pairs (tests build these directly).
    pub fn from_raw(raw: &RawSettings) -> Result<Self, ConfigError> {
        let get = |k: &str| raw.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let opt = |k: &str| get(k).map(str::to_owned);
        let secret = |k: &str| get(k).map(Secret::new);
        let base_url = |k: &'static str| -> Result<BaseUrl, ConfigError> {
            let v = get(k).ok_or_else(|| invalid(k, "must be set to a base URL"))?;
            BaseUrl::parse(v).map_err(|e| invalid(k, e))
        };
        let seconds = |k: &'static str| -> Result<Duration, ConfigError> {
            parse_num::<u64>(k, get(k)).and_then(|n| {
                if n == 0 {
                    Err(invalid(k, "must be a positive number of seconds"))
                } else {
                    Ok(Duration::from_secs(n))
                }
            })
        };

        let positive = |k: &'static str| -> Result<usize, ConfigError> {
            match parse_num::<usize>(k, get(k))? {
                0 => Err(invalid(k, "must be a positive whole number")),
                n => Ok(n),
            }
        };

        let database_url =
            get("DATABASE_URL").ok_or_else(|| invalid("DATABASE_URL", "must be set"))?;
        let encryption_key = get("ENCRYPTION_KEY")
            .map(EncryptionKey::from_hex)
            .transpose()
            .map_err(|e| invalid("ENCRYPTION_KEY", e))?;
        let encryption_key_previous = previous_keys(get("ENCRYPTION_KEY_PREVIOUS"))?;
        if encryption_key.is_none() && !encryption_key_previous.is_empty() {
            return Err(invalid(
                "ENCRYPTION_KEY_PREVIOUS",
                "only opens stored tokens during a rotation; ENCRYPTION_KEY (the key that seals) must be set too",
            ));
        }
        let bind = get("HTTP_BIND").unwrap_or("127.0.0.1:8080");
        let redirect_uri = get("OAUTH_REDIRECT_URI")
            .map(|v| {
                let url = url::Url::parse(v).map_err(|e| {
                    invalid("OAUTH_REDIRECT_URI", format!("`{v}` is not a URL ({e})"))
                })?;
                BaseUrl::parse(v).map_err(|e| invalid("OAUTH_REDIRECT_URI", e))?;
                Ok(url)
            })
            .transpose()?;

        Ok(Self {
            lark: LarkSettings {
                app_id: opt("APP_ID"),
                app_secret: secret("APP_SECRET"),
                domain: base_url("LARK_DOMAIN")?,
                accounts_domain: base_url("LARK_ACCOUNTS_DOMAIN")?,
                encrypt_key: secret("LARK_ENCRYPT_KEY"),
                verification_token: secret("LARK_VERIFICATION_TOKEN"),
            },
            database: DatabaseSettings {
                url: DatabaseUrl::parse(database_url).map_err(|e| invalid("DATABASE_URL", e))?,
            },
            encryption_key,
            encryption_key_previous,
            http: HttpSettings {
                bind: bind.parse().map_err(|_| {
                    invalid(
                        "HTTP_BIND",
                        format!("`{bind}` is not an address like 127.0.0.1:8080"),
                    )
                })?,
                admin_token: admin_token(secret("ADMIN_TOKEN"))?,
            },
            ws: WsSettings {
                max_reconnect_retries: parse_num(
                    "WEBSOCKET_MAX_RECONNECT_RETRIES",
                    get("WEBSOCKET_MAX_RECONNECT_RETRIES"),
                )?,
                heartbeat_interval: seconds("WEBSOCKET_HEARTBEAT_INTERVAL")?,
                fallback_to_http: parse_bool(
                    "WEBSOCKET_FALLBACK_TO_HTTP",
                    get("WEBSOCKET_FALLBACK_TO_HTTP"),
                )?,
            },
            oauth: OAuthSettings {
                redirect_uri,
                scopes: Scopes::parse(get("OAUTH_SCOPES").unwrap_or(""))
                    .map_err(|e| invalid("OAUTH_SCOPES", e))?,
            },
            sync: SyncSettings {
                enabled: parse_bool("USER_INFO_SYNC_ENABLED", get("USER_INFO_SYNC_ENABLED"))?,
                schedule: CronSchedule::parse(get("USER_INFO_SYNC_SCHEDULE").unwrap_or(""))
                    .map_err(|e| invalid("USER_INFO_SYNC_SCHEDULE", e))?,
            },
            auth: AuthSettings {
                session_ttl: seconds("AUTH_SESSION_TTL_SECONDS")?,
                refresh_ahead: seconds("TOKEN_REFRESH_AHEAD_SECONDS")?,
                refresh_interval: seconds("TOKEN_REFRESH_INTERVAL_SECONDS")?,
                refresh_concurrency: positive("TOKEN_REFRESH_CONCURRENCY")?,
                refresh_sends_auth_card: parse_bool(
                    "TOKEN_REFRESH_SEND_AUTH_CARD",
                    get("TOKEN_REFRESH_SEND_AUTH_CARD"),
                )?,
            },
            aily: AilySettings {
                app_id: opt("AILY_APP_ID"),
                skill_id: opt("AILY_SKILL_ID"),
                run_timeout: seconds("AILY_RUN_TIMEOUT_SECONDS")?,
                poll_interval: Duration::from_millis(positive("AILY_POLL_INTERVAL_MS")? as u64),
            },
            forward: ForwardSettings::parse(get("FORWARD_SINKS"))?,
        })
    }

    /// What `serve` needs beyond the defaults; names every missing variable
    /// at once so an operator fixes them in one go.
    pub fn require_for_serve(&self) -> Result<ServeCredentials, ConfigError> {
        let mut missing = Vec::new();
        if self.lark.app_id.is_none() {
            missing.push("APP_ID");
        }
        if self.lark.app_secret.is_none() {
            missing.push("APP_SECRET");
        }
        if self.encryption_key.is_none() {
            missing.push("ENCRYPTION_KEY");
        }
        match (
            &self.lark.app_id,
            &self.lark.app_secret,
            &self.encryption_key,
        ) {
            (Some(app_id), Some(app_secret), Some(key)) => Ok(ServeCredentials {
                app_id: app_id.clone(),
                app_secret: app_secret.clone(),
                encryption_key: key.clone(),
                previous_keys: self.encryption_key_previous.clone(),
            }),
            _ => Err(ConfigError::Missing(missing)),
        }
    }
}

/// The settings `serve` cannot run without, once checked.
#[derive(Debug, Clone)]
pub struct ServeCredentials {
    pub app_id: String,
    pub app_secret: Secret,
    pub encryption_key: EncryptionKey,
    pub previous_keys: Vec<EncryptionKey>,
}

impl ServeCredentials {
    /// The vault: sealing with `ENCRYPTION_KEY`, opening with it and with
    /// `ENCRYPTION_KEY_PREVIOUS`.
    pub fn vault(&self) -> Vault {
        Vault::with_previous(&self.encryption_key, &self.previous_keys)
    }
}

impl Settings {
    /// The vault, when `ENCRYPTION_KEY` is set (commands that can run
    /// without one, like `auth status`, take `None`).
    pub fn vault(&self) -> Option<Vault> {
        self.encryption_key
            .as_ref()
            .map(|k| Vault::with_previous(k, &self.encryption_key_previous))
    }
}

/// `ENCRYPTION_KEY_PREVIOUS`: comma-separated keys, each 64 hex characters.
fn previous_keys(raw: Option<&str>) -> Result<Vec<EncryptionKey>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .enumerate()
        .map(|(i, k)| {
            EncryptionKey::from_hex(k)
                .map_err(|e| invalid("ENCRYPTION_KEY_PREVIOUS", format!("key {}: {e}", i + 1)))
        })
        .collect()
}

/// The built-in defaults as raw pairs.
pub fn defaults() -> Result<RawSettings, ConfigError> {
    from_toml(DEFAULTS, "config/default.toml")
}

/// Raw pairs from a TOML text: top-level keys as they are, and
/// `[[forward.sinks]]` tables as the JSON that `FORWARD_SINKS` holds, so
/// the two spellings go through one parser.
pub fn from_toml(text: &str, path: &str) -> Result<RawSettings, ConfigError> {
    let source_err = |message: String| ConfigError::Source {
        path: path.to_owned(),
        message,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| source_err(e.to_string()))?;
    let mut raw = RawSettings::new();
    for (k, v) in table {
        let s = match v {
            toml::Value::String(s) => s,
            toml::Value::Table(mut forward) if k == "forward" => {
                let sinks = forward
                    .remove("sinks")
                    .unwrap_or(toml::Value::Array(Vec::new()));
                let json = serde_json::to_string(&sinks)
                    .map_err(|e| source_err(format!("[[forward.sinks]]: {e}")))?;
                raw.insert(crate::forward::config::VAR.to_owned(), json);
                continue;
            }
            other => other.to_string(),
        };
        raw.insert(k, s);
    }
    Ok(raw)
}

/// Overlay known keys from `vars`.
pub fn overlay(raw: &mut RawSettings, vars: impl IntoIterator<Item = (String, String)>) {
    for (k, v) in vars {
        if KEYS.contains(&k.as_str()) {
            raw.insert(k, v);
        }
    }
}

fn overlay_dotenv(raw: &mut RawSettings, path: &Path) -> Result<(), ConfigError> {
    if !path.exists() {
        return Ok(());
    }
    let source_err = |e: dotenvy::Error| ConfigError::Source {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let pairs = dotenvy::from_path_iter(path)
        .map_err(source_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(source_err)?;
    overlay(raw, pairs);
    Ok(())
}

/// An `ADMIN_TOKEN`, if set, long enough not to be guessed.
fn admin_token(token: Option<Secret>) -> Result<Option<Secret>, ConfigError> {
    match token {
        Some(t) if t.expose().chars().count() < MIN_ADMIN_TOKEN_CHARS => Err(invalid(
            "ADMIN_TOKEN",
            format!(
                "must be at least {MIN_ADMIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 24`), \
                 or unset to disable the admin API"
            ),
        )),
        other => Ok(other),
    }
}

fn parse_num<T: std::str::FromStr>(var: &'static str, v: Option<&str>) -> Result<T, ConfigError> {
    let v = v.ok_or_else(|| invalid(var, "must be set to a whole number"))?;
    v.parse()
        .map_err(|_| invalid(var, format!("`{v}` is not a whole number")))
}

fn parse_bool(var: &'static str, v: Option<&str>) -> Result<bool, ConfigError> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") | None => Ok(false),
        Some(other) => Err(invalid(var, format!("`{other}` is not true or false"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut raw = defaults().unwrap();
        overlay(
            &mut raw,
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Settings::from_raw(&raw)
    }

    #[test]
    fn defaults_parse_and_cover_exactly_the_known_keys() {
        let raw = defaults().unwrap();
        for k in raw.keys() {
            assert!(
                KEYS.contains(&k.as_str()),
                "unknown key {k} in default.toml"
            );
        }
        let s = Settings::from_raw(&raw).unwrap();
        assert_eq!(s.ws.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(s.ws.max_reconnect_retries, 10);
        assert!(s.ws.fallback_to_http);
        assert!(!s.sync.enabled);
        assert_eq!(s.auth.session_ttl, Duration::from_secs(600));
        assert_eq!(s.lark.domain.as_str(), "https://open.feishu.cn");
        assert!(s.encryption_key.is_none());
        for scope in [
            "contact:user.base:readonly",
            "contact:user.email:readonly",
            "aily:session:write",
            "aily:message:write",
            "aily:message:read",
            "aily:run:write",
            "aily:run:read",
            "offline_access",
        ] {
            assert!(
                s.oauth.scopes.contains(scope),
                "default OAUTH_SCOPES lacks {scope}"
            );
        }
    }

    #[test]
    fn every_design_variable_is_documented_in_the_defaults_file() {
        for k in KEYS {
            assert!(
                DEFAULTS.contains(k),
                "{k} is not documented in config/default.toml"
            );
        }
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = with(&[
            ("WEBSOCKET_HEARTBEAT_INTERVAL", "5"),
            ("APP_ID", "cli_x"),
            ("UNRELATED", "x"),
        ])
        .unwrap();
        assert_eq!(s.ws.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(s.lark.app_id.as_deref(), Some("cli_x"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            ("ENCRYPTION_KEY", "abc"),
            ("ENCRYPTION_KEY_PREVIOUS", "abc"),
            ("DATABASE_URL", "mysql://x"),
            ("USER_INFO_SYNC_SCHEDULE", "bad"),
            ("LARK_DOMAIN", "http://open.feishu.cn"),
            ("HTTP_BIND", "nowhere"),
            ("WEBSOCKET_HEARTBEAT_INTERVAL", "0"),
            ("WEBSOCKET_FALLBACK_TO_HTTP", "maybe"),
            ("TOKEN_REFRESH_CONCURRENCY", "0"),
            ("AILY_POLL_INTERVAL_MS", "soon"),
            ("ADMIN_TOKEN", "fifteen-chars.."),
            ("OAUTH_SCOPES", "aily:run:write,aily:run:read"),
        ];
        for (var, value) in cases {
            let err = with(&[(var, value)]).unwrap_err();
            assert!(err.to_string().starts_with(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn previous_keys_are_a_comma_separated_list_beside_the_current_key() {
        let (current, a, b) = ("ab".repeat(32), "cd".repeat(32), "ef".repeat(32));
        let s = with(&[
            ("ENCRYPTION_KEY", &current),
            ("ENCRYPTION_KEY_PREVIOUS", &format!(" {a}, {b} ,")),
        ])
        .unwrap();
        assert_eq!(
            s.encryption_key_previous,
            vec![
                EncryptionKey::from_hex(&a).unwrap(),
                EncryptionKey::from_hex(&b).unwrap()
            ]
        );
        let err = with(&[
            ("ENCRYPTION_KEY", &current),
            ("ENCRYPTION_KEY_PREVIOUS", &format!("{a},xyz")),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("ENCRYPTION_KEY_PREVIOUS: key 2: "), "{err}");
        let err = with(&[("ENCRYPTION_KEY_PREVIOUS", &a)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ENCRYPTION_KEY (the key that seals)"), "{err}");
    }

    #[test]
    fn serve_names_every_missing_credential() {
        let s = with(&[]).unwrap();
        let err = s.require_for_serve().unwrap_err().to_string();
        assert!(err.contains("APP_ID, APP_SECRET, ENCRYPTION_KEY"), "{err}");
        let key = "ab".repeat(32);
        let s = with(&[
            ("APP_ID", "cli_x"),
            ("APP_SECRET", "s"),
            ("ENCRYPTION_KEY", &key),
        ])
        .unwrap();
        assert!(s.require_for_serve().is_ok());
    }

    #[test]
    fn forward_sinks_come_from_toml_tables_or_the_environment() {
        let toml = r#"
            DATABASE_URL = "sqlite://x.db"
            [[forward.sinks]]
            name = "hook"
            type = "http"
            events = ["im.message.*"]
            url = "http://127.0.0.1:9/events"
            secret = "0123456789abcdef"
        "#;
        let raw = from_toml(toml, "test.toml").unwrap();
        let mut all = defaults().unwrap();
        all.extend(raw);
        let s = Settings::from_raw(&all).unwrap();
        assert_eq!(s.forward.sinks[0].name, "hook");
        let err = with(&[(
            "FORWARD_SINKS",
            r#"[{"name":"broken","type":"http","events":["*"]}]"#,
        )])
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("FORWARD_SINKS") && err.contains("`broken`"),
            "{err}"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = with(&[
            ("APP_SECRET", "super-secret-value-123"),
            ("ADMIN_TOKEN", "admin-token-value-456"),
        ])
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("super"), "{shown}");
        assert!(shown.contains("supe***"), "{shown}");
        assert!(!shown.contains("admin-"), "{shown}");
    }

    #[test]
    fn an_admin_token_of_sixteen_characters_is_enough() {
        let s = with(&[("ADMIN_TOKEN", "sixteen-chars..!")]).unwrap();
        assert!(s.http.admin_token.is_some());
        assert!(with(&[("ADMIN_TOKEN", "")])
            .unwrap()
            .http
            .admin_token
            .is_none());
    }
}
