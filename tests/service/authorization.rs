//! Authorization by card and by OAuth redirect, end to end against the
//! simulator, on each backend.

use std::time::Duration;

use lark_service::auth::vault::{SealedColumn, Slot};
use lark_service::db::models::user_auth_session;
use lark_service::sim::card_click;
use lark_service::sim::oauth::SimUser;
use serde_json::{json, Value};

use crate::support::{backends, spawn_app, test_vault, TestApp, TestDb};

const ALICE: &str = "ou_alice0000000000000000000001";

fn add_user(app: &TestApp, open_id: &str, name: &str) {
    let mut user = SimUser::new(open_id, name);
    user.email = Some(format!("{}@example.com", name.to_lowercase()));
    app.sim.state().open_api.oauth.add_user(user);
}

async fn send_card(app: &TestApp, open_id: &str) -> Value {
    let resp = app.admin_post("/admin/auth-cards", json!({"user_id": open_id, "options": {"include_detailed_description": true, "custom_message": "Please authorize"}})).await;
    assert_eq!(
        resp.status(),
        201,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    resp.json().await.unwrap()
}

async fn session(app: &TestApp, id: &str) -> Value {
    app.admin_get(&format!("/admin/sessions/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

fn click(app: &TestApp, message_id: &str, open_id: &str) -> Value {
    card_click::click(app.sim.state(), message_id, open_id).expect("card was sent")
}

#[actix_rt::test]
async fn the_quickstart_flow_completes_with_encrypted_tokens() {
    for db in backends() {
        let backend = db.backend();
        let app = spawn_app(db).await;
        add_user(&app, ALICE, "Alice");

        let sent = send_card(&app, ALICE).await;
        let session_id = sent["session_id"].as_str().unwrap().to_owned();
        let message_id = sent["message_id"].as_str().unwrap().to_owned();
        assert!(message_id.starts_with("om_"), "{sent}");
        assert!(sent["expires_at"].is_string());
        assert_eq!(session(&app, &session_id).await["state"], "pending");

        // The card went to Alice, with our session in the button.
        let card = app.sim.state().open_api.im.message(&message_id).unwrap();
        assert_eq!(card.receive_id, ALICE);
        assert!(card.content.to_string().contains(&session_id));

        let clicked = std::time::Instant::now();
        let outcome = app.deliver(&click(&app, &message_id, ALICE)).await;
        let body = outcome.body().expect("a callback response").clone();
        assert_eq!(body["toast"]["type"], "success", "{backend}: {body}");
        assert!(body["card"]["data"].to_string().contains("Alice"));

        let done = session(&app, &session_id).await;
        assert!(
            clicked.elapsed() < Duration::from_secs(1),
            "{backend}: completion took {:?}",
            clicked.elapsed()
        );
        assert_eq!(done["state"], "completed", "{backend}: {done}");
        assert_eq!(done["user_name"], "Alice");
        assert_eq!(done["email"], "alice@example.com");
        assert_eq!(done["auth_method"], "websocket_card");
        assert!(
            done.get("access_token_enc").is_none() && !done.to_string().contains("u-"),
            "no tokens in the API: {done}"
        );

        // In the database: ciphertext that opens to the token the simulator issued to Alice.
        let id = session_id.clone();
        let row = app
            .app_db
            .read(move |c| user_auth_session::find(c, &id))
            .await
            .unwrap()
            .unwrap();
        let sealed = row.access_token_enc.unwrap();
        assert!(sealed.starts_with("v2:") && !sealed.contains("u-"));
        let slot = Slot::new(SealedColumn::UserAccessToken, &row.session_id);
        let token = test_vault().open(slot, &sealed).unwrap();
        assert_eq!(
            app.sim
                .state()
                .open_api
                .oauth
                .access_token_owner(&token)
                .as_deref(),
            Some(ALICE)
        );
        assert!(row.refresh_token_enc.is_some());
    }
}

#[actix_rt::test]
async fn an_expired_session_refuses_completion() {
    for db in backends() {
        let app = spawn_app(db).await;
        add_user(&app, ALICE, "Alice");
        let sent = send_card(&app, ALICE).await;
        let session_id = sent["session_id"].as_str().unwrap().to_owned();

        // Move the deadline into the past, as time passing would.
        let id = session_id.clone();
        app.app_db
            .write(move |c| {
                use diesel::prelude::*;
                use lark_service::db::schema::user_auth_sessions::dsl as s;
                diesel::update(s::user_auth_sessions.filter(s::session_id.eq(id)))
                    .set(s::expires_at.eq(lark_service::db::now() - chrono::Duration::seconds(1)))
                    .execute(c)?;
                Ok(())
            })
            .await
            .unwrap();

        let outcome = app
            .deliver(&click(&app, sent["message_id"].as_str().unwrap(), ALICE))
            .await;
        assert_eq!(outcome.body().unwrap()["toast"]["type"], "error");
        assert_ne!(session(&app, &session_id).await["state"], "completed");
        assert!(
            app.sim
                .recorder()
                .requests_to("/oidc/access_token")
                .is_empty(),
            "no code was spent"
        );
    }
}

#[actix_rt::test]
async fn a_replayed_click_spends_no_second_code() {
    let app = spawn_app(TestDb::sqlite()).await;
    add_user(&app, ALICE, "Alice");
    let sent = send_card(&app, ALICE).await;
    let message_id = sent["message_id"].as_str().unwrap();

    let first = app.deliver(&click(&app, message_id, ALICE)).await;
    assert_eq!(first.body().unwrap()["toast"]["type"], "success");
    let again = app.deliver(&click(&app, message_id, ALICE)).await;
    let body = again.body().unwrap();
    assert_eq!(body["toast"]["type"], "info");
    assert!(body["toast"]["content"]
        .as_str()
        .unwrap()
        .contains("Already authorized"));
    assert_eq!(
        app.sim.recorder().requests_to("/oidc/access_token").len(),
        1
    );
}

#[actix_rt::test]
async fn a_click_by_someone_else_is_refused() {
    let app = spawn_app(TestDb::sqlite()).await;
    add_user(&app, ALICE, "Alice");
    let sent = send_card(&app, ALICE).await;
    let outcome = app
        .deliver(&click(
            &app,
            sent["message_id"].as_str().unwrap(),
            "ou_mallory",
        ))
        .await;
    let body = outcome.body().unwrap();
    assert_eq!(body["toast"]["type"], "error");
    assert!(body["toast"]["content"]
        .as_str()
        .unwrap()
        .contains("someone else"));
    assert_eq!(
        session(&app, sent["session_id"].as_str().unwrap()).await["state"],
        "pending"
    );
    assert!(app
        .sim
        .recorder()
        .requests_to("/oidc/access_token")
        .is_empty());
}

#[actix_rt::test]
async fn a_reused_code_fails_cleanly() {
    let app = spawn_app(TestDb::sqlite()).await;
    add_user(&app, ALICE, "Alice");
    let first = send_card(&app, ALICE).await;
    let second = send_card(&app, ALICE).await;
    let click_one = click(&app, first["message_id"].as_str().unwrap(), ALICE);
    assert_eq!(
        app.deliver(&click_one).await.body().unwrap()["toast"]["type"],
        "success"
    );

    // Replay the first click's code against the second session.
    let mut replay = click(&app, second["message_id"].as_str().unwrap(), ALICE);
    replay["event"]["action"]["value"]["authorization_code"] =
        click_one["event"]["action"]["value"]["authorization_code"].clone();
    let outcome = app.deliver(&replay).await;
    assert_eq!(outcome.body().unwrap()["toast"]["type"], "error");
    let failed = session(&app, second["session_id"].as_str().unwrap()).await;
    assert_eq!(failed["state"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("exchang"),
        "{failed}"
    );
}

#[actix_rt::test]
async fn clicks_on_cards_that_are_not_ours_are_left_alone() {
    let app = spawn_app(TestDb::sqlite()).await;
    let foreign = card_click::click_value(
        app.sim.state(),
        ALICE,
        json!({"action": "vote", "choice": 2}),
    );
    let outcome = app.deliver(&foreign).await;
    assert_eq!(outcome.code(), 200);
    assert!(outcome.body().is_none());
}

#[actix_rt::test]
async fn two_hundred_concurrent_authorizations_all_complete_unmixed() {
    for db in backends() {
        let app = spawn_app(db).await;
        let users: Vec<String> = (0..200).map(|i| format!("ou_user{i:05}")).collect();
        for (i, u) in users.iter().enumerate() {
            add_user(&app, u, &format!("User{i}"));
        }
        let sends = users.iter().map(|u| send_card(&app, u));
        let sent = futures_util::future::join_all(sends).await;
        let app = &app;
        let clicks = users.iter().zip(&sent).map(|(u, s)| {
            let envelope = click(app, s["message_id"].as_str().unwrap(), u);
            async move { app.deliver(&envelope).await }
        });
        let outcomes = futures_util::future::join_all(clicks).await;
        assert!(outcomes
            .iter()
            .all(|o| o.body().is_some_and(|b| b["toast"]["type"] == "success")));

        let listed: Value = app
            .admin_get("/admin/sessions?state=completed&limit=1000")
            .await
            .json()
            .await
            .unwrap();
        let sessions = listed["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 200);
        for s in sessions {
            let open_id = s["open_id"].as_str().unwrap();
            let i: usize = open_id.trim_start_matches("ou_user").parse().unwrap();
            assert_eq!(
                s["user_name"],
                format!("User{i}"),
                "session of {open_id} holds another user's profile"
            );
        }
        // And each stored token belongs to its own user.
        let rows = app
            .app_db
            .read(|c| {
                user_auth_session::list(
                    c,
                    Some(lark_service::domain::SessionState::Completed),
                    1000,
                )
            })
            .await
            .unwrap();
        let vault = test_vault();
        for row in rows {
            let slot = Slot::new(SealedColumn::UserAccessToken, &row.session_id);
            let token = vault
                .open(slot, row.access_token_enc.as_deref().unwrap())
                .unwrap();
            assert_eq!(
                app.sim.state().open_api.oauth.access_token_owner(&token),
                row.open_id
            );
        }
    }
}

#[actix_rt::test]
async fn sessions_can_be_revoked_and_bad_requests_get_json_errors() {
    let app = spawn_app(TestDb::sqlite()).await;
    add_user(&app, ALICE, "Alice");
    let sent = send_card(&app, ALICE).await;
    let id = sent["session_id"].as_str().unwrap();
    app.deliver(&click(&app, sent["message_id"].as_str().unwrap(), ALICE))
        .await;

    let revoked = app
        .admin_post(&format!("/admin/sessions/{id}/revoke"), json!({}))
        .await;
    assert_eq!(revoked.status(), 200);
    let body: Value = revoked.json().await.unwrap();
    assert_eq!(body["state"], "revoked");
    let sid = id.to_owned();
    let row = app
        .app_db
        .read(move |c| user_auth_session::find(c, &sid))
        .await
        .unwrap()
        .unwrap();
    assert!(row.access_token_enc.is_none() && row.refresh_token_enc.is_none());

    for (path, status) in [
        ("/admin/sessions/not-a-uuid", 400),
        ("/admin/sessions/6d9c6b8a-7c43-4c1e-9a57-1f6e0d2f0a11", 404),
        ("/admin/sessions?state=bogus", 400),
    ] {
        let resp = app.admin_get(path).await;
        assert_eq!(resp.status(), status, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"]["code"].is_string());
    }
    let bad = app
        .admin_post("/admin/auth-cards", json!({"user": ALICE}))
        .await;
    assert_eq!(bad.status(), 400);
    let bad = app
        .admin_post("/admin/auth-cards", json!({"user_id": "alice"}))
        .await;
    assert_eq!(bad.status(), 400);
}
