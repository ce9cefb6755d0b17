//! Authorization by card (a click starts a device code, the user approves
//! it on the accounts site) and by OAuth redirect, end to end against the
//! simulator, on each backend.

use std::time::{Duration, Instant};

use lark_service::auth::vault::{SealedColumn, Slot};
use lark_service::db::models::user_auth_session;
use lark_service::sim::card_click;
use lark_service::sim::oauth::SimUser;
use lark_service::sim::Fault;
use serde_json::{json, Value};

use crate::support::{backends, spawn_app, test_vault, wait_for, TestApp, TestDb};

const ALICE: &str = "ou_alice0000000000000000000001";
const MALLORY: &str = "ou_mallory00000000000000000001";
const DEVICE_AUTHORIZATION: &str = "/oauth/v1/device_authorization";

fn add_user(app: &TestApp, open_id: &str, name: &str) {
    let mut user = SimUser::new(open_id, name);
    user.email = Some(format!("{}@example.com", name.to_lowercase()));
    app.sim.state().open_api.oauth.add_user(user);
}

/// The app, with Alice and Mallory known and the accounts host asking for
/// one-second polls.
async fn card_app(db: TestDb) -> TestApp {
    let app = spawn_app(db).await;
    add_user(&app, ALICE, "Alice");
    add_user(&app, MALLORY, "Mallory");
    app.sim.state().device.configure(|s| s.interval = 1);
    app
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

async fn session_in(app: &TestApp, id: &str, state: &str) -> Value {
    wait_for(
        &format!("session {id} to be {state}"),
        Duration::from_secs(20),
        || async {
            let s = session(app, id).await;
            (s["state"] == state).then_some(s)
        },
    )
    .await
}

fn click(app: &TestApp, message_id: &str, open_id: &str) -> Value {
    card_click::click(app.sim.state(), message_id, open_id).expect("card was sent")
}

/// What a click got back: the callback body, the verification link and
/// the user code in it.
struct Answer {
    body: Value,
    link: String,
    user_code: String,
}

/// `open_id` clicks the card in `message_id`; the answer shows a link.
async fn click_for_link(app: &TestApp, message_id: &str, open_id: &str) -> Answer {
    let outcome = app.deliver(&click(app, message_id, open_id)).await;
    let body = outcome.body().expect("a callback response").clone();
    let link = find_open_url(&body["card"]["data"])
        .unwrap_or_else(|| panic!("the answer opens a verification link: {body}"));
    let user_code = url::Url::parse(&link)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "user_code")
        .map(|(_, v)| v.into_owned())
        .expect("the link carries the user code");
    Answer {
        body,
        link,
        user_code,
    }
}

/// Like [`click_for_link`], clicking again (as the answer asks) while a
/// loaded machine makes the click miss its budget; at most three clicks.
async fn click_until_link(app: &TestApp, message_id: &str, open_id: &str) -> Answer {
    for _ in 0..3 {
        let outcome = app.deliver(&click(app, message_id, open_id)).await;
        let Some(body) = outcome.body().cloned() else {
            continue;
        };
        if let Some(link) = find_open_url(&body["card"]["data"]) {
            let user_code = url::Url::parse(&link)
                .unwrap()
                .query_pairs()
                .find(|(k, _)| k == "user_code")
                .map(|(_, v)| v.into_owned())
                .expect("the link carries the user code");
            return Answer {
                body,
                link,
                user_code,
            };
        }
        assert!(
            body["toast"]["content"]
                .as_str()
                .unwrap_or_default()
                .contains("click again"),
            "{body}"
        );
    }
    panic!("{open_id}: three clicks and no link");
}

/// The card of `message_id` once an update mentions `text`.
async fn card_saying(app: &TestApp, message_id: &str, text: &str) -> Value {
    wait_for(
        &format!("the card to say `{text}`"),
        Duration::from_secs(20),
        || async {
            let message = app.sim.state().open_api.im.message(message_id)?;
            message
                .updates
                .last()
                .filter(|card| card.to_string().contains(text))
                .cloned()
        },
    )
    .await
}

/// Send `open_id` a card, click, approve as them, wait for completion.
async fn authorize(app: &TestApp, open_id: &str) -> Value {
    let sent = send_card(app, open_id).await;
    let answer = click_for_link(app, sent["message_id"].as_str().unwrap(), open_id).await;
    assert!(app
        .sim
        .state()
        .device
        .approve_as(&answer.user_code, open_id));
    session_in(app, sent["session_id"].as_str().unwrap(), "completed").await;
    sent
}

