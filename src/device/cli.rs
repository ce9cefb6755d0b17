//! `lark-service auth status|login|logout`: the device-code login with the
//! flags and JSON output the Auth Guard contract fixes.
//!
//! Options that the contract checks itself are optional strings here and
//! validated in [`run`], because clap reports misuse with its own text and
//! exit code 2, while the contract wants the JSON envelope with
//! `INVALID_OPTION` / `MISSING_OPTION` and exit code 1.

use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};
use tracing::warn;

use super::clock::Clock;
use super::device_auth::PollOutcome;
use super::env::EnvOverrides;
use super::error::DeviceError;
use super::host::DeviceHost;
use super::login::{self, PollPlan};
use super::output::{self, Format};
use super::status;
use super::store::DeviceStore;
use super::wire::DeviceClient;

/// `--interval` when not given, in seconds.
pub const DEFAULT_INTERVAL: u64 = 5;
/// `--expires-in` when not given, in seconds.
pub const DEFAULT_EXPIRES_IN: u64 = 600;

/// `lark-service auth …`.
#[derive(Debug, Clone, Subcommand)]
pub enum AuthCommand {
    /// Check the stored (or MEEGLE_USER_ACCESS_TOKEN) token against the server.
    /// Exit 0 authenticated, 1 log in again, 2 server unreachable.
    Status(FormatArg),
    /// Log in with the OAuth device-code flow, in two phases.
    Login(LoginArgs),
    /// Remove the stored token of the current profile (its host is kept).
    Logout(FormatArg),
}

/// `--format json|ndjson` (json when absent).
#[derive(Debug, Clone, Default, Args)]
pub struct FormatArg {
    #[arg(long, value_name = "json|ndjson")]
    pub format: Option<String>,
}

/// `auth login` flags.
#[derive(Debug, Clone, Default, Args)]
pub struct LoginArgs {
    /// Use the device-code flow (the only one offered).
    #[arg(long)]
    pub device_code: bool,
    /// `init` (get a code to show the user) or `poll` (wait for approval).
    #[arg(long, value_name = "init|poll")]
    pub phase: Option<String>,
    /// Host to log in to, e.g. project.feishu.cn; saved to the profile.
    #[arg(long)]
    pub host: Option<String>,
    /// Poll once and print the status instead of blocking.
    #[arg(long)]
    pub once: bool,
    /// The `device_code` printed by `--phase init`.
    #[arg(long, value_name = "D")]
    pub device_code_value: Option<String>,
    /// The `client_id` printed by `--phase init`.
    #[arg(long, value_name = "C")]
    pub client_id: Option<String>,
    /// Seconds between blocking polls (at least 5).
    #[arg(long, value_name = "N")]
    pub interval: Option<String>,
    /// Seconds before the blocking poll gives up.
    #[arg(long, value_name = "N")]
    pub expires_in: Option<String>,
    #[command(flatten)]
    pub format: FormatArg,
}

/// What the commands run against; tests substitute every part.
pub struct AuthContext<'a> {
    pub client: &'a DeviceClient,
    pub store: &'a dyn DeviceStore,
    pub env: &'a EnvOverrides,
    pub clock: &'a dyn Clock,
}

/// Run `command`, writing results to `out` and errors to `err`; returns
/// the exit code.
pub async fn run(
    command: AuthCommand,
    cx: &AuthContext<'_>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let raw_format = match &command {
        AuthCommand::Status(f) | AuthCommand::Logout(f) => f,
        AuthCommand::Login(args) => &args.format,
    };
    let format = match raw_format.format.as_deref().map(str::parse).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => return fail(err, &e, Format::Json),
    };
    let result = match command {
        AuthCommand::Status(_) => match status::status(cx.client, cx.store, cx.env, cx.clock).await
        {
            Ok(report) => {
                output::emit(out, report.to_json(), format);
                return report.exit_code();
            }
            Err(e) => Err(e),
        },
        AuthCommand::Login(args) => login(&args, cx).await,
        AuthCommand::Logout(_) => logout(cx),
    };
    match result {
        Ok(value) => {
            output::emit(out, value, format);
            0
        }
        Err(e) => fail(err, &e, format),
    }
}

fn fail(err: &mut dyn Write, error: &DeviceError, format: Format) -> i32 {
    warn!(code = error.code(), "{error}");
    output::emit(err, output::error_envelope(error), format);
    1
}

