//! Authorizing the app by device code (`POST /admin/device-logins`): the
//! user approves on the accounts site and the session completes by itself;
//! a refusal, an expired code or the wrong user fail it.

use std::time::Duration;

use lark_service::auth::vault::{EncryptionKey, SealedColumn, Slot, Vault};
use lark_service::db::models::user_auth_session;
use lark_service::sim::oauth::SimUser;
use serde_json::{json, Value};

use crate::support::{backends, metric_value, spawn_app, wait_for, TestApp, TestDb};

const DORA: &str = "ou_dora00000000000000000000001";

/// Dora is signed in to the accounts site; the host asks for 1 s polls.
async fn app_with_dora(db: TestDb) -> TestApp {
    let app = spawn_app(db).await;
    let mut dora = SimUser::new(DORA, "Dora");
    dora.email = Some("dora@example.com".into());
    let sim = app.sim.state();
    sim.open_api.oauth.add_user(dora);
    sim.open_api.oauth.sign_in(DORA);
    sim.device.configure(|s| s.interval = 1);
    app
}

async fn start(app: &TestApp, body: Value) -> Value {
    let resp = app.admin_post("/admin/device-logins", body).await;
    assert_eq!(
        resp.status(),
        201,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    resp.json().await.unwrap()
}

async fn session_in(app: &TestApp, id: &str, state: &str) -> Value {
    let path = format!("/admin/sessions/{id}");
    wait_for(
        &format!("session {id} to be {state}"),
        Duration::from_secs(15),
        || async {
            let session: Value = app.admin_get(&path).await.json().await.ok()?;
            (session["state"] == state).then_some(session)
        },
    )
    .await
}

async fn device_code_completions(app: &TestApp) -> f64 {
    let series = "lark_auth_completed_total{method=\"device_code\"}";
    metric_value(&app.metrics().await, series).unwrap_or(0.0)
}

#[actix_rt::test]
async fn an_approved_device_login_completes_the_session() {
    for db in backends() {
        let backend = db.backend();
        let app = app_with_dora(db).await;
        let started = start(&app, json!({})).await;
        let session_id = started["session_id"].as_str().unwrap();
        let user_code = started["user_code"].as_str().unwrap();
        assert!(started["verification_uri_complete"]
            .as_str()
            .unwrap()
            .contains(user_code));
        assert_eq!(started["interval"], 1);

        let pending = session_in(&app, session_id, "pending").await;
        assert_eq!(pending["auth_method"], "device_code");

        // The metrics registry is the process's, shared by every test app.
        let completed_before = device_code_completions(&app).await;
        assert!(app.sim.state().device.approve(user_code));
        let done = session_in(&app, session_id, "completed").await;
        assert_eq!(done["open_id"], DORA, "{backend}");
        assert_eq!(done["user_name"], "Dora");
        assert_eq!(done["email"], "dora@example.com");
        assert!(done["token_expires_at"].is_string());
        assert!(done.get("access_token_enc").is_none());

        // The stored token is sealed, Dora's own, and the platform accepts it.
        let id = session_id.to_owned();
        let row = app
            .app_db
            .read(move |c| user_auth_session::find(c, &id))
            .await
            .unwrap()
            .unwrap();
        let vault = Vault::new(&EncryptionKey::from_hex(&"11".repeat(32)).unwrap());
        let slot = Slot::new(SealedColumn::UserAccessToken, &row.session_id);
        let token = vault.open(slot, &row.access_token_enc.unwrap()).unwrap();
        let owner = app.sim.state().open_api.oauth.access_token_owner(&token);
        assert_eq!(owner.as_deref(), Some(DORA), "{backend}");
        assert!(row.refresh_token_enc.is_some());
        let completed = device_code_completions(&app).await;
        assert_eq!(completed - completed_before, 1.0, "{backend}");
        app.stop().await;
    }
}

#[actix_rt::test]
async fn a_declined_expired_or_misdirected_login_fails_the_session() {
    let app = app_with_dora(TestDb::sqlite()).await;

    let declined = start(&app, json!({})).await;
    assert!(app
        .sim
        .state()
        .device
        .deny(declined["user_code"].as_str().unwrap()));
    let failed = session_in(&app, declined["session_id"].as_str().unwrap(), "failed").await;
    assert!(
        failed["error"].as_str().unwrap().contains("access_denied"),
        "{failed}"
    );

    let misdirected = start(&app, json!({"user_id": "ou_someone_else"})).await;
    assert!(app
        .sim
        .state()
        .device
        .approve(misdirected["user_code"].as_str().unwrap()));
    let failed = session_in(&app, misdirected["session_id"].as_str().unwrap(), "failed").await;
    assert!(
        failed["error"].as_str().unwrap().contains("another user"),
        "{failed}"
    );

    app.sim
        .state()
        .device
        .configure(|s| s.device_code_lifetime = Duration::from_secs(1));
    let expired = start(&app, json!({})).await;
    let failed = session_in(&app, expired["session_id"].as_str().unwrap(), "failed").await;
    assert!(
        failed["error"].as_str().unwrap().contains("expired"),
        "{failed}"
    );

    let bad = app
        .admin_post("/admin/device-logins", json!({"user_id": 7}))
        .await;
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_json");
    app.stop().await;
}
