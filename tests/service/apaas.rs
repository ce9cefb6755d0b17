//! AI calls as users (`POST /admin/apaas/ai`) against the simulated Aily,
//! on each backend: a token about to expire is refreshed on the spot; a
//! token-invalid answer costs exactly one refresh and one retry; concurrent
//! calls for different users each carry their own user's token; and no
//! token the platform issued ever reaches a log line.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lark_service::lark::codes;
use lark_service::sim::oauth::SimUser;
use lark_service::sim::Fault;
use serde_json::{json, Value};

use crate::support::{
    backends, in_seconds, metric_value, seed_refreshable, sim_user, spawn_app_with, wait_for,
    TestApp, FAST, REFRESH_PATH,
};

fn user(n: usize) -> SimUser {
    sim_user("apaas", n, &format!("User {n}"))
}

/// The refresher's ticks look only at tokens expiring within a second, so
/// whatever refresh happens here is the AI call's own.
fn on_demand_only() -> Vec<(&'static str, &'static str)> {
    let mut extra = FAST.to_vec();
    extra.push(("TOKEN_REFRESH_AHEAD_SECONDS", "1"));
    extra
}

async fn answer(app: &TestApp, user_id: &str, prompt: &str) -> Value {
    let resp = app.ask_ai(user_id, prompt).await;
    let status = resp.status();
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(status, 200, "{body}");
    body
}

