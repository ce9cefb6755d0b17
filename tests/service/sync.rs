//! The user-info sync against the simulator, on each backend: changed
//! profiles are written and unchanged rows are not; rate limits slow a run
//! down without failing it; one run at a time per process, and one per
//! PostgreSQL database across services.

use std::time::Duration;

use lark_service::config::{defaults, overlay, Settings};
use lark_service::db::models::sync_run;
use lark_service::sim::oauth::SimUser;
use lark_service::sim::Fault;
use lark_service::sync::runner::SKIPPED;
use serde_json::{json, Value};

use crate::support::binary::lark_service_against;
use crate::support::replica::Replica;
use crate::support::{
    backends, in_seconds, postgres_only, seed_completed, seed_refreshable, settings_for, sim_user,
    spawn_app, spawn_app_with, wait_for, TestApp, TestDb, REFRESH_PATH,
};

const RUN_TIMEOUT: Duration = Duration::from_secs(30);

fn user(n: usize) -> SimUser {
    sim_user("sync", n, &format!("User {n}"))
}

async fn trigger(app: &TestApp) -> i64 {
    let resp = app.admin_post("/admin/sync", json!({})).await;
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.expect("JSON");
    body["run_id"].as_i64().expect("a run id")
}

/// Wait for run `id` to end; its final view.
async fn finished(app: &TestApp, id: i64) -> Value {
    finished_within(app, id, RUN_TIMEOUT).await
}

async fn finished_within(app: &TestApp, id: i64, timeout: Duration) -> Value {
    wait_for("the sync run to end", timeout, || async {
        let run: Value = app
            .admin_get(&format!("/admin/sync/{id}"))
            .await
            .json()
            .await
            .ok()?;
        (run["status"] != "running").then_some(run)
    })
    .await
}

#[actix_rt::test]
async fn a_changed_profile_is_synced_an_unchanged_one_is_not_rewritten_and_a_refused_token_needs_reauth(
) {
    for db in backends() {
        let backend = db.backend();
        let app = spawn_app(db).await;
        let (alice, bob, carol) = (user(1), user(2), user(3));
        seed_completed(&app, vec![alice.clone(), bob.clone(), carol.clone()]);
        let bob_before = app.session_of(&bob.open_id).await;
        let alice_before = app.session_of(&alice.open_id).await;

        let oauth = &app.sim.state().open_api.oauth;
        assert!(oauth.update_user(&alice.open_id, |u| {
            u.name = "Alice Renamed".into();
            u.avatar_url = "https://avatars.example.com/new.png".into();
        }));
        oauth.revoke_access_tokens(&carol.open_id);

        let id = trigger(&app).await;
        let run = finished(&app, id).await;
        assert_eq!(run["status"], "finished", "{backend}: {run}");
        assert_eq!(run["trigger"], "admin");
        assert_eq!(
            (&run["total"], &run["done"], &run["updated"], &run["failed"]),
            (&json!(3), &json!(3), &json!(1), &json!(1)),
            "{backend}: {run}"
        );
        assert_eq!(run["progress"], 1.0);
        assert!(run["finished_at"].is_string());

        let alice_after = app.session_of(&alice.open_id).await;
        assert_eq!(alice_after.user_name.as_deref(), Some("Alice Renamed"));
        assert_eq!(
            alice_after.avatar_url.as_deref(),
            Some("https://avatars.example.com/new.png")
        );
        assert!(
            alice_after.updated_at > alice_before.updated_at,
            "{backend}"
        );
        assert!(alice_after.last_synced_at > alice_before.last_synced_at);

        let bob_after = app.session_of(&bob.open_id).await;
        assert_eq!(bob_after.updated_at, bob_before.updated_at, "{backend}");
        assert_eq!(bob_after.last_synced_at, bob_before.last_synced_at);
        assert_eq!(bob_after.user_name, bob_before.user_name);

        let carol_after = app.session_of(&carol.open_id).await;
        assert_eq!(carol_after.state, "reauth_required", "{backend}");
        assert!(carol_after
            .error
            .as_deref()
            .is_some_and(|e| e.contains("authorize again")));

        let metrics = app.metrics().await;
        assert!(
            metrics.contains("lark_user_sync_runs_total{outcome=\"ok\"}"),
            "{metrics}"
        );
        assert!(metrics.contains("lark_user_sync_progress_ratio"));
    }
}