#[actix_rt::test]
async fn a_click_starts_a_device_code_whose_approval_completes_the_session() {
    for db in backends() {
        let backend = db.backend();
        let app = card_app(db).await;

        let sent = send_card(&app, ALICE).await;
        let session_id = sent["session_id"].as_str().unwrap().to_owned();
        let message_id = sent["message_id"].as_str().unwrap().to_owned();
        assert!(message_id.starts_with("om_"), "{sent}");
        assert!(sent["expires_at"].is_string());
        assert_eq!(session(&app, &session_id).await["state"], "pending");

        // The card went to Alice, and its button's value is all a click brings.
        let card = app.sim.state().open_api.im.message(&message_id).unwrap();
        assert_eq!(card.receive_id, ALICE);
        let envelope = click(&app, &message_id, ALICE);
        assert_eq!(
            envelope["event"]["action"]["value"],
            json!({"action": "authorize", "session_id": session_id}),
            "{backend}: nothing but the button's value"
        );

        let clicked = Instant::now();
        let answer = click_for_link(&app, &message_id, ALICE).await;
        assert!(
            clicked.elapsed() < Duration::from_secs(3),
            "{backend}: the click took {:?}",
            clicked.elapsed()
        );
        let shown = answer.body["card"]["data"].to_string();
        assert!(shown.contains(&answer.user_code), "{shown}");
        assert!(shown.contains("minutes"), "{shown}");
        assert_eq!(answer.body["card"]["data"]["config"]["update_multi"], true);

        // The code was asked for with the app's credentials and offline_access.
        let asked = app.sim.recorder().requests_to(DEVICE_AUTHORIZATION);
        assert_eq!(asked.len(), 1, "{backend}");
        assert!(asked[0]
            .header("authorization")
            .unwrap()
            .starts_with("Basic "));
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&asked[0].body)
            .into_owned()
            .collect();
        assert!(form.contains(&("client_id".into(), lark_service::sim::SIM_APP_ID.into())));
        // OAUTH_SCOPES (the default here), offline_access included.
        let scope = &form.iter().find(|(k, _)| k == "scope").unwrap().1;
        for wanted in [
            "contact:user.email:readonly",
            "aily:run:write",
            "offline_access",
        ] {
            assert!(scope.split(' ').any(|s| s == wanted), "{backend}: {scope}");
        }
        assert_eq!(session(&app, &session_id).await["state"], "pending");

        // Alice opens the link in Feishu and approves.
        assert!(answer.link.contains(&answer.user_code));
        assert!(app.sim.state().device.approve_as(&answer.user_code, ALICE));
        let done = session_in(&app, &session_id, "completed").await;
        assert_eq!(done["user_name"], "Alice", "{backend}");
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

        // And the card turned into "Authorized as Alice".
        let replaced = card_saying(&app, &message_id, "Authorized as Alice").await;
        assert_eq!(replaced["header"]["template"], "green", "{backend}");
        let patches = app
            .sim
            .recorder()
            .requests_to(&format!("/im/v1/messages/{message_id}"));
        assert!(patches.iter().all(|p| p.method == "PATCH"));
        assert!(
            patches[0].bearer().unwrap().starts_with("t-"),
            "sent with the tenant token"
        );

        // The new card has no button; a click from a client still showing
        // the old one spends nothing.
        assert!(!replaced.to_string().contains("\"button\""), "{replaced}");
        let again = app.deliver(&envelope).await;
        assert!(again.body().unwrap()["toast"]["content"]
            .as_str()
            .unwrap()
            .contains("Already authorized"));
        assert_eq!(
            app.sim.recorder().requests_to(DEVICE_AUTHORIZATION).len(),
            1
        );
    }
}

#[actix_rt::test]
async fn a_second_click_gets_the_same_link_and_one_after_the_code_expired_a_new_one() {
    for db in backends() {
        let backend = db.backend();
        let app = card_app(db).await;
        let sent = send_card(&app, ALICE).await;
        let session_id = sent["session_id"].as_str().unwrap();
        let message_id = sent["message_id"].as_str().unwrap();

        let first = click_for_link(&app, message_id, ALICE).await;
        let second = click_for_link(&app, message_id, ALICE).await;
        assert_eq!(first.link, second.link, "{backend}");
        assert_eq!(
            app.sim.recorder().requests_to(DEVICE_AUTHORIZATION).len(),
            1
        );

        // The code outlives its ten minutes: the attempt ends, the session does not.
        app.sim.state().device.advance(Duration::from_secs(601));
        let retry = card_saying(&app, message_id, "expired").await;
        assert!(retry.to_string().contains("Get a new link"), "{retry}");
        assert_eq!(session(&app, session_id).await["state"], "pending");

        // The retry button clicks back into the same session, with a new code.
        let third = click_for_link(&app, message_id, ALICE).await;
        assert_ne!(third.user_code, first.user_code, "{backend}");
        assert_eq!(
            app.sim.recorder().requests_to(DEVICE_AUTHORIZATION).len(),
            2
        );
        assert!(!app.sim.state().device.approve_as(&first.user_code, ALICE));
        assert!(app.sim.state().device.approve_as(&third.user_code, ALICE));
        let done = session_in(&app, session_id, "completed").await;
        assert_eq!(done["open_id"], ALICE);
    }
}