#[actix_rt::test]
async fn a_token_about_to_expire_is_refreshed_before_the_call() {
    for db in backends() {
        let backend = db.backend();
        let app = spawn_app_with(db, &on_demand_only()).await;
        let ada = user(1);
        // Inside the call's margin (run timeout + 30 s), outside the ticks'.
        seed_refreshable(&app, vec![ada.clone()], in_seconds(45));
        let old = app.stored_access_token(&ada.open_id).await;

        let result = answer(&app, &ada.open_id, "What is 2+2?").await;
        assert_eq!(result["response"], "Echo: What is 2+2?", "{backend}");
        assert!(result["run_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("run_")));
        assert!(result["session_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("session_")));
        assert_eq!(result["usage"]["polls"], 2, "{result}");
        assert_eq!(result["usage"]["prompt_chars"], 12);

        let new = app.stored_access_token(&ada.open_id).await;
        assert_ne!(new, old, "{backend}");
        assert_eq!(app.sim.recorder().requests_to(REFRESH_PATH).len(), 1);
        let calls = app.sim.state().open_api.aily.calls();
        assert!(!calls.is_empty(), "{backend}: the AI call reached Aily");
        assert!(
            calls
                .iter()
                .all(|c| c.bearer.as_deref() == Some(new.as_str())),
            "{backend}: every Aily call carried the refreshed token"
        );
    }
}

#[actix_rt::test]
async fn a_token_invalid_answer_costs_exactly_one_refresh_and_one_retry() {
    for db in backends() {
        let backend = db.backend();
        let app = spawn_app_with(db, &on_demand_only()).await;
        let (ada, bob) = (user(2), user(3));
        seed_refreshable(&app, vec![ada.clone(), bob.clone()], in_seconds(2 * 3600));
        let oauth = &app.sim.state().open_api.oauth;
        let aily = &app.sim.state().open_api.aily;

        // The platform stops accepting Ada's token: refresh once, retry once.
        let old = app.stored_access_token(&ada.open_id).await;
        oauth.revoke_access_tokens(&ada.open_id);
        let result = answer(&app, &ada.open_id, "still there?").await;
        assert_eq!(result["response"], "Echo: still there?", "{backend}");
        assert_eq!(
            app.sim.recorder().requests_to(REFRESH_PATH).len(),
            1,
            "{backend}"
        );
        let new = app.stored_access_token(&ada.open_id).await;
        assert_ne!(new, old);
        let session_bearers: Vec<_> = aily
            .calls()
            .into_iter()
            .filter(|c| c.route == "aily_create_session")
            .map(|c| c.bearer)
            .collect();
        assert_eq!(
            session_bearers,
            vec![Some(old.clone()), Some(new.clone())],
            "{backend}"
        );

        // Refused again after the refresh: no second refresh, no third try.
        let refused = Fault::Respond {
            status: 400,
            body: json!({"code": codes::USER_ACCESS_TOKEN_INVALID, "msg": "invalid token"}),
        };
        app.sim.recorder().inject("aily_create_session", refused, 2);
        let creates = || app.sim.recorder().requests_to("/aily/v1/sessions").len();
        let (before, other_calls) = (creates(), aily.calls().len());
        let resp = app.ask_ai(&bob.open_id, "hi").await;
        assert_eq!(resp.status(), 409, "{backend}");
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "auth_required", "{body}");
        assert_eq!(
            app.sim.recorder().requests_to(REFRESH_PATH).len(),
            2,
            "{backend}"
        );
        assert_eq!(creates() - before, 2, "one call and one retry");
        assert_eq!(
            aily.calls().len(),
            other_calls,
            "nothing after the refusals"
        );
    }
}

#[actix_rt::test]
async fn runs_that_fail_or_time_out_and_unknown_users_are_typed_errors() {
    let mut extra = on_demand_only();
    extra.push(("AILY_RUN_TIMEOUT_SECONDS", "1"));
    let app = spawn_app_with(crate::support::TestDb::sqlite(), &extra).await;
    let ada = user(4);
    seed_refreshable(&app, vec![ada.clone()], in_seconds(2 * 3600));
    let aily = &app.sim.state().open_api.aily;

    let error = |resp: reqwest::Response| async move {
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("JSON");
        (
            status,
            body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    aily.fail_next_run("model_overloaded", "try later");
    assert_eq!(
        error(app.ask_ai(&ada.open_id, "q").await).await,
        (502, "ai_run_failed".into())
    );
    aily.set_polls_to_complete(1_000);
    assert_eq!(
        error(app.ask_ai(&ada.open_id, "q").await).await,
        (504, "ai_timeout".into())
    );
    aily.set_polls_to_complete(1);
    app.sim
        .recorder()
        .inject("aily_start_run", Fault::RateLimit { reset_seconds: 3 }, 1);
    let resp = app.ask_ai(&ada.open_id, "q").await;
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or("")),
        Some("3")
    );
    assert_eq!(error(resp).await, (429, "rate_limited".into()));
    let (status, code) = error(app.ask_ai("ou_nobody000000000000000000", "q").await).await;
    assert_eq!((status, code.as_str()), (409, "auth_required"));
    assert_eq!(
        error(app.ask_ai(&ada.open_id, "  ").await).await,
        (400, "bad_input".into())
    );

    let metrics = app.metrics().await;
    for outcome in [
        "run_failed",
        "timeout",
        "rate_limited",
        "auth_required",
        "bad_input",
    ] {
        let series = format!("lark_apaas_requests_total{{outcome=\"{outcome}\"}}");
        assert!(
            metric_value(&metrics, &series) >= Some(1.0),
            "{series} in {metrics}"
        );
    }
}

#[actix_rt::test]
async fn fifty_concurrent_calls_for_fifty_users_each_carry_their_own_users_token() {
    for db in backends() {
        let backend = db.backend();
        let app = spawn_app_with(db, &on_demand_only()).await;
        let users: Vec<SimUser> = (10..60).map(user).collect();
        seed_refreshable(&app, users.clone(), in_seconds(2 * 3600));
        let asks = users.iter().map(|u| {
            let app = &app;
            let id = u.open_id.clone();
            async move {
                let prompt = format!("who am I? {id}");
                let result = answer(app, &id, &prompt).await;
                (id, prompt, result)
            }
        });
        for (id, prompt, result) in futures_util::future::join_all(asks).await {
            assert_eq!(
                result["response"],
                format!("Echo: {prompt}"),
                "{backend}: {id}"
            );
        }

        let oauth = &app.sim.state().open_api.oauth;
        let mut by_owner: HashMap<String, HashSet<String>> = HashMap::new();
        for call in app.sim.state().open_api.aily.calls() {
            let bearer = call.bearer.expect("every Aily call carries a token");
            let owner = oauth
                .access_token_owner(&bearer)
                .expect("a live user token");
            by_owner.entry(owner).or_default().insert(bearer);
        }
        assert_eq!(by_owner.len(), users.len(), "{backend}");
        for u in &users {
            let tokens = &by_owner[&u.open_id];
            assert_eq!(tokens.len(), 1, "{backend}: one token per user");
            let stored = app.stored_access_token(&u.open_id).await;
            assert!(
                tokens.contains(&stored),
                "{backend}: {}'s calls use their own token",
                u.open_id
            );
        }
    }
}

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The subscriber is this test thread's, where the service's actors run
/// (card flow, registry, refresher, AI client); the HTTP workers and the
/// database threads log no token material of their own.
#[actix_rt::test]
async fn no_token_appears_in_any_log_line() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    for db in backends() {
        // Each backend's run is judged on its own lines.
        logs.0.lock().expect("log buffer").clear();
        let mut extra = FAST.to_vec();
        extra.push(("TOKEN_REFRESH_SEND_AUTH_CARD", "true"));
        let app = spawn_app_with(db, &extra).await;
        let (due, refused, gone) = (user(70), user(71), user(72));
        seed_refreshable(&app, vec![due.clone()], in_seconds(30));
        seed_refreshable(&app, vec![refused.clone()], in_seconds(2 * 3600));
        seed_refreshable(&app, vec![gone.clone()], in_seconds(30));
        let oauth = &app.sim.state().open_api.oauth;
        oauth.expire_refresh_tokens(&gone.open_id);
        oauth.revoke_access_tokens(&refused.open_id);

        wait_for(
            "the due session to be refreshed",
            Duration::from_secs(30),
            || async {
                let row = app.session_of(&due.open_id).await;
                (row.token_expires_at > Some(in_seconds(3600))).then_some(())
            },
        )
        .await;
        wait_for(
            "the spent session to need reauthorization",
            Duration::from_secs(30),
            || async {
                let seeded = app.sessions_of(&gone.open_id).await.pop()?;
                (seeded.state == "reauth_required").then_some(())
            },
        )
        .await;
        answer(&app, &due.open_id, "one").await;
        answer(&app, &refused.open_id, "two").await;
        assert_eq!(app.ask_ai(&gone.open_id, "three").await.status(), 409);

        let text = String::from_utf8(logs.0.lock().expect("log buffer").clone()).expect("UTF-8");
        assert!(text.contains("user token refreshed"), "the capture works");
        let tokens = oauth.issued_tokens();
        assert!(tokens.len() >= 6);
        for token in tokens {
            assert!(!text.contains(&token), "a token reached the log");
        }
        app.stop().await;
    }
}
