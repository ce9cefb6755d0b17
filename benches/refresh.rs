//! Token refresh at scale: N completed sessions (100,000 by default;
//! `REFRESH_BENCH_USERS` overrides), every access token due, refreshed by
//! `lark-service serve` against the simulated platform.
//!
//! Reports the wall time from the service's start until every session holds
//! a new pair, refreshes per second, the service's CPU time and its peak RSS
//! (the service is its own process; the simulator, with its 2N tokens, lives
//! in this one and is not counted). Fails if any refresh token was presented
//! twice or any session was left unrefreshed.
//!
//! `cargo bench --bench refresh` (add `-- postgres://…` to run it on PostgreSQL).

mod support;

use std::time::{Duration, Instant};

use lark_service::db::models::user_auth_session;
use lark_service::sim::{seed, SIM_APP_ID};
use support::{free_port, mib, service_env, wait_until, Report, ServiceProcess, Setup};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[actix_rt::main]
async fn main() -> Result<(), BoxError> {
    let setup = Setup::new("REFRESH_BENCH_USERS").await?;
    let population = setup.population();
    let Setup {
        dir,
        database_url,
        backend,
        sim,
        db,
        mut conn,
        vault,
        users,
    } = setup;
    let oauth = &sim.state().open_api.oauth;
    let now = lark_service::db::now();
    seed::refreshable_sessions(
        &mut conn,
        oauth,
        &vault,
        SIM_APP_ID,
        population,
        now,
        now + chrono::Duration::seconds(60),
    )?;
    drop(conn);

    let port = free_port()?;
    let mut env = service_env(&sim, &database_url, port);
    env.push(("TOKEN_REFRESH_INTERVAL_SECONDS".into(), "1".into()));
    let started = Instant::now();
    let service = ServiceProcess::start(&env, port, dir.path()).await?;
    wait_until(
        "every session to be refreshed",
        Duration::from_secs(1800),
        || async { oauth.refreshes_granted() >= users },
    )
    .await?;
    let elapsed = started.elapsed();
    // The last write-backs follow the platform's answers by a moment.
    let fresh_after = now + chrono::Duration::seconds(3600);
    wait_until(
        "every new pair to be stored",
        Duration::from_secs(60),
        || {
            let db = db.clone();
            async move {
                db.read(move |c| user_auth_session::count_expiring(c, fresh_after))
                    .await
                    .is_ok_and(|due| due == 0)
            }
        },
    )
    .await?;
    let end = service.usage()?;
    service.stop()?;

    let reused = oauth.reused_refresh_tokens().len();
    if reused > 0 || oauth.refreshes_granted() != users {
        return Err(format!(
            "{reused} refresh tokens presented twice; {} of {users} refreshed",
            oauth.refreshes_granted()
        )
        .into());
    }
    Report::new(&format!("refresh-{backend}"))
        .set("backend", backend)
        .set("sessions", users)
        .set("seconds", (elapsed.as_secs_f64() * 100.0).round() / 100.0)
        .set(
            "refreshes_per_second",
            (users as f64 / elapsed.as_secs_f64()).round(),
        )
        .set(
            "service_cpu_seconds",
            (end.cpu.as_secs_f64() * 100.0).round() / 100.0,
        )
        .set("peak_rss_mib", mib(end.peak_rss_kib))
        .set("refresh_tokens_reused", reused)
        .emit()?;
    Ok(())
}