#[actix_rt::test]
async fn a_sync_over_a_thousand_sessions_whose_access_tokens_expired_refreshes_each_once_and_condemns_none(
) {
    const USERS: usize = 1_000;
    for db in backends() {
        let backend = db.backend();
        let app = spawn_app(db).await;
        let users: Vec<SimUser> = (1..=USERS).map(user).collect();
        // The database believes every access token good for two hours (so
        // no refresh tick touches them); the platform has expired them all
        // since: each profile call is refused with 99991677.
        seed_refreshable(&app, users.clone(), in_seconds(2 * 3600));
        let oauth = &app.sim.state().open_api.oauth;
        for u in &users {
            oauth.expire_access_tokens(&u.open_id);
        }

        let id = trigger(&app).await;
        let run = finished_within(&app, id, Duration::from_secs(120)).await;
        assert_eq!(run["status"], "finished", "{backend}: {run}");
        assert_eq!(
            (&run["done"], &run["failed"]),
            (&json!(USERS), &json!(0)),
            "{backend}: {run}"
        );

        let states = app
            .app_db
            .read(lark_service::db::models::user_auth_session::count_by_state)
            .await
            .expect("read");
        assert_eq!(
            states,
            vec![("completed".to_owned(), USERS as i64)],
            "{backend}: no session moved to reauth_required"
        );
        assert_eq!(oauth.refreshes_granted(), USERS, "{backend}");
        assert_eq!(oauth.reused_refresh_tokens(), Vec::<String>::new());
        assert_eq!(
            app.sim.recorder().requests_to(REFRESH_PATH).len(),
            USERS,
            "{backend}: each session refreshed once"
        );
        // Every user's profile call was made twice: refused, then with the
        // refreshed token.
        assert_eq!(
            app.sim.recorder().requests_to("/authen/v1/user_info").len(),
            2 * USERS,
            "{backend}"
        );
    }
}

#[actix_rt::test]
async fn a_rate_limited_run_waits_out_the_reset_and_still_finishes() {
    for db in backends() {
        let backend = db.backend();
        let app = spawn_app(db).await;
        seed_completed(&app, (1..=5).map(user).collect());
        app.sim
            .recorder()
            .inject("user_info", Fault::RateLimit { reset_seconds: 1 }, 3);

        let id = trigger(&app).await;
        let run = finished(&app, id).await;
        assert_eq!(run["status"], "finished", "{backend}: {run}");
        assert_eq!(
            (&run["done"], &run["failed"]),
            (&json!(5), &json!(0)),
            "{run}"
        );

        // Three refusals, then every user once more: and the retries came
        // only after the reset the platform asked for.
        let calls = app.sim.recorder().requests_to("/authen/v1/user_info");
        assert_eq!(calls.len(), 8, "{backend}");
        let first = calls.iter().map(|r| r.at).min().expect("calls");
        let last = calls.iter().map(|r| r.at).max().expect("calls");
        assert!(
            last.duration_since(first) >= Duration::from_secs(1),
            "{backend}: the run did not wait for the rate-limit reset"
        );
    }
}

#[actix_rt::test]
async fn a_second_trigger_while_one_runs_gets_409_naming_it() {
    for db in backends() {
        let backend = db.backend();
        let app = spawn_app(db).await;
        seed_completed(&app, (1..=3).map(user).collect());
        // Slow profile fetches keep the first run going while the second
        // trigger arrives.
        app.sim
            .recorder()
            .inject("user_info", Fault::Delay(Duration::from_millis(700)), 3);

        let id = trigger(&app).await;
        let second = app.admin_post("/admin/sync", json!({})).await;
        assert_eq!(second.status(), 409, "{backend}");
        let body: Value = second.json().await.unwrap();
        assert_eq!(body["error"]["code"], "sync_running");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("run {id}"))),
            "{body}"
        );

        assert_eq!(finished(&app, id).await["status"], "finished");
        // Once it is over, the next one starts.
        let next = trigger(&app).await;
        assert_ne!(next, id);
        finished(&app, next).await;
    }
}

