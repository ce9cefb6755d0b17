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

use lark_service::auth::vault::{EncryptionKey, Vault};
use lark_service::db::connection::ConnectionManager;
use lark_service::db::{DatabaseUrl, Db};
use lark_service::sim::oauth::SimUser;
use lark_service::sim::{seed, Simulator, SIM_APP_ID};
use serde_json::Value;
use support::{free_port, mib, service_env, wait_until, Report, ServiceProcess};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[actix_rt::main]
async fn main() -> Result<(), BoxError> {
    let users: usize = std::env::var("SYNC_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let database_url = std::env::args()
        .skip(1)
        .find(|a| a.starts_with("postgres://"))
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.path().display()));
    let url = DatabaseUrl::parse(&database_url)?;
    let backend = url.backend().to_string();

    let sim = Simulator::start()?;
    let db = Db::start(lark_service::db::connection::build_pool(&url)?);
    db.migrate().await?;
    let mut conn = ConnectionManager::new(url).establish()?;
    let vault = Vault::new(&EncryptionKey::from_hex(support::ENCRYPTION_KEY_HEX)?);
    let oauth = &sim.state().open_api.oauth;
    let population =
        (0..users).map(|n| SimUser::new(&format!("ou_bench{n:026}"), &format!("User {n}")));
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
    // Shared with each poll's future, which outlives the closure call.
    let last = std::rc::Rc::new(std::cell::RefCell::new(Value::Null));
    wait_until("the sync run to end", Duration::from_secs(1800), || {
        let request = service.admin(reqwest::Method::GET, &format!("/admin/sync/{id}"));
        let last = last.clone();
        async move {
            let Ok(resp) = request.send().await else {
                return false;
            };
            let Ok(view) = resp.json::<Value>().await else {
                return false;
            };
            let done = view["status"] != "running";
            *last.borrow_mut() = view;
            done
        }
    })
    .await?;
    let last = last.take();
    let elapsed = started.elapsed();
    let end = service.usage()?;
    service.stop()?;

    if last["status"] != "finished"
        || last["users_updated"].as_u64() != Some(users.div_ceil(10) as u64)
    {
        return Err(format!("the run did not sync every changed profile: {last}").into());
    }
    Report::new(&format!("sync-{backend}"))
        .set("backend", backend)
        .set("users", users)
        .set("updated", last["users_updated"].clone())
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
