//! `lark-service auth status|login|logout`: the device-code login of
//! [`crate::device`] wired to the real world (the database store, the
//! process environment, the system clock, stdout and stderr).
//!
//! These commands keep the Auth Guard's contract, not the 0/2/1 convention
//! of the others: the exit code is the one [`device::run`] returns, and a
//! set-up failure is the same stderr error envelope with exit 1.
//!
//! Only `DATABASE_URL` and `ENCRYPTION_KEY` of the configuration matter
//! here. Without the key, `auth status` still reports a profile that holds
//! no token and `auth logout` still works; `auth login` refuses to start,
//! because the token it would obtain could not be stored.

use std::process::ExitCode;

use crate::config::Settings;
use crate::device::db_store::key_missing;
use crate::device::output::{self, Format};
use crate::device::{
    self, AuthCommand, AuthContext, DbDeviceStore, DeviceClient, DeviceError, EnvOverrides,
    StoreError, SystemClock,
};

/// Run one `auth` command; the exit code follows the contract.
pub async fn run(command: AuthCommand) -> ExitCode {
    // Logs only when RUST_LOG asks for them: stderr carries the envelope.
    crate::telemetry::init("off");
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let code = match prepare(&command) {
        Ok((client, store)) => {
            let cx = AuthContext {
                client: &client,
                store: &store,
                env: &EnvOverrides::from_env(),
                clock: &SystemClock,
            };
            device::run(command, &cx, &mut out, &mut err).await
        }
        Err(e) => {
            output::emit(&mut err, output::error_envelope(&e), format_of(&command));
            1
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The HTTP client and the store, or why the command cannot run.
fn prepare(command: &AuthCommand) -> Result<(DeviceClient, DbDeviceStore), DeviceError> {
    let settings = Settings::load().map_err(|e| StoreError::msg(e.to_string()))?;
    let vault = settings.vault();
    if vault.is_none() && matches!(command, AuthCommand::Login(_)) {
        return Err(key_missing("`auth login` stores the token encrypted with it").into());
    }
    let store = DbDeviceStore::open(&settings.database.url, vault)?;
    Ok((DeviceClient::new()?, store))
}

/// The `--format` asked for, for errors raised before [`device::run`]
/// parses it; a bad value falls back to JSON, as `run` reports it.
fn format_of(command: &AuthCommand) -> Format {
    let arg = match command {
        AuthCommand::Status(f) | AuthCommand::Logout(f) => f,
        AuthCommand::Login(args) => &args.format,
    };
    arg.format
        .as_deref()
        .and_then(|f| f.parse().ok())
        .unwrap_or_default()
}
