//! Health, readiness, metrics and the admin guard.

use std::time::Duration;

use serde_json::Value;

use crate::support::{metric_value, spawn_app, spawn_app_with, wait_for, TestDb, ADMIN_TOKEN};

#[actix_rt::test]
async fn health_ready_and_metrics_answer() {
    let app = spawn_app(TestDb::sqlite()).await;

    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);

    let body = wait_for(
        "the long connection to be ready",
        Duration::from_secs(5),
        || async {
            let body: Value = app.get("/readyz").await.json().await.ok()?;
            (body["events"] == "websocket").then_some(body)
        },
    )
    .await;
    assert_eq!(body["database"], "ok");

    let metrics = app.metrics().await;
    for family in [
        "lark_actor_restarts_total",
        "lark_http_requests_total",
        "lark_ws_connected",
        "lark_events_total",
        "lark_event_handle_seconds_bucket",
        "lark_auth_sessions",
        "lark_token_refresh_total",
        "lark_user_sync_runs_total",
        "lark_apaas_requests_total",
        "lark_actor_mailbox",
    ] {
        assert!(metrics.contains(family), "{family} missing from /metrics");
    }
    assert!(metrics.contains(r#"lark_http_requests_total{route="/healthz",status="200"}"#));
}

#[actix_rt::test]
async fn admin_routes_need_the_bearer_token() {
    let app = spawn_app(TestDb::sqlite()).await;

    let none = app.get("/admin/actors").await;
    assert_eq!(none.status(), 401);
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    let wrong = app
        .http
        .get(app.url("/admin/actors"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // The scheme is case-insensitive (RFC 9110 §11.1).
    for scheme in ["bearer", "BEARER"] {
        let resp = app
            .http
            .get(app.url("/admin/actors"))
            .header("authorization", format!("{scheme} {ADMIN_TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
    }
    let other = app
        .http
        .get(app.url("/admin/actors"))
        .header("authorization", format!("Basic {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 401);

    let ok = app.admin_get("/admin/actors").await;
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    let actors = body["actors"].as_array().unwrap();
    assert!(
        actors
            .iter()
            .any(|a| a["name"] == "session_registry" && a["state"] == "running"),
        "{body}"
    );
}

#[actix_rt::test]
async fn admin_routes_are_disabled_without_admin_token() {
    let app = spawn_app_with(TestDb::sqlite(), &[("ADMIN_TOKEN", "")]).await;
    let resp = app.get("/admin/actors").await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "admin_disabled");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ADMIN_TOKEN"));
}

#[actix_rt::test]
async fn unknown_routes_get_a_json_error() {
    let app = spawn_app(TestDb::sqlite()).await;
    let resp = app.get("/no/such/route").await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_route");
}

#[actix_rt::test]
async fn a_killed_actor_is_restarted_and_counted() {
    let app = spawn_app(TestDb::sqlite()).await;
    let series = r#"lark_actor_restarts_total{actor="session_registry"}"#;
    let before = metric_value(&app.metrics().await, series).unwrap_or(0.0);

    let resp = app
        .admin_post(
            "/admin/actors/session_registry/restart",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(resp.status(), 202);

    // Restarted: counted in metrics, and back to running with restarts >= 1.
    wait_for(
        "the restart to be counted",
        Duration::from_secs(5),
        || async {
            let now = metric_value(&app.metrics().await, series)?;
            (now >= before + 1.0).then_some(())
        },
    )
    .await;
    let actor = wait_for("the actor to run again", Duration::from_secs(5), || async {
        let body: Value = app.admin_get("/admin/actors").await.json().await.ok()?;
        let actor = body["actors"]
            .as_array()?
            .iter()
            .find(|a| a["name"] == "session_registry")?
            .clone();
        (actor["state"] == "running").then_some(actor)
    })
    .await;
    assert!(actor["restarts"].as_u64().unwrap() >= 1, "{actor}");
    assert!(actor["last_error"]
        .as_str()
        .unwrap()
        .contains("restart requested"));

    let unknown = app
        .admin_post("/admin/actors/nobody/restart", serde_json::json!({}))
        .await;
    assert_eq!(unknown.status(), 404);
}

#[actix_rt::test]
async fn readiness_fails_without_any_event_path() {
    let app = crate::support::spawn(
        TestDb::sqlite(),
        &[("WEBSOCKET_FALLBACK_TO_HTTP", "false")],
        |sim| sim.ws().refuse_handshakes(100, 403, None),
        |b| b,
    )
    .await;
    let body = wait_for("readiness to fail", Duration::from_secs(10), || async {
        let resp = app.get("/readyz").await;
        let status = resp.status();
        let body: Value = resp.json().await.ok()?;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(body["events"], "none");
    assert_eq!(body["database"], "ok");
}
