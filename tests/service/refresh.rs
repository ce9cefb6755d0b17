//! The token refresher against the simulator, on each backend: due tokens
//! are refreshed ahead of expiry and the AI then runs with the new one; a
//! refused refresh token ends in `reauth_required` (and a new card); two
//! services on one PostgreSQL database spend every refresh token once.

use std::time::Duration;

use lark_service::sim::oauth::SimUser;
use serde_json::Value;

use crate::support::replica::Replica;
use crate::support::{
    backends, in_seconds, metric_value, postgres_only, seed_refreshable, settings_for, sim_user,
    spawn_app, spawn_app_with, wait_for, TestApp, FAST, REFRESH_PATH,
};

const TIMEOUT: Duration = Duration::from_secs(30);

fn user(n: usize) -> SimUser {
    sim_user("refresh", n, &format!("User {n}"))
}

/// Wait until `open_id`'s stored access token is no longer `old`.
async fn refreshed_from(app: &TestApp, open_id: &str, old: &str) -> String {
    wait_for("the token to be refreshed", TIMEOUT, || async {
        let now = app.stored_access_token(open_id).await;
        (now != old).then_some(now)
    })
    .await
}

#[actix_rt::test]
async fn a_token_expiring_soon_is_refreshed_and_the_ai_call_runs_with_the_new_one() {
    for db in backends() {
        let backend = db.backend();
        let app = spawn_app_with(db, FAST).await;
        let (soon, later) = (user(1), user(2));
        seed_refreshable(&app, vec![soon.clone()], in_seconds(60));
        seed_refreshable(&app, vec![later.clone()], in_seconds(2 * 3600));
        let old = app.stored_access_token(&soon.open_id).await;
        let untouched = app.stored_access_token(&later.open_id).await;

        let new = refreshed_from(&app, &soon.open_id, &old).await;
        let row = app.session_of(&soon.open_id).await;
        assert_eq!(row.state, "completed", "{backend}");
        assert!(row.token_expires_at > Some(in_seconds(3600)), "{backend}");
        assert_eq!(
            row.refresh_claimed_by, None,
            "{backend}: the claim is released"
        );
        let oauth = &app.sim.state().open_api.oauth;
        assert_eq!(
            oauth.access_token_owner(&new).as_deref(),
            Some(soon.open_id.as_str())
        );
        assert_eq!(
            app.sim.recorder().requests_to(REFRESH_PATH).len(),
            1,
            "{backend}"
        );
        assert_eq!(app.stored_access_token(&later.open_id).await, untouched);

        let resp = app.ask_ai(&soon.open_id, "What is 2+2?").await;
        assert_eq!(resp.status(), 200, "{backend}");
        let result: Value = resp.json().await.expect("JSON");
        assert_eq!(
            result["response"], "Echo: What is 2+2?",
            "{backend}: {result}"
        );
        let calls = app.sim.state().open_api.aily.calls();
        assert!(!calls.is_empty());
        assert!(
            calls
                .iter()
                .all(|c| c.bearer.as_deref() == Some(new.as_str())),
            "{backend}: every Aily call carries the refreshed token"
        );

        let metrics = app.metrics().await;
        assert!(
            metric_value(&metrics, "lark_token_refresh_total{outcome=\"ok\"}") >= Some(1.0),
            "{metrics}"
        );
        assert!(metric_value(&metrics, "lark_apaas_requests_total{outcome=\"ok\"}") >= Some(1.0));
        assert!(metrics.contains("lark_tokens_expiring_within_hour"));
    }
}

#[actix_rt::test]
async fn an_expired_refresh_token_ends_in_reauth_required_and_a_new_card() {
    for db in backends() {
        let backend = db.backend();
        let mut extra = FAST.to_vec();
        extra.push(("TOKEN_REFRESH_SEND_AUTH_CARD", "true"));
        let app = spawn_app_with(db, &extra).await;
        let ada = user(3);
        seed_refreshable(&app, vec![ada.clone()], in_seconds(30));
        app.sim
            .state()
            .open_api
            .oauth
            .expire_refresh_tokens(&ada.open_id);

        // The oldest session is the seeded one; a new card adds a pending one.
        let row = wait_for("the session to need reauthorization", TIMEOUT, || async {
            let row = app.sessions_of(&ada.open_id).await.pop()?;
            (row.state != "completed").then_some(row)
        })
        .await;
        assert_eq!(row.state, "reauth_required", "{backend}");
        assert!(
            row.error.as_deref().is_some_and(|e| e.contains("20037")),
            "{row:?}"
        );
        assert_eq!(row.refresh_claimed_by, None);
        // One presentation only: a refused token is not tried again.
        assert_eq!(
            app.sim.recorder().requests_to(REFRESH_PATH).len(),
            1,
            "{backend}"
        );

        let card = wait_for("a new authorization card", TIMEOUT, || async {
            app.sim.state().open_api.im.last_message_to(&ada.open_id)
        })
        .await;
        assert_eq!(card.receive_id, ada.open_id);

        let resp = app.ask_ai(&ada.open_id, "hello").await;
        assert_eq!(resp.status(), 409, "{backend}");
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "auth_required");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&ada.open_id) && message.contains("auth card"),
            "{message}"
        );

        let metrics = app.metrics().await;
        assert!(
            metric_value(
                &metrics,
                "lark_token_refresh_total{outcome=\"reauth_required\"}"
            ) >= Some(1.0),
            "{metrics}"
        );
        assert!(
            metric_value(
                &metrics,
                "lark_apaas_requests_total{outcome=\"auth_required\"}"
            ) >= Some(1.0)
        );
    }
}

