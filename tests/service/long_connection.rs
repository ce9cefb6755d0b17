//! The long connection and the webhook fallback, end to end against the
//! simulated platform.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lark_service::events::webhook::{encrypt, sign};
use lark_service::sim::card_click;
use lark_service::sim::oauth::SimUser;
use lark_service::sim::ws_server::Push;
use lark_service::ws::ClientConfig;
use serde_json::{json, Value};

use crate::support::counting::{assert_handled_once, counting_app, event};
use crate::support::{
    backends, metric_value, spawn, test_client_config, wait_for, TestApp, TestDb,
};

#[actix_rt::test]
async fn events_are_reassembled_handled_and_acked_with_their_message_id() {
    let (app, seen) = counting_app(TestDb::sqlite(), &[], |_| {}).await;
    let ws = app.sim.ws();
    let plain = ws.push_event(&event("e-plain"));
    let split = ws.push(
        serde_json::to_vec(&event("e-split")).unwrap(),
        Push {
            kind: lark_service::ws::MessageType::Event,
            fragments: 3,
        },
    );
    assert!(ws.wait_for_acks(2, Duration::from_secs(5)).await);
    let acks = ws.acks();
    for id in [&plain, &split] {
        let ack = acks.iter().find(|a| &a.message_id == id).expect("acked");
        assert_eq!(ack.code, 200);
        assert!(ack.frame.headers.iter().any(|h| h.key == "biz_rt"));
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.get("e-plain"), Some(&1));
    assert_eq!(seen.get("e-split"), Some(&1));
}

/// The callback answer in the ack of `message_id`, once acked.
async fn acked_answer(app: &TestApp, message_id: &str) -> Value {
    let ws = app.sim.ws();
    assert!(
        ws.wait_until(Duration::from_secs(5), |w| w
            .acks()
            .iter()
            .any(|a| a.message_id == message_id))
            .await
    );
    let ack = ws
        .acks()
        .into_iter()
        .find(|a| a.message_id == message_id)
        .unwrap();
    assert_eq!(ack.code, 200);
    ack.data.expect("a callback ack carries the response")
}

fn verification_link(answer: &Value) -> String {
    answer["card"]["data"]["body"]["elements"]
        .as_array()
        .and_then(|els| els.iter().find(|e| e["tag"] == "button"))
        .and_then(|b| b["behaviors"][0]["default_url"].as_str())
        .unwrap_or_else(|| panic!("no verification link in {answer}"))
        .to_owned()
}

#[actix_rt::test]
async fn card_clicks_over_the_long_connection_lead_to_a_completed_authorization() {
    for db in backends() {
        let backend = db.backend();
        let (app, _) = counting_app(db, &[], |sim| {
            sim.state().device.configure(|s| s.interval = 1)
        })
        .await;
        let alice = "ou_alice_ws_000000000000000001";
        let mut user = SimUser::new(alice, "Alice");
        user.email = Some("alice@example.com".into());
        app.sim.state().open_api.oauth.add_user(user);
        let sent: Value = app
            .admin_post("/admin/auth-cards", json!({"user_id": alice}))
            .await
            .json()
            .await
            .unwrap();
        let card_message = sent["message_id"].as_str().unwrap();

        // The click arrives as the SDKs receive it: a `type=event` frame.
        let click = card_click::click(app.sim.state(), card_message, alice).unwrap();
        let first = acked_answer(&app, &app.sim.ws().push_event(&click)).await;
        let link = verification_link(&first);

        // Some setups deliver clicks as `type=card` frames: answered alike.
        let click = card_click::click(app.sim.state(), card_message, alice).unwrap();
        let second = acked_answer(&app, &app.sim.ws().push_card(&click)).await;
        assert_eq!(verification_link(&second), link, "{backend}");

        let user_code = url::Url::parse(&link)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "user_code")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        assert!(app.sim.state().device.approve_as(&user_code, alice));
        let path = format!("/admin/sessions/{}", sent["session_id"].as_str().unwrap());
        let session = wait_for(
            "the session to complete",
            Duration::from_secs(20),
            || async {
                let s: Value = app.admin_get(&path).await.json().await.ok()?;
                (s["state"] == "completed").then_some(s)
            },
        )
        .await;
        assert_eq!(session["email"], "alice@example.com", "{backend}");
    }
}