#[actix_rt::test]
async fn a_link_approved_by_another_account_does_not_complete_the_session() {
    for db in backends() {
        let backend = db.backend();
        let app = card_app(db).await;
        let sent = send_card(&app, ALICE).await;
        let session_id = sent["session_id"].as_str().unwrap();
        let message_id = sent["message_id"].as_str().unwrap();

        // Alice forwards the link; Mallory opens it and approves.
        let answer = click_for_link(&app, message_id, ALICE).await;
        assert!(app
            .sim
            .state()
            .device
            .approve_as(&answer.user_code, MALLORY));
        let card = card_saying(&app, message_id, "another account").await;
        assert!(card.to_string().contains("Mallory"), "{backend}: {card}");
        let pending = session(&app, session_id).await;
        assert_eq!(pending["state"], "pending", "{backend}: {pending}");
        assert!(pending["user_name"].is_null());
        let row = app.session_of(ALICE).await;
        assert!(row.access_token_enc.is_none() && row.refresh_token_enc.is_none());

        // Alice gets a new link and approves it herself.
        let retry = click_for_link(&app, message_id, ALICE).await;
        assert_ne!(retry.user_code, answer.user_code);
        assert!(app.sim.state().device.approve_as(&retry.user_code, ALICE));
        let done = session_in(&app, session_id, "completed").await;
        assert_eq!(done["user_name"], "Alice", "{backend}");
        let token = app.stored_access_token(ALICE).await;
        assert_eq!(
            app.sim
                .state()
                .open_api
                .oauth
                .access_token_owner(&token)
                .as_deref(),
            Some(ALICE)
        );
    }
}

#[actix_rt::test]
async fn a_declined_code_fails_the_session_and_the_card_says_so() {
    for db in backends() {
        let backend = db.backend();
        let app = card_app(db).await;
        let sent = send_card(&app, ALICE).await;
        let message_id = sent["message_id"].as_str().unwrap();
        let answer = click_for_link(&app, message_id, ALICE).await;
        assert!(app.sim.state().device.deny(&answer.user_code));
        let failed = session_in(&app, sent["session_id"].as_str().unwrap(), "failed").await;
        assert!(
            failed["error"].as_str().unwrap().contains("declined"),
            "{backend}: {failed}"
        );
        let card = card_saying(&app, message_id, "declined").await;
        assert_eq!(card["header"]["template"], "red", "{backend}");
    }
}

#[actix_rt::test]
async fn an_expired_session_refuses_clicks_and_its_card_says_so() {
    for db in backends() {
        let backend = db.backend();
        let app = card_app(db).await;
        let sent = send_card(&app, ALICE).await;
        let session_id = sent["session_id"].as_str().unwrap().to_owned();
        let message_id = sent["message_id"].as_str().unwrap();

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

        let outcome = app.deliver(&click(&app, message_id, ALICE)).await;
        assert_eq!(outcome.body().unwrap()["toast"]["type"], "error");
        assert_ne!(session(&app, &session_id).await["state"], "completed");
        assert!(
            app.sim
                .recorder()
                .requests_to(DEVICE_AUTHORIZATION)
                .is_empty(),
            "{backend}: no code was asked for"
        );
        // The sweep expires it and replaces the card.
        session_in(&app, &session_id, "expired").await;
        card_saying(&app, message_id, "expired").await;
    }
}

#[actix_rt::test]
async fn a_click_by_someone_else_is_refused() {
    let app = card_app(TestDb::sqlite()).await;
    let sent = send_card(&app, ALICE).await;
    let outcome = app
        .deliver(&click(&app, sent["message_id"].as_str().unwrap(), MALLORY))
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
        .requests_to(DEVICE_AUTHORIZATION)
        .is_empty());
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

fn find_open_url(card: &Value) -> Option<String> {
    match card {
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some("open_url") {
                return map
                    .get("default_url")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            map.values().find_map(find_open_url)
        }
        Value::Array(items) => items.iter().find_map(find_open_url),
        _ => None,
    }
}

