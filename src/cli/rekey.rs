//! `lark-service rekey`: re-encrypt every stored token under the current
//! `ENCRYPTION_KEY`, opening old values with `ENCRYPTION_KEY_PREVIOUS`
//! (see [`crate::auth::rekey`] for how it stays safe beside running
//! replicas). Shows its progress like `sync`.
//!
//! Exit codes: 0 when every stored value opens with the current key alone
//! (`ENCRYPTION_KEY_PREVIOUS` can then be removed), 1 when some values
//! cannot be opened (listed, with what to do) or keep appearing under an
//! old key, 2 on a configuration or database error.

use std::sync::Arc;
use std::time::Duration;

use super::progress::ProgressDisplay;
use super::CliError;
use crate::auth::rekey::{rekey, Progress, RekeyError, RekeyOptions, Report, BATCH};
use crate::config::Settings;
use crate::db::connection::{run_migrations, ConnectionManager};

/// How often the progress display is refreshed.
const REFRESH: Duration = Duration::from_millis(200);
/// Unreadable values listed one per line; the rest are counted.
const LISTED: usize = 50;

#[derive(Debug, clap::Args)]
pub struct RekeyArgs {
    /// Values read and rewritten per transaction.
    #[arg(long, default_value_t = BATCH, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub batch: i64,
    /// Drop stored values that no configured key opens, moving the sessions
    /// that held them to reauth_required (their users must authorize
    /// again). Without it such values are only listed.
    #[arg(long)]
    pub forget_unreadable: bool,
}

pub async fn run(args: RekeyArgs) -> Result<(), CliError> {
    crate::telemetry::init("warn");
    let settings = Settings::load()?;
    let vault = settings.vault().ok_or_else(|| {
        CliError::Config(
            "ENCRYPTION_KEY is not set: rekey seals every stored token with it; set it to the new key, and ENCRYPTION_KEY_PREVIOUS to the old one(s)".into(),
        )
    })?;
    let url = settings.database.url.clone();
    let options = RekeyOptions {
        batch: args.batch,
        forget_unreadable: args.forget_unreadable,
    };
    println!(
        "re-encrypting stored tokens under key {} ({} previous key(s) open old values)",
        vault.current_key(),
        settings.encryption_key_previous.len()
    );
    let progress = Arc::new(Progress::default());
    // One connection of its own, on a blocking thread: diesel blocks.
    let mut work = tokio::task::spawn_blocking({
        let progress = progress.clone();
        let url = url.clone();
        move || -> Result<Report, RekeyError> {
            let mut conn = ConnectionManager::new(url).establish()?;
            run_migrations(&mut conn)?;
            rekey(&mut conn, &vault, options, &progress)
        }
    });
    let mut display = ProgressDisplay::new("values");
    let ended = loop {
        tokio::select! {
            ended = &mut work => break ended,
            () = tokio::time::sleep(REFRESH) => show(&mut display, &progress),
        }
    };
    display.finish();
    let report = ended
        .map_err(|e| CliError::Failed(format!("the rekey task stopped: {e}")))?
        .map_err(|e| {
            CliError::Config(format!(
                "{e}; check DATABASE_URL ({url}); nothing is half-written, run rekey again"
            ))
        })?;
    conclude(&report)
}

fn show(display: &mut ProgressDisplay, progress: &Progress) {
    use std::sync::atomic::Ordering::Relaxed;
    display.update(
        progress.done.load(Relaxed),
        progress.total.load(Relaxed),
        &format!(
            "pass {}: {} resealed, {} unreadable",
            progress.pass.load(Relaxed),
            progress.resealed.load(Relaxed),
            progress.unreadable.load(Relaxed)
        ),
    );
}

/// Print the outcome; an incomplete one is exit 1.
fn conclude(report: &Report) -> Result<(), CliError> {
    println!(
        "{} resealed, {} already under the current key, {} pass(es)",
        report.resealed, report.current, report.passes
    );
    if report.forgotten > 0 {
        println!(
            "{} unreadable value(s) dropped; {} session(s) moved to reauth_required",
            report.forgotten, report.sessions_reauth
        );
    }
    for value in report.unreadable.iter().take(LISTED) {
        println!(
            "  cannot open {}:{}: {}",
            value.column, value.row, value.error
        );
    }
    if report.unreadable.len() > LISTED {
        println!("  … and {} more", report.unreadable.len() - LISTED);
    }
    if report.is_complete() {
        println!(
            "every stored token opens with the current key; ENCRYPTION_KEY_PREVIOUS can be removed"
        );
        return Ok(());
    }
    let mut problems = Vec::new();
    if !report.unreadable.is_empty() {
        problems.push(format!(
            "{} stored value(s) open with no configured key: add the key that sealed them to ENCRYPTION_KEY_PREVIOUS and run rekey again, or run `rekey --forget-unreadable` to drop them (those users must authorize again)",
            report.unreadable.len()
        ));
    }
    if report.left > 0 {
        problems.push(format!(
            "{} value(s) were still being written under an old key after {} passes: a replica still seals with it; restart every replica with the new ENCRYPTION_KEY and run rekey again",
            report.left, report.passes
        ));
    }
    Err(CliError::Failed(problems.join("; ")))
}
