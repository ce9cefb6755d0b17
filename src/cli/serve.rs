//! `lark-service serve`: load the configuration, start everything, run
//! until SIGINT/SIGTERM.

use tokio::signal::unix::{signal, SignalKind};

use super::CliError;
use crate::config::Settings;
use crate::startup::Application;

pub async fn run() -> Result<(), CliError> {
    crate::telemetry::init("info");
    // Register the handlers before anything starts, so a signal that comes
    // during start-up is not fatal to the process.
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| CliError::Failed(format!("cannot handle SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| CliError::Failed(format!("cannot handle SIGINT: {e}")))?;
    let settings = Settings::load()?;
    let app = Application::build(settings).await?;
    tracing::info!(
        port = app.port(),
        "lark-service running; SIGINT or SIGTERM stops it"
    );
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    };
    app.run_until(shutdown)
        .await
        .map_err(|e| CliError::Failed(format!("HTTP server failed: {e}")))?;
    tracing::info!("stopped");
    Ok(())
}