#[actix_rt::test]
async fn two_hundred_concurrent_card_authorizations_all_complete_unmixed() {
    for db in backends() {
        let backend = db.backend();
        let app = card_app(db).await;
        let users: Vec<String> = (0..200).map(|i| format!("ou_user{i:05}")).collect();
        for (i, u) in users.iter().enumerate() {
            add_user(&app, u, &format!("User{i}"));
        }
        let sends = users.iter().map(|u| send_card(&app, u));
        let sent = futures_util::future::join_all(sends).await;
        let app = &app;
        let clicks = users
            .iter()
            .zip(&sent)
            .map(|(u, s)| click_until_link(app, s["message_id"].as_str().unwrap(), u));
        let answers = futures_util::future::join_all(clicks).await;
        // Everyone approves their own link at once.
        for (u, answer) in users.iter().zip(&answers) {
            assert!(
                app.sim.state().device.approve_as(&answer.user_code, u),
                "{backend}"
            );
        }
        let listed = wait_for(
            "200 completed sessions",
            Duration::from_secs(60),
            || async {
                let listed: Value = app
                    .admin_get("/admin/sessions?state=completed&limit=1000")
                    .await
                    .json()
                    .await
                    .ok()?;
                (listed["sessions"].as_array()?.len() == 200).then_some(listed)
            },
        )
        .await;
        for s in listed["sessions"].as_array().unwrap() {
            let open_id = s["open_id"].as_str().unwrap();
            let i: usize = open_id.trim_start_matches("ou_user").parse().unwrap();
            assert_eq!(
                s["user_name"],
                format!("User{i}"),
                "{backend}: session of {open_id} holds another user's profile"
            );
        }
        // Each stored token belongs to its own user.
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
        // And each card names its own user.
        for (i, s) in sent.iter().enumerate() {
            card_saying(
                app,
                s["message_id"].as_str().unwrap(),
                &format!("Authorized as User{i}."),
            )
            .await;
        }
    }
}

#[actix_rt::test]
async fn sessions_can_be_revoked_and_bad_requests_get_json_errors() {
    let app = card_app(TestDb::sqlite()).await;
    let sent = authorize(&app, ALICE).await;
    let id = sent["session_id"].as_str().unwrap();

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

#[actix_rt::test]
async fn a_refusing_or_stalling_accounts_host_leaves_the_click_answered_in_time_and_the_session_pending(
) {
    for db in backends() {
        let backend = db.backend();
        let app = card_app(db).await;
        let sent = send_card(&app, ALICE).await;
        let session_id = sent["session_id"].as_str().unwrap();
        let message_id = sent["message_id"].as_str().unwrap();
        let recorder = app.sim.recorder();
        recorder.inject(
            "feishu_device_authorization",
            Fault::Respond {
                status: 503,
                body: json!({"error": "server_error"}),
            },
            1,
        );
        recorder.inject(
            "feishu_device_authorization",
            Fault::Delay(Duration::from_millis(2_600)),
            1,
        );
        for _ in 0..2 {
            let clicked = Instant::now();
            let outcome = app.deliver(&click(&app, message_id, ALICE)).await;
            assert!(
                clicked.elapsed() < Duration::from_secs(3),
                "{backend}: answered after {:?}",
                clicked.elapsed()
            );
            let body = outcome.body().unwrap();
            assert_eq!(body["toast"]["type"], "error", "{backend}: {body}");
            assert!(body["toast"]["content"].as_str().unwrap().contains("retry"));
            assert_eq!(session(&app, session_id).await["state"], "pending");
        }
        // The host is back: the next click gets a link.
        let answer = click_for_link(&app, message_id, ALICE).await;
        assert!(app.sim.state().device.approve_as(&answer.user_code, ALICE));
        session_in(&app, session_id, "completed").await;
    }
}

#[actix_rt::test]
async fn slow_down_adds_five_seconds_between_polls() {
    let app = card_app(TestDb::sqlite()).await;
    app.sim.recorder().inject(
        "feishu_device_token",
        Fault::Respond {
            status: 400,
            body: json!({"error": "slow_down"}),
        },
        1,
    );
    let sent = send_card(&app, ALICE).await;
    let answer = click_for_link(&app, sent["message_id"].as_str().unwrap(), ALICE).await;
    assert!(app.sim.state().device.approve_as(&answer.user_code, ALICE));
    session_in(&app, sent["session_id"].as_str().unwrap(), "completed").await;
    let polls = app.sim.recorder().requests_to("/oauth/v3/token");
    assert_eq!(polls.len(), 2, "one slow_down, then the grant");
    let gap = polls[1].at - polls[0].at;
    assert!(
        gap >= Duration::from_secs(6),
        "the interval grew to 1 + 5 s: {gap:?}"
    );
}