fn logout(cx: &AuthContext<'_>) -> Result<serde_json::Value, DeviceError> {
    let profile = cx.store.current_profile()?;
    cx.store.delete_token(&profile)?;
    Ok(output::logout_ok())
}

async fn login(args: &LoginArgs, cx: &AuthContext<'_>) -> Result<serde_json::Value, DeviceError> {
    let phase = match args.phase.as_deref() {
        None if args.device_code => {
            return Err(DeviceError::MissingOption(
                "--device-code needs --phase init (get a code) or --phase poll (wait for approval)"
                    .into(),
            ))
        }
        None => {
            return Err(DeviceError::InvalidOption(
                "only the device-code login is available: use --device-code --phase init".into(),
            ))
        }
        Some(_) if !args.device_code => {
            return Err(DeviceError::InvalidOption(
                "--phase is only available in --device-code mode".into(),
            ))
        }
        Some(p) => p,
    };
    match phase {
        "init" => init(args, cx).await,
        "poll" => poll(args, cx).await,
        other => Err(DeviceError::InvalidOption(format!(
            "unknown --phase `{other}`: use init or poll"
        ))),
    }
}

/// `--host`, else `MEEGLE_HOST`, else the profile's saved host.
fn resolve_host(
    flag: Option<&str>,
    cx: &AuthContext<'_>,
    profile: &str,
) -> Result<DeviceHost, DeviceError> {
    if let Some(raw) = flag.or(cx.env.host.as_deref()) {
        return DeviceHost::parse(raw);
    }
    match cx.store.host(profile)? {
        Some(saved) => DeviceHost::parse(&saved),
        None => Err(DeviceError::HostNotConfigured),
    }
}

async fn init(args: &LoginArgs, cx: &AuthContext<'_>) -> Result<serde_json::Value, DeviceError> {
    let profile = cx.store.current_profile()?;
    let host = resolve_host(args.host.as_deref(), cx, &profile)?;
    let (code, client_id) = login::init(cx.client, &host).await?;
    // Saved only now, so a host that turned out to be wrong is not kept.
    cx.store.set_host(&profile, host.as_str())?;
    Ok(output::init_object(&code, &client_id))
}

async fn poll(args: &LoginArgs, cx: &AuthContext<'_>) -> Result<serde_json::Value, DeviceError> {
    let (Some(device_code), Some(client_id)) = (
        args.device_code_value.as_deref().filter(|v| !v.is_empty()),
        args.client_id.as_deref().filter(|v| !v.is_empty()),
    ) else {
        return Err(DeviceError::MissingOption(
            "--phase poll requires --device-code-value and --client-id".into(),
        ));
    };
    let plan = PollPlan {
        interval: seconds("--interval", args.interval.as_deref(), DEFAULT_INTERVAL)?,
        expires_in: seconds(
            "--expires-in",
            args.expires_in.as_deref(),
            DEFAULT_EXPIRES_IN,
        )?,
    };
    let profile = cx.store.current_profile()?;
    let host = resolve_host(args.host.as_deref(), cx, &profile)?;
    let grant = if args.once {
        match login::poll_once(cx.client, &host, device_code, client_id).await? {
            PollOutcome::Granted(grant) => grant,
            other => return Ok(output::poll_status(other.status())),
        }
    } else {
        login::poll_until_granted(cx.client, cx.clock, &host, device_code, client_id, &plan).await?
    };
    let token = login::stored_token(&grant, client_id, &host, cx.clock.now_ms());
    cx.store.save_token(&profile, &token)?;
    Ok(output::login_ok())
}

/// A whole number of seconds; zero or negative means the default, as in the
/// reference client, but text that is not a number is misuse.
fn seconds(flag: &str, raw: Option<&str>, default: u64) -> Result<Duration, DeviceError> {
    let Some(raw) = raw else {
        return Ok(Duration::from_secs(default));
    };
    let value: i64 = raw.trim().parse().map_err(|_| {
        DeviceError::InvalidOption(format!(
            "{flag} must be a whole number of seconds, not `{raw}`"
        ))
    })?;
    Ok(Duration::from_secs(if value > 0 {
        value.unsigned_abs()
    } else {
        default
    }))
}