#[actix_rt::test]
async fn two_services_on_one_postgresql_database_run_the_sync_once() {
    let Some(db) = postgres_only("two_services_on_one_postgresql_database_run_the_sync_once")
    else {
        return;
    };
    let app = spawn_app(db).await;
    seed_completed(&app, (1..=4).map(user).collect());
    // Slow profile fetches keep the first run going while the other
    // replica's trigger arrives.
    app.sim
        .recorder()
        .inject("user_info", Fault::Delay(Duration::from_millis(500)), 4);

    // A second replica: same database, same platform.
    let other = Replica::start(settings_for(&app.sim, &app.db, &[]));
    let started = |resp: reqwest::Response| async move {
        assert_eq!(resp.status(), 202);
        resp.json::<Value>().await.unwrap()["run_id"]
            .as_i64()
            .unwrap()
    };
    let (a, b) = futures_util::join!(
        async { started(app.admin_post("/admin/sync", json!({})).await).await },
        async { started(other.admin_post("/admin/sync", json!({})).await).await },
    );
    assert_ne!(a, b);

    let mut statuses = Vec::new();
    for id in [a, b] {
        let run = finished(&app, id).await;
        statuses.push((run["status"].as_str().unwrap().to_owned(), run));
    }
    statuses.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(statuses[0].0, "finished", "{statuses:?}");
    assert_eq!(statuses[1].0, "skipped", "{statuses:?}");
    assert_eq!(statuses[1].1["error"], SKIPPED);
    assert_eq!(statuses[0].1["done"], 4);
    assert_eq!(
        app.sim.recorder().requests_to("/authen/v1/user_info").len(),
        4,
        "the sync ran once"
    );
    other.kill().await;
}

#[actix_rt::test]
async fn the_schedule_starts_runs() {
    let app = spawn_app_with(
        TestDb::sqlite(),
        &[
            ("USER_INFO_SYNC_ENABLED", "true"),
            ("USER_INFO_SYNC_SCHEDULE", "* * * * * *"),
        ],
    )
    .await;
    seed_completed(&app, vec![user(1)]);
    let run = wait_for("a scheduled run", RUN_TIMEOUT, || async {
        let row = app
            .app_db
            .read(|c| sync_run::find(c, 1))
            .await
            .ok()
            .flatten()?;
        row.finished_at.is_some().then_some(row)
    })
    .await;
    assert_eq!(run.trigger, "cron");
    assert_eq!(run.status, "finished");
}

#[test]
fn schedules_parse_and_a_bad_one_names_its_variable() {
    let parse = |schedule: &str| {
        let mut raw = defaults().expect("defaults");
        overlay(
            &mut raw,
            [("USER_INFO_SYNC_SCHEDULE".to_owned(), schedule.to_owned())],
        );
        Settings::from_raw(&raw)
    };
    for good in ["0 2 * * *", "*/5 * * * * *"] {
        let settings = parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        assert_eq!(settings.sync.schedule.to_string(), good);
    }
    let err = parse("bad").expect_err("`bad` is refused").to_string();
    assert!(err.starts_with("USER_INFO_SYNC_SCHEDULE"), "{err}");
    assert!(err.contains("`bad`"), "{err}");
}

#[actix_rt::test]
async fn the_sync_command_runs_a_sync_and_prints_its_counts() {
    for db in backends() {
        let backend = db.backend();
        let app = spawn_app(db).await;
        let (alice, bob) = (user(1), user(2));
        seed_completed(&app, vec![alice.clone(), bob]);
        assert!(app
            .sim
            .state()
            .open_api
            .oauth
            .update_user(&alice.open_id, |u| u.name = "Alice From The CLI".into()));

        let mut sync = lark_service_against(&app.sim, app.db.url());
        sync.arg("sync");
        let out = tokio::process::Command::from(sync)
            .output()
            .await
            .expect("the binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{backend}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("user-info sync run 1 started"), "{stdout}");
        assert!(
            stdout.contains("sync run 1 finished: 2/2 users, 1 updated, 0 failed"),
            "{backend}: {stdout}"
        );
        // Not a terminal: plain lines, no bar drawing.
        assert!(!stdout.contains('\u{1b}'), "{stdout}");
        assert_eq!(
            app.session_of(&alice.open_id).await.user_name.as_deref(),
            Some("Alice From The CLI")
        );
    }
}
