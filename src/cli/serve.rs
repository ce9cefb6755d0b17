//! `lark-service serve`: load the configuration, start everything, run
//! until SIGINT/SIGTERM.

use super::CliError;
use crate::config::Settings;
use crate::startup::Application;

pub async fn run() -> Result<(), CliError> {
    crate::telemetry::init("info");
    let settings = Settings::load()?;
    let app = Application::build(settings).await?;
    tracing::info!(
        port = app.port(),
        "lark-service running; SIGINT or SIGTERM stops it"
    );
    app.run_until_stopped()
        .await
        .map_err(|e| CliError::Failed(format!("HTTP server failed: {e}")))?;
    tracing::info!("stopped");
    Ok(())
}
