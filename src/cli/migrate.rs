//! `lark-service migrate`: apply pending migrations to `DATABASE_URL` and exit.

use super::CliError;
use crate::config::Settings;
use crate::db::connection::{run_migrations, ConnectionManager};

pub async fn run() -> Result<(), CliError> {
    crate::telemetry::init("info");
    let settings = Settings::load()?;
    let url = settings.database.url.clone();
    // One connection, no pool or actors: this command does nothing else.
    let applied = tokio::task::spawn_blocking(move || {
        let mut conn = ConnectionManager::new(url).establish()?;
        run_migrations(&mut conn)
    })
    .await
    .map_err(|e| CliError::Failed(format!("migration task failed: {e}")))?
    .map_err(|e| {
        CliError::Failed(format!(
            "{e}; check DATABASE_URL ({})",
            settings.database.url
        ))
    })?;
    println!(
        "applied {applied} migration(s) to {}",
        settings.database.url
    );
    Ok(())
}
