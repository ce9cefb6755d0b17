//! The command line. `main.rs` parses; this module runs the chosen command
//! and turns its error into an exit code and a message that says what to do.
//!
//! Exit codes: 0 success, 2 usage or configuration error, 1 anything else
//! (the `auth` and `url` commands keep the Auth Guard's own contract).

pub mod ai;
pub mod auth;
pub mod demo;
pub mod migrate;
pub mod progress;
pub mod rekey;
pub mod send_auth_card;
pub mod serve;
pub mod sessions;
pub mod sync;
pub mod url;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::ConfigError;
use crate::device::url_decode::UrlCommand;
use crate::device::AuthCommand;
use crate::startup::StartupError;

#[derive(Debug, Parser)]
#[command(
    name = "lark-service",
    version,
    about = "Keeps a Feishu/Lark app connected, authorizes its users and calls AI APIs as them."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the supervised service.
    Serve,
    /// Walk the whole quickstart against a built-in simulated platform (no
    /// credentials, no database to set up).
    Demo(demo::DemoArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Re-encrypt every stored token under the current ENCRYPTION_KEY
    /// (old values open with ENCRYPTION_KEY_PREVIOUS); resumable, safe
    /// beside running replicas.
    Rekey(rekey::RekeyArgs),
    /// Create an authorization session for a user and send them the card.
    SendAuthCard(send_auth_card::SendAuthCardArgs),
    /// Ask the AI (the Aily app in AILY_APP_ID) as a user, with their token.
    Ai(ai::AiArgs),
    /// List authorization sessions (never their tokens).
    Sessions(sessions::SessionsArgs),
    /// Run one user-info sync now and show its progress.
    Sync,
    /// Device-code login to a Feishu Project / Meegle host (JSON output and
    /// exit codes of the Auth Guard contract).
    Auth {
        #[command(subcommand)]
        cmd: AuthCommand,
    },
    /// Decode a Feishu Project / Meegle URL locally (the Auth Guard's URL
    /// trigger; the same JSON and exit codes as `meegle url decode`).
    Url {
        #[command(subcommand)]
        cmd: UrlCommand,
    },
}

/// A command's failure, classified for the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad configuration or usage: exit 2.
    #[error("{0}")]
    Config(String),
    /// Anything else: exit 1.
    #[error("{0}")]
    Failed(String),
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e.to_string())
    }
}

impl From<StartupError> for CliError {
    fn from(e: StartupError) -> Self {
        match e {
            StartupError::Config(c) => c.into(),
            StartupError::Bind { .. } => Self::Config(e.to_string()),
            other => Self::Failed(other.to_string()),
        }
    }
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    actix_rt::System::new().block_on(async move {
        match cli.command {
            Command::Serve => exit_code(serve::run().await),
            Command::Demo(args) => exit_code(demo::run(args).await),
            Command::Migrate => exit_code(migrate::run().await),
            Command::Rekey(args) => exit_code(rekey::run(args).await),
            Command::Auth { cmd } => auth::run(cmd).await,
            Command::Url { cmd } => url::run(&cmd),
            Command::SendAuthCard(args) => exit_code(send_auth_card::run(args).await),
            Command::Sessions(args) => exit_code(sessions::run(args).await),
            Command::Ai(args) => exit_code(ai::run(args).await),
            Command::Sync => exit_code(sync::run().await),
        }
    })
}

/// Report a failure and classify it.
fn exit_code(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                CliError::Config(_) => ExitCode::from(2),
                CliError::Failed(_) => ExitCode::from(1),
            }
        }
    }
}