#[actix_rt::test]
async fn two_services_on_one_postgresql_database_spend_each_refresh_token_once() {
    let Some(db) =
        postgres_only("two_services_on_one_postgresql_database_spend_each_refresh_token_once")
    else {
        return;
    };
    const USERS: usize = 1_000;
    let app = spawn_app_with(db, FAST).await;
    let other = Replica::start(settings_for(&app.sim, &app.db, FAST));
    seed_refreshable(
        &app,
        (100..100 + USERS).map(user).collect(),
        in_seconds(120),
    );

    let oauth = &app.sim.state().open_api.oauth;
    wait_for(
        "every due session to be refreshed",
        Duration::from_secs(120),
        || async { (oauth.refreshes_granted() >= USERS).then_some(()) },
    )
    .await;
    // Give a duplicate spend, if any, the chance to arrive.
    let due = wait_for("the claims to be released", TIMEOUT, || async {
        let rows = app
            .app_db
            .read(|c| lark_service::db::models::user_auth_session::list(c, None, 10_000))
            .await
            .ok()?;
        rows.iter()
            .all(|r| r.refresh_claimed_by.is_none())
            .then_some(rows)
    })
    .await;
    assert_eq!(due.len(), USERS);
    assert!(
        due.iter().all(|r| r.state == "completed"),
        "no session lost its authorization"
    );
    assert!(due
        .iter()
        .all(|r| r.token_expires_at > Some(in_seconds(3600))));
    assert_eq!(oauth.reused_refresh_tokens(), Vec::<String>::new());
    assert_eq!(oauth.refreshes_granted(), USERS);
    assert_eq!(app.sim.recorder().requests_to(REFRESH_PATH).len(), USERS);
    other.kill().await;
}

#[actix_rt::test]
async fn a_refused_token_condemns_a_session_only_while_it_holds_that_generation_and_no_claim() {
    use lark_service::db::models::user_auth_session as sessions;
    for db in backends() {
        let backend = db.backend();
        let app = spawn_app(db).await;
        let ada = user(4);
        seed_refreshable(&app, vec![ada.clone()], in_seconds(2 * 3600));
        let row = app.session_of(&ada.open_id).await;
        let (id, tried) = (row.id, row.token_generation);

        // A pair stored since the token was tried: the refusal is stale.
        let now = lark_service::db::now();
        let moved = app
            .app_db
            .write(move |c| sessions::mark_reauth_required(c, id, tried - 1, "stale", now))
            .await
            .expect("write");
        assert!(!moved, "{backend}: an older generation moves nothing");

        // Another worker holds a live refresh claim: it is about to store
        // a new pair, so the session is not condemned under it.
        let session_id = row.session_id.clone();
        let claimed = app
            .app_db
            .write(move |c| {
                sessions::claim_session_refresh(c, &session_id, "other-worker", in_seconds(120))
            })
            .await
            .expect("write");
        assert!(claimed.is_some(), "{backend}");
        let now = lark_service::db::now();
        let moved = app
            .app_db
            .write(move |c| sessions::mark_reauth_required(c, id, tried, "claimed", now))
            .await
            .expect("write");
        assert!(!moved, "{backend}: a live claim keeps the session");
        // Nor can the claimer record a refusal of a generation it did not try.
        let refused = app
            .app_db
            .write(move |c| sessions::refresh_refused(c, id, "other-worker", tried + 1, "x"))
            .await
            .expect("write");
        assert!(!refused, "{backend}");
        assert_eq!(app.session_of(&ada.open_id).await.state, "completed");

        // Claim released, same generation: now it moves.
        let released = app
            .app_db
            .write(move |c| sessions::release_refresh(c, id, "other-worker", now, "released"))
            .await
            .expect("write");
        assert!(released);
        let now = lark_service::db::now() + chrono::Duration::seconds(1);
        let moved = app
            .app_db
            .write(move |c| sessions::mark_reauth_required(c, id, tried, "refused", now))
            .await
            .expect("write");
        assert!(moved, "{backend}");
        assert_eq!(app.session_of(&ada.open_id).await.state, "reauth_required");
    }
}

#[actix_rt::test]
async fn every_stored_pair_bumps_the_token_generation() {
    for db in backends() {
        let backend = db.backend();
        let app = spawn_app_with(db, FAST).await;
        let ada = user(5);
        seed_refreshable(&app, vec![ada.clone()], in_seconds(60));
        let before = app.session_of(&ada.open_id).await;
        let old = app.stored_access_token(&ada.open_id).await;
        refreshed_from(&app, &ada.open_id, &old).await;
        let after = app.session_of(&ada.open_id).await;
        assert_eq!(
            after.token_generation,
            before.token_generation + 1,
            "{backend}"
        );
    }
}
