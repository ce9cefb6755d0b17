//! `lark-service sync`: run one user-info sync now, in this process, showing
//! its progress, and print its counts. It records a `sync_runs` row like any
//! run (trigger `admin`), and on PostgreSQL it takes the same advisory lock,
//! so it never runs beside a replica's scheduled run.

use std::sync::Arc;
use std::time::Duration;

use super::progress::ProgressDisplay;
use super::CliError;
use crate::config::Settings;
use crate::startup::{sync_runner, Core};
use crate::sync::run_view::{RunStatus, Trigger};
use crate::sync::runner::Progress;

/// How often the progress display is refreshed.
const REFRESH: Duration = Duration::from_millis(200);

pub async fn run() -> Result<(), CliError> {
    crate::telemetry::init("warn");
    let settings = Settings::load()?;
    let vault = settings.require_for_serve()?.vault();
    let core = Core::start(&settings).await?;
    let runner = sync_runner(&settings, &core.db, &core.lark, &vault, &core.refresher);
    let id = runner
        .begin(Trigger::Admin)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    println!("user-info sync run {id} started");
    let progress = Arc::new(Progress::default());
    let mut run = actix_rt::spawn({
        let progress = progress.clone();
        async move { runner.run(id, progress).await }
    });
    let mut display = ProgressDisplay::new("users");
    let status = loop {
        tokio::select! {
            ended = &mut run => break ended.map_err(|e| CliError::Failed(format!("the sync run stopped: {e}")))?,
            () = tokio::time::sleep(REFRESH) => {
                let c = progress.counts();
                display.update(
                    u64::try_from(c.users_done).unwrap_or(0),
                    u64::try_from(c.users_total).unwrap_or(0),
                    &format!("{} updated, {} failed", c.users_updated, c.users_failed),
                );
            }
        }
    };
    display.finish();
    let c = progress.counts();
    let summary = format!(
        "{}/{} users, {} updated, {} failed",
        c.users_done, c.users_total, c.users_updated, c.users_failed
    );
    match status {
        RunStatus::Failed => Err(CliError::Failed(format!(
            "sync run {id} failed after {summary}; GET /admin/sync/{id} shows the error"
        ))),
        RunStatus::Skipped => {
            println!("sync run {id} skipped: another replica is running the sync");
            Ok(())
        }
        RunStatus::Running | RunStatus::Finished => {
            println!("sync run {id} finished: {summary}");
            Ok(())
        }
    }
}