#[actix_rt::test]
async fn clicks_in_event_frames_are_acked_with_a_body_whatever_their_outcome() {
    for db in backends() {
        let backend = db.backend();
        let (app, _) = counting_app(db, &[], |_| {}).await;
        let alice = "ou_alice_ack_00000000000000001";
        app.sim
            .state()
            .open_api
            .oauth
            .add_user(SimUser::new(alice, "Alice"));
        let sent: Value = app
            .admin_post("/admin/auth-cards", json!({"user_id": alice}))
            .await
            .json()
            .await
            .unwrap();
        let state = app.sim.state();
        let ours = card_click::click(state, sent["message_id"].as_str().unwrap(), alice).unwrap();
        let foreign = card_click::click_value(state, alice, json!({"poll": "lunch", "choice": 2}));
        let unknown = card_click::click_value(state, alice, json!({"action": "no.such.action"}));
        let ws = app.sim.ws();
        for (what, click) in [
            ("the first click", &ours),
            ("a duplicate", &ours),
            ("a foreign card", &foreign),
            ("an unhandled action", &unknown),
        ] {
            // `push_event` sends `type=event` frames, as the platform does.
            let message_id = ws.push_event(click);
            assert!(
                ws.wait_until(Duration::from_secs(5), |w| w
                    .acks()
                    .iter()
                    .any(|a| a.message_id == message_id))
                    .await,
                "{backend}: {what} not acked"
            );
            let ack = ws
                .acks()
                .into_iter()
                .find(|a| a.message_id == message_id)
                .unwrap();
            assert_eq!(ack.frame.header("type"), Some("event"));
            let data = ack
                .data
                .unwrap_or_else(|| panic!("{backend}: {what} acked without a body"));
            assert!(data.is_object(), "{backend}: {what}: {data}");
            if what == "a duplicate" {
                assert_eq!(data, json!({}), "{backend}");
            }
        }
    }
}

