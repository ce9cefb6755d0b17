//! User-info sync at scale: N completed sessions (100,000 by default;
//! `SYNC_BENCH_USERS` overrides) synced by `lark-service serve` against the
//! simulated platform, one profile in ten changed since it was stored.
//!
//! Reports the run's wall time, users per second, the service's CPU time and
//! its idle and peak RSS (the service is its own process; the simulator's
//! directory of N users lives in this one and is not counted).
//!
//! `cargo bench --bench sync` (add `-- postgres://…` to run it on PostgreSQL).

mod support;

use std::time::{Duration, Instant};

use lark_service::cli::progress::ProgressDisplay;
use lark_service::sim::{seed, SIM_APP_ID};
use serde_json::Value;
use support::{free_port, mib, service_env, Report, ServiceProcess, Setup};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[actix_rt::main]
async fn main() -> Result<(), BoxError> {
    let setup = Setup::new("SYNC_BENCH_USERS").await?;
    let population = setup.population();
    let Setup {
        dir,
        database_url,
        backend,
        sim,
        db: _db,
        mut conn,
        vault,
        users,
    } = setup;
    let oauth = &sim.state().open_api.oauth;
    seed::completed_sessions(
        &mut conn,
        oauth,
        &vault,
        SIM_APP_ID,
        population,
        lark_service::db::now(),
    )?;
    drop(conn);
    for n in (0..users).step_by(10) {
        oauth.update_user(&format!("ou_bench{n:026}"), |u| {
            u.name = format!("Renamed {n}")
        });
    }

    let port = free_port()?;
    let service =
        ServiceProcess::start(&service_env(&sim, &database_url, port), port, dir.path()).await?;
    let idle = service.usage()?;
    let started = Instant::now();
    let run: Value = service
        .admin(reqwest::Method::POST, "/admin/sync")
        .json(&serde_json::json!({}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = run["run_id"].as_i64().ok_or("no run id")?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut display = ProgressDisplay::new("users");
    let last = loop {
        let view: Value = service
            .admin(reqwest::Method::GET, &format!("/admin/sync/{id}"))
            .send()
            .await?
            .json()
            .await?;
        display.update(
            view["done"].as_u64().unwrap_or(0),
            view["total"].as_u64().unwrap_or(0),
            &format!("{} updated", view["updated"]),
        );
        if view["status"] != "running" {
            display.finish();
            break view;
        }
        if Instant::now() > deadline {
            return Err(format!("the sync run did not end: {view}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let elapsed = started.elapsed();
    let end = service.usage()?;
    service.stop()?;

    if last["status"] != "finished" || last["updated"].as_u64() != Some(users.div_ceil(10) as u64) {
        return Err(format!("the run did not sync every changed profile: {last}").into());
    }
    Report::new(&format!("sync-{backend}"))
        .set("backend", backend)
        .set("users", users)
        .set("updated", last["updated"].clone())
        .set("seconds", (elapsed.as_secs_f64() * 100.0).round() / 100.0)
        .set(
            "users_per_second",
            (users as f64 / elapsed.as_secs_f64()).round(),
        )
        .set(
            "service_cpu_seconds",
            ((end.cpu - idle.cpu).as_secs_f64() * 100.0).round() / 100.0,
        )
        .set("idle_rss_mib", mib(idle.rss_kib))
        .set("peak_rss_mib", mib(end.peak_rss_kib))
        .emit()?;
    Ok(())
}