#[actix_rt::test]
async fn unhandled_events_are_counted_once_and_their_redeliveries_as_duplicates() {
    for db in backends() {
        let backend = db.backend();
        let (app, _) = counting_app(db, &[], |sim| {
            sim.ws().set_redelivery_timeout(Duration::from_secs(2))
        })
        .await;
        // Metrics are process-wide and tests run concurrently: a type of
        // this test's own keeps its series exact.
        let event_type = format!("test.nobody.handles.{backend}");
        let series = |outcome: &str| {
            format!(r#"lark_events_total{{event_type="{event_type}",outcome="{outcome}"}}"#)
        };
        let duplicates =
            |text: &str| metric_value(text, "lark_events_duplicate_total").unwrap_or(0.0);
        let duplicates_before = duplicates(&app.metrics().await);

        let ws = app.sim.ws();
        ws.lose_acks(5);
        let pushed: Vec<String> = (0..2000)
            .map(|i| {
                ws.push_event(&json!({
                    "schema": "2.0",
                    "header": {"event_id": format!("nobody-{backend}-{i}"), "event_type": event_type,
                               "create_time": "1608725989000", "token": "vtok",
                               "app_id": lark_service::sim::SIM_APP_ID, "tenant_key": "t"},
                    "event": {}
                }))
            })
            .collect();
        assert!(
            ws.wait_all_acked(Duration::from_secs(60)).await,
            "{backend}: {} never acked",
            ws.unacked()
        );
        let redelivered: u32 = pushed.iter().map(|id| ws.attempts(id) - 1).sum();
        assert!(
            redelivered >= 5,
            "{backend}: the lost acks were redelivered"
        );

        let text = app.metrics().await;
        assert_eq!(
            metric_value(&text, &series("unhandled")),
            Some(2000.0),
            "{backend}"
        );
        assert_eq!(metric_value(&text, &series("duplicate")), None, "{backend}");
        assert!(
            duplicates(&text) - duplicates_before >= f64::from(redelivered),
            "{backend}: {redelivered} redeliveries, not all counted as duplicates"
        );
    }
}

#[actix_rt::test]
async fn twenty_disconnects_during_two_thousand_events_lose_and_double_nothing() {
    for db in backends() {
        let backend = db.backend();
        let (app, seen) = counting_app(db, &[], |sim| {
            sim.ws().set_redelivery_timeout(Duration::from_secs(2))
        })
        .await;
        let ws = app.sim.ws();
        for i in 0..2000 {
            if i % 7 == 0 {
                ws.push(
                    serde_json::to_vec(&event(&format!("ev-{i}"))).unwrap(),
                    Push {
                        kind: lark_service::ws::MessageType::Event,
                        fragments: 2,
                    },
                );
            } else {
                ws.push_event(&event(&format!("ev-{i}")));
            }
        }
        for round in 1..=20u64 {
            let target = (round as usize) * 90;
            assert!(
                ws.wait_until(Duration::from_secs(30), |w| w.ack_count() >= target)
                    .await,
                "{backend}: stalled before disconnect {round}"
            );
            ws.drop_connections();
            assert!(
                ws.wait_for_connections(round + 1, Duration::from_secs(10))
                    .await,
                "{backend}: no reconnect after {round}"
            );
        }
        assert!(
            ws.wait_all_acked(Duration::from_secs(60)).await,
            "{backend}: {} events never acked",
            ws.unacked()
        );
        assert_handled_once(&seen, 2000, backend);
    }
}

/// `ws_connection` as `/admin/actors` shows it.
async fn ws_actor(app: &TestApp) -> Option<Value> {
    let body: Value = app.admin_get("/admin/actors").await.json().await.ok()?;
    body["actors"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == "ws_connection")
        .cloned()
}

#[actix_rt::test]
async fn the_connection_limit_refusal_is_shown_as_refused_and_retried_only_at_the_cap() {
    let app = spawn(
        TestDb::sqlite(),
        &[("LARK_VERIFICATION_TOKEN", "vtok")],
        |sim| sim.ws().refuse_handshakes(100, 514, Some(1_000_040_350)),
        |b| b,
    )
    .await;
    let actor = wait_for(
        "the connection to be refused",
        Duration::from_secs(10),
        || async {
            let ws = ws_actor(&app).await?;
            (ws["state"] == "refused").then_some(ws)
        },
    )
    .await;
    assert!(
        actor["last_error"].as_str().unwrap().contains("refused"),
        "{actor}"
    );
    assert_eq!(actor["details"]["refused_reason"], "connection_limit");
    assert_eq!(
        metric_value(
            &app.metrics().await,
            r#"lark_ws_refused{reason="connection_limit"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        app.sim
            .recorder()
            .requests_to("/callback/ws/endpoint")
            .len(),
        1,
        "the next attempt waits for the 5-minute cap"
    );
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["events"], "webhook");
}

#[actix_rt::test]
async fn fifteen_refused_handshakes_in_a_row_are_outlasted_without_a_process_restart() {
    let app = spawn(
        TestDb::sqlite(),
        &[("WEBSOCKET_MAX_RECONNECT_RETRIES", "4")],
        |sim| {
            // No jitter and one second between attempts, so the 15 refusals
            // take three bursts and two supervisor restarts.
            sim.ws().set_client_config(ClientConfig {
                reconnect_nonce: Duration::ZERO,
                ..test_client_config(30)
            });
            sim.ws().refuse_handshakes(15, 503, None);
        },
        |b| b,
    )
    .await;
    assert!(
        app.sim
            .ws()
            .wait_for_connections(1, Duration::from_secs(60))
            .await,
        "never connected"
    );
    assert_eq!(
        app.sim
            .recorder()
            .requests_to("/callback/ws/endpoint")
            .len(),
        16,
        "15 refused attempts, then the one that connected"
    );
    let actor = wait_for("the connection to run", Duration::from_secs(5), || async {
        let ws = ws_actor(&app).await?;
        (ws["state"] == "running").then_some(ws)
    })
    .await;
    assert!(
        actor["restarts"].as_u64().unwrap() >= 2,
        "bursts end in supervisor restarts: {actor}"
    );
    let message_id = app.sim.ws().push_event(&event("after-outage"));
    assert!(
        app.sim
            .ws()
            .wait_until(Duration::from_secs(5), |w| w
                .acks()
                .iter()
                .any(|a| a.message_id == message_id))
            .await
    );
}

/// `/readyz` once `ws_connection` is refused (so the long connection is
/// down for good in this test), with `extra` configuration.
async fn readiness_with_the_long_connection_down(
    db: TestDb,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let app = spawn(
        db,
        extra,
        |sim| sim.ws().refuse_handshakes(100, 403, None),
        |b| b,
    )
    .await;
    wait_for(
        "the connection to be refused",
        Duration::from_secs(10),
        || async { (ws_actor(&app).await?["state"] == "refused").then_some(()) },
    )
    .await;
    let resp = app.get("/readyz").await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[actix_rt::test]
async fn readiness_fails_with_the_long_connection_down_and_no_webhook_secret() {
    for db in backends() {
        let backend = db.backend();
        // The webhook is enabled by default, but without a secret it answers 503.
        let (status, body) = readiness_with_the_long_connection_down(db, &[]).await;
        assert_eq!(status, 503, "{backend}: {body}");
        assert_eq!(body["events"], "none", "{backend}");
        assert_eq!(body["webhook_accepts"], false, "{backend}");
        assert_eq!(body["database"], "ok", "{backend}");
    }
}

#[actix_rt::test]
async fn readiness_holds_with_the_long_connection_down_when_the_webhook_is_configured() {
    for db in backends() {
        let backend = db.backend();
        let (status, body) =
            readiness_with_the_long_connection_down(db, &[("LARK_VERIFICATION_TOKEN", "vtok")])
                .await;
        assert_eq!(status, 200, "{backend}: {body}");
        assert_eq!(body["events"], "webhook", "{backend}");
        assert_eq!(body["webhook_accepts"], true, "{backend}");
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn post_signed(
    app: &TestApp,
    key: &str,
    body: &[u8],
    timestamp: u64,
    signature: Option<&str>,
) -> reqwest::Response {
    let ts = timestamp.to_string();
    let sig = signature
        .map(str::to_owned)
        .unwrap_or_else(|| sign(&ts, "nonce-1", key, body));
    app.http
        .post(app.url("/webhook/event"))
        .header("X-Lark-Request-Timestamp", ts)
        .header("X-Lark-Request-Nonce", "nonce-1")
        .header("X-Lark-Signature", sig)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

#[actix_rt::test]
async fn the_webhook_verifies_decrypts_and_shares_dedup_with_the_long_connection() {
    let key = "test key";
    let (app, seen) = counting_app(
        TestDb::sqlite(),
        &[
            ("LARK_ENCRYPT_KEY", key),
            ("LARK_VERIFICATION_TOKEN", "vtok"),
        ],
        |_| {},
    )
    .await;
    let wrap = |v: &Value| {
        serde_json::to_vec(&json!({"encrypt": encrypt(key, &serde_json::to_vec(v).unwrap())}))
            .unwrap()
    };

    // URL verification, encrypted and unsigned, as the console sends it.
    let challenge =
        wrap(&json!({"challenge": "ajls384kdjx98XX", "token": "vtok", "type": "url_verification"}));
    let resp = app
        .http
        .post(app.url("/webhook/event"))
        .body(challenge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"challenge": "ajls384kdjx98XX"})
    );

    // A signed, encrypted event is handled.
    let body = wrap(&event("wh-1"));
    let resp = post_signed(&app, key, &body, now_secs(), None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(seen.lock().unwrap().get("wh-1"), Some(&1));

    // A bad signature and a replayed old request are refused, never dispatched.
    let other = wrap(&event("wh-2"));
    let forged = post_signed(&app, key, &other, now_secs(), Some(&"0".repeat(64))).await;
    assert_eq!(forged.status(), 401);
    assert_eq!(
        forged.json::<Value>().await.unwrap()["error"]["code"],
        "bad_signature"
    );
    let replay = post_signed(&app, key, &other, now_secs() - 600, None).await;
    assert_eq!(replay.status(), 401);
    assert_eq!(
        replay.json::<Value>().await.unwrap()["error"]["code"],
        "stale_timestamp"
    );
    let wrong_token = wrap(
        &json!({"schema": "2.0", "header": {"event_id": "wh-3", "event_type": "test.count", "token": "nope"}, "event": {}}),
    );
    assert_eq!(
        post_signed(&app, key, &wrong_token, now_secs(), None)
            .await
            .status(),
        401
    );
    assert!(!seen.lock().unwrap().contains_key("wh-2"));
    assert!(!seen.lock().unwrap().contains_key("wh-3"));

    // Garbage is a clear 4xx, never a panic.
    for garbage in [&b"not json"[..], b"{\"encrypt\": \"!!!\"}", b"[]"] {
        let resp = post_signed(&app, key, garbage, now_secs(), None).await;
        assert!(
            resp.status().is_client_error(),
            "{:?}",
            String::from_utf8_lossy(garbage)
        );
    }

    // The same event over the long connection is acked but not handled again.
    let message_id = app.sim.ws().push_event(&event("wh-1"));
    assert!(
        app.sim
            .ws()
            .wait_until(Duration::from_secs(5), |w| w
                .acks()
                .iter()
                .any(|a| a.message_id == message_id))
            .await
    );
    assert_eq!(seen.lock().unwrap().get("wh-1"), Some(&1));
}

#[actix_rt::test]
async fn the_webhook_refuses_to_run_without_secrets() {
    let app = spawn(TestDb::sqlite(), &[], |_| {}, |b| b).await;
    let resp = app
        .http
        .post(app.url("/webhook/event"))
        .body(serde_json::to_vec(&event("x")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "webhook_not_configured"
    );
}
