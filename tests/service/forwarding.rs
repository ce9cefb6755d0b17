//! Forwarding the app's events through the outbox: to an HTTP sink that
//! fails and goes down, to NATS JetStream from two replicas on one
//! PostgreSQL database while the platform redelivers, across a restart;
//! card callbacks answered by a sink (HTTP response or NATS reply) or by the
//! fallback toast; bad sink configuration.
//!
//! The JetStream tests need the broker on this machine and fail without it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::replica::Replica;
use futures_util::StreamExt;
use lark_service::forward::card_callback::FALLBACK_TOAST;
use lark_service::forward::config::ForwardSettings;
use lark_service::forward::nats_sink::NatsSink;
use lark_service::forward::sink::{Delivery, Sink};
use lark_service::sim::event_sink::EventSink;
use lark_service::sim::Simulator;
use serde_json::{json, Value};

use crate::support::nats::TestStream;
use crate::support::{backends, metric_value, settings_for, spawn, wait_for, TestApp, TestDb};

const SECRET: &str = "forwarding-test-secret-0123";

fn event(i: usize, tag: &str) -> Value {
    json!({
        "schema": "2.0",
        "header": {"event_id": format!("{tag}-{i}"), "event_type": "im.message.receive_v1",
                   "create_time": "1608725989000", "token": "v",
                   "app_id": lark_service::sim::SIM_APP_ID, "tenant_key": "t"},
        "event": {"message": {"message_id": format!("om_{i}"), "content": "{\"text\":\"hi\"}"}}
    })
}

fn http_sinks(sink: &EventSink, events: &str) -> String {
    json!([{
        "name": "hook", "type": "http", "events": [events], "url": sink.url(), "secret": SECRET,
        "timeout_ms": 1000, "concurrency": 32, "max_attempts": 10000,
        "backoff_base_ms": 10, "backoff_max_ms": 200
    }])
    .to_string()
}

fn expected_ids(n: usize, tag: &str) -> HashSet<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

/// Every expected id arrived, nothing else did, and every request was signed.
fn assert_all_arrived(sink: &EventSink, expected: &HashSet<String>) {
    let received = sink.received();
    let distinct: HashSet<String> = received.iter().cloned().collect();
    assert_eq!(&distinct, expected, "every event arrives, and only those");
    assert!(received.len() >= expected.len());
    assert_eq!(
        sink.bad_requests(),
        0,
        "every request is signed and carries its event id"
    );
}

#[actix_rt::test]
async fn every_event_reaches_an_http_sink_that_fails_and_goes_down() {
    const N: usize = 5000;
    for db in backends() {
        let backend = db.backend();
        let sink = EventSink::start(SECRET).unwrap();
        sink.set_fail_ratio(0.3);
        let sinks = http_sinks(&sink, "im.message.*");
        let app = spawn(db, &[("FORWARD_SINKS", &sinks)], |_| {}, |b| b).await;
        let started = Instant::now();

        let first = app
            .sim
            .ws()
            .stream_events(N / 2, 256, Duration::from_secs(20), |i| event(i, "http"))
            .await;
        assert_eq!(first.acked, N / 2, "{backend}: platform got its acks");
        // The sink goes down; events keep being acked, queued in the outbox.
        sink.set_down(true);
        let before = sink.requests();
        let second = app
            .sim
            .ws()
            .stream_events(N / 2, 256, Duration::from_secs(20), |i| {
                event(N / 2 + i, "http")
            })
            .await;
        assert_eq!(
            second.acked,
            N / 2,
            "{backend}: acks do not wait for the sink"
        );
        wait_for(
            "retries against the downed sink",
            Duration::from_secs(10),
            || async { (sink.requests() > before + 100).then_some(()) },
        )
        .await;
        sink.set_down(false);

        let expected = expected_ids(N, "http");
        wait_for(
            "every event at the sink",
            Duration::from_secs(90),
            || async {
                let got: HashSet<String> = sink.received().into_iter().collect();
                (got.len() == N).then_some(())
            },
        )
        .await;
        assert_all_arrived(&sink, &expected);
        wait_for("an empty backlog", Duration::from_secs(10), || async {
            let body: Value = app
                .admin_get("/admin/outbox?state=pending")
                .await
                .json()
                .await
                .ok()?;
            body["rows"].as_array()?.is_empty().then_some(())
        })
        .await;
        let metrics = app.metrics().await;
        assert!(
            metrics.contains("lark_forward_total{sink=\"hook\",outcome=\"retry\"}"),
            "failures are counted"
        );
        eprintln!(
            "{backend}: {N} events forwarded through failures in {:?} ({} requests, {} accepted)",
            started.elapsed(),
            sink.requests(),
            sink.received_count()
        );
        app.stop().await;
    }
}

#[actix_rt::test]
async fn dead_letters_are_listed_and_retried_once_the_sink_is_back() {
    const N: usize = 3;
    for db in backends() {
        let backend = db.backend();
        let sink = EventSink::start(SECRET).unwrap();
        sink.set_down(true);
        let sinks = json!([{
            "name": "hook", "type": "http", "events": ["im.message.*"], "url": sink.url(),
            "secret": SECRET, "max_attempts": 3, "backoff_base_ms": 10, "backoff_max_ms": 20
        }])
        .to_string();
        let app = spawn(db, &[("FORWARD_SINKS", &sinks)], |_| {}, |b| b).await;
        for i in 0..N {
            app.deliver(&event(i, "dead")).await;
        }
        let dead = wait_for("three dead letters", Duration::from_secs(20), || async {
            let body: Value = app
                .admin_get("/admin/outbox?state=dead")
                .await
                .json()
                .await
                .ok()?;
            let rows = body["rows"].as_array()?.clone();
            (rows.len() == N).then_some(rows)
        })
        .await;
        for row in &dead {
            assert_eq!(row["attempts"], 3, "{backend}: {row}");
            assert_eq!(row["last_error"], "answered HTTP 503", "{backend}: {row}");
            assert!(
                row.get("payload").is_none(),
                "{backend}: payloads stay private"
            );
        }
        assert_eq!(sink.received_count(), 0);

        let status = |path: String| {
            let app = &app;
            async move { app.admin_post(&path, json!({})).await.status().as_u16() }
        };
        assert_eq!(status("/admin/outbox/abc/retry".into()).await, 400);
        assert_eq!(status("/admin/outbox/999999/retry".into()).await, 404);
        sink.set_down(false);
        for row in &dead {
            let path = format!("/admin/outbox/{}/retry", row["id"]);
            assert_eq!(status(path).await, 200, "{backend}");
        }
        wait_for("the retried events", Duration::from_secs(10), || async {
            (sink.received_count() >= N).then_some(())
        })
        .await;
        assert_all_arrived(&sink, &expected_ids(N, "dead"));
        let dead_ids: Vec<&Value> = dead.iter().map(|r| &r["id"]).collect();
        wait_for(
            "the retried rows marked delivered",
            Duration::from_secs(10),
            || async {
                let listed: Value = app
                    .admin_get("/admin/outbox?state=delivered")
                    .await
                    .json()
                    .await
                    .ok()?;
                let delivered: Vec<&Value> = listed["rows"]
                    .as_array()?
                    .iter()
                    .map(|r| &r["id"])
                    .collect();
                dead_ids
                    .iter()
                    .all(|id| delivered.contains(id))
                    .then_some(())
            },
        )
        .await;
        // A delivered row is no dead letter: retrying it is refused.
        let path = format!("/admin/outbox/{}/retry", dead[0]["id"]);
        assert_eq!(status(path).await, 409, "{backend}");
        app.stop().await;
    }
}

/// The dead letters `app` lists.
async fn dead_letters(app: &TestApp) -> Option<Vec<Value>> {
    let body: Value = app
        .admin_get("/admin/outbox?state=dead")
        .await
        .json()
        .await
        .ok()?;
    body["rows"].as_array().cloned()
}

#[actix_rt::test]
async fn forwarded_events_carry_no_verification_token() {
    for db in backends() {
        let backend = db.backend();
        let sink = EventSink::start(SECRET).unwrap();
        let sinks = http_sinks(&sink, "im.message.*");
        let app = spawn(db, &[("FORWARD_SINKS", &sinks)], |_| {}, |b| b).await;
        let sent = event(0, "token");
        assert_eq!(
            sent["header"]["token"], "v",
            "the platform's envelope has one"
        );
        app.deliver(&sent).await;
        let got = wait_for("the forwarded event", Duration::from_secs(10), || async {
            sink.payloads().into_iter().next()
        })
        .await;
        assert!(got["header"].get("token").is_none(), "{backend}: {got}");
        assert_eq!(got["header"]["event_id"], "token-0", "{backend}");
        assert_eq!(got["event"], sent["event"], "{backend}: the rest is kept");
        app.stop().await;
    }
}

#[actix_rt::test]
async fn a_sink_answering_a_redirect_gets_no_second_post_elsewhere() {
    for db in backends() {
        let backend = db.backend();
        let elsewhere = EventSink::start(SECRET).unwrap();
        let sink = EventSink::start(SECRET).unwrap();
        sink.set_redirect(Some(elsewhere.url()));
        let sinks = json!([{
            "name": "moved", "type": "http", "events": ["im.message.*"], "url": sink.url(),
            "secret": SECRET, "max_attempts": 2, "backoff_base_ms": 10, "backoff_max_ms": 20
        }])
        .to_string();
        let app = spawn(db, &[("FORWARD_SINKS", &sinks)], |_| {}, |b| b).await;
        app.deliver(&event(0, "redirect")).await;
        let dead = wait_for("the dead letter", Duration::from_secs(20), || async {
            dead_letters(&app).await.filter(|rows| !rows.is_empty())
        })
        .await;
        assert_eq!(dead[0]["attempts"], 2, "{backend}: {dead:?}");
        let error = dead[0]["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("307") && error.contains("not followed"),
            "{backend}: {error}"
        );
        assert_eq!(sink.requests(), 2, "{backend}: one POST per attempt");
        assert_eq!(
            elsewhere.requests(),
            0,
            "{backend}: nothing reached the redirect target"
        );
        app.stop().await;
    }
}

#[actix_rt::test]
async fn rows_of_a_removed_sink_become_dead_letters() {
    const N: usize = 20;
    for db in backends() {
        let backend = db.backend();
        let sink = EventSink::start(SECRET).unwrap();
        sink.set_down(true);
        let old = json!([{
            "name": "old-hook", "type": "http", "events": ["im.message.*"], "url": sink.url(),
            "secret": SECRET, "backoff_base_ms": 60000, "backoff_max_ms": 60000
        }])
        .to_string();
        let sim = Simulator::start().unwrap();
        sim.ws()
            .set_client_config(crate::support::test_client_config(30));
        let first = Replica::start(settings_for(&sim, &db, &[("FORWARD_SINKS", &old)]));
        let report = sim
            .ws()
            .stream_events(N, 16, Duration::from_secs(20), |i| event(i, "removed"))
            .await;
        assert_eq!(report.acked, N, "{backend}");
        assert_eq!(
            first.outbox_rows("pending").await,
            Some(N),
            "{backend}: queued"
        );
        first.kill().await;

        // The sink is renamed: the queued rows have nobody to go to.
        let renamed = old.replace("old-hook", "new-hook");
        let app = spawn(db, &[("FORWARD_SINKS", &renamed)], |_| {}, |b| b).await;
        let dead = wait_for("the dead letters", Duration::from_secs(10), || async {
            dead_letters(&app).await.filter(|rows| rows.len() == N)
        })
        .await;
        for row in &dead {
            assert_eq!(row["sink"], "old-hook", "{backend}: {row}");
            assert_eq!(row["last_error"], "sink removed", "{backend}: {row}");
        }
        let retry = app
            .admin_post(&format!("/admin/outbox/{}/retry", dead[0]["id"]), json!({}))
            .await;
        assert_eq!(retry.status(), 409, "{backend}");
        let body: Value = retry.json().await.unwrap();
        assert_eq!(body["error"]["code"], "sink_removed", "{backend}: {body}");
        app.stop().await;
    }
}

#[actix_rt::test]
async fn a_restart_in_the_middle_loses_nothing() {
    const N: usize = 400;
    for db in backends() {
        let sink = EventSink::start(SECRET).unwrap();
        sink.set_down(true);
        let sinks = http_sinks(&sink, "im.message.*");
        let sim = Simulator::start().unwrap();
        sim.ws()
            .set_client_config(crate::support::test_client_config(30));
        let first = Replica::start(settings_for(&sim, &db, &[("FORWARD_SINKS", &sinks)]));
        let report = sim
            .ws()
            .stream_events(N, 128, Duration::from_secs(20), |i| event(i, "restart"))
            .await;
        assert_eq!(report.acked, N);
        first.kill().await;
        drop(sim);

        sink.set_down(false);
        let sim = Simulator::start().unwrap();
        let second = Replica::start(settings_for(&sim, &db, &[("FORWARD_SINKS", &sinks)]));
        let expected = expected_ids(N, "restart");
        wait_for(
            "every queued event after the restart",
            Duration::from_secs(30),
            || async {
                let got: HashSet<String> = sink.received().into_iter().collect();
                (got.len() == N).then_some(())
            },
        )
        .await;
        assert_all_arrived(&sink, &expected);
        second.kill().await;
    }
}

#[actix_rt::test]
async fn jetstream_holds_each_event_once_from_two_replicas_and_redeliveries() {
    const N: usize = 5000;
    const REPUSHED: usize = 500;
    for db in backends() {
        let backend = db.backend();
        let bus = TestStream::fresh().await;
        let sinks = json!([bus.sink("bus", "im.message.*")]).to_string();
        let sim = Simulator::start().unwrap();
        sim.ws()
            .set_client_config(crate::support::test_client_config(30));
        // Acks slower than this are pushed again, maybe to the other replica.
        sim.ws().set_redelivery_timeout(Duration::from_secs(1));
        let instances = if backend == "postgres" {
            2
        } else {
            eprintln!(
                "{backend}: one service instance (SQLite serves one replica); \
                 the two-instance half runs on PostgreSQL, with TEST_DATABASE_URL set"
            );
            1
        };
        let replicas: Vec<Replica> = (0..instances)
            .map(|_| Replica::start(settings_for(&sim, &db, &[("FORWARD_SINKS", &sinks)])))
            .collect();
        assert!(
            sim.ws()
                .wait_for_connections(instances as u64, Duration::from_secs(10))
                .await,
            "{backend}: every replica connects"
        );

        let first = sim
            .ws()
            .stream_events(N / 2, 256, Duration::from_secs(60), |i| event(i, "js"))
            .await;
        assert_eq!(first.acked, N / 2, "{backend}: first half acked");
        // The connections break mid-stream; what was in flight comes again.
        sim.ws().drop_after_frames(200);
        let second = sim
            .ws()
            .stream_events(N / 2, 256, Duration::from_secs(60), |i| {
                event(N / 2 + i, "js")
            })
            .await;
        assert_eq!(second.acked, N / 2, "{backend}: second half acked");
        // And the platform sends some acked events again, as it does when
        // it missed an ack.
        for i in (0..N).step_by(N / REPUSHED) {
            sim.ws().push_event(&event(i, "js"));
        }
        assert!(
            sim.ws().wait_all_acked(Duration::from_secs(30)).await,
            "{backend}: redeliveries acked"
        );

        wait_for(
            "every event in the stream",
            Duration::from_secs(60),
            || async { (bus.count().await >= N as u64).then_some(()) },
        )
        .await;
        wait_for("an empty outbox", Duration::from_secs(30), || async {
            (replicas[0].outbox_rows("pending").await? == 0).then_some(())
        })
        .await;
        let ids = bus.read_all().await;
        let distinct: HashSet<String> = ids.keys().cloned().collect();
        assert_eq!(distinct, expected_ids(N, "js"), "{backend}: every event");
        let repeated: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
        assert!(repeated.is_empty(), "{backend}: held twice: {repeated:?}");

        // A publish repeated after a crash between the stream's ack and the
        // row being marked delivered: JetStream drops it by its Nats-Msg-Id.
        let config = ForwardSettings::parse(Some(&sinks))
            .unwrap()
            .sinks
            .remove(0);
        let sink = Sink::connect(&config).await.unwrap();
        let again = event(7, "js").to_string();
        sink.deliver(&Delivery {
            event_id: "js-7",
            event_type: "im.message.receive_v1",
            payload: &again,
            attempt: 2,
        })
        .await
        .unwrap();
        assert_eq!(
            bus.count().await,
            N as u64,
            "{backend}: the copy is dropped"
        );
        eprintln!(
            "{backend}: {N} events from {instances} instance(s), {REPUSHED} pushed again, \
             {} connections: the stream holds each once",
            sim.ws().connections_total()
        );
        for replica in replicas {
            replica.kill().await;
        }
        bus.delete().await;
    }
}

fn foreign_click(sim: &Simulator) -> Value {
    lark_service::sim::card_click::click_value(
        sim.state(),
        "ou_someone",
        json!({"kind": "vote", "option": "a"}),
    )
}

/// What every kind of sink must do with foreign card callbacks: answer one
/// (its answer is the callback response), and once `slow()` made it slower
/// than the deadline, leave the user the fallback toast, in time and
/// counted. `asked()` lists the event ids the sink has answered.
async fn check_card_callbacks(
    app: &TestApp,
    sink: &str,
    answer: &Value,
    asked: impl Fn() -> Vec<String>,
    slow: impl FnOnce(),
) {
    let click = foreign_click(&app.sim);
    let outcome = app.deliver(&click).await;
    assert_eq!(
        outcome.body(),
        Some(answer),
        "the sink's answer is the response"
    );
    let id = click["header"]["event_id"].as_str().unwrap().to_owned();
    assert_eq!(asked(), vec![id]);

    slow();
    let started = Instant::now();
    let outcome = app.deliver(&foreign_click(&app.sim)).await;
    let took = started.elapsed();
    assert_eq!(outcome.code(), 200);
    assert_eq!(outcome.body().unwrap()["toast"]["content"], FALLBACK_TOAST);
    assert!(
        took < Duration::from_millis(2500),
        "answered within the deadline: {took:?}"
    );
    let series = format!("lark_forward_total{{sink=\"{sink}\",outcome=\"timeout\"}}");
    let metrics = app.metrics().await;
    assert_eq!(metric_value(&metrics, &series), Some(1.0), "{series}");
}

#[actix_rt::test]
async fn foreign_card_callbacks_are_answered_by_the_sink_or_a_neutral_toast() {
    let db = TestDb::sqlite();
    let sink = EventSink::start(SECRET).unwrap();
    let answer = json!({"toast": {"type": "success", "content": "Vote counted"}});
    sink.set_reply(answer.clone());
    let sinks = http_sinks(&sink, "card.action.trigger");
    let app = spawn(db, &[("FORWARD_SINKS", &sinks)], |_| {}, |b| b).await;

    check_card_callbacks(
        &app,
        "hook",
        &answer,
        || sink.received(),
        || sink.set_delay(Duration::from_secs(4)),
    )
    .await;
    let asked = sink.payloads();
    assert!(
        asked[0]["header"].get("token").is_none(),
        "no verification token: {}",
        asked[0]
    );

    // An answer over 64 KiB is refused: the user gets the neutral toast.
    sink.set_delay(Duration::ZERO);
    sink.set_reply(json!({"toast": {"type": "info", "content": "x".repeat(70 * 1024)}}));
    let outcome = app.deliver(&foreign_click(&app.sim)).await;
    assert_eq!(outcome.body().unwrap()["toast"]["content"], FALLBACK_TOAST);
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "lark_forward_total{sink=\"hook\",outcome=\"error\"}"
        ),
        Some(1.0)
    );
    app.stop().await;
}

#[actix_rt::test]
async fn foreign_card_callbacks_are_answered_over_nats_request_reply() {
    let bus = TestStream::fresh().await;
    let sinks = json!([bus.sink("votes", "card.action.trigger")]).to_string();
    let answer = json!({"toast": {"type": "success", "content": "Vote counted"}});
    // The operator's responder: answers each request after `delay_ms`.
    let delay_ms = Arc::new(AtomicU64::new(0));
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut requests = bus
        .client
        .subscribe(NatsSink::callback_subject(
            &bus.prefix,
            "card.action.trigger",
        ))
        .await
        .unwrap();
    bus.client.flush().await.unwrap();
    let responder = {
        let (client, answer) = (bus.client.clone(), answer.clone());
        let (delay_ms, asked) = (delay_ms.clone(), asked.clone());
        actix_rt::spawn(async move {
            while let Some(request) = requests.next().await {
                let envelope: Value = serde_json::from_slice(&request.payload).unwrap();
                let id = envelope["header"]["event_id"].as_str().unwrap().to_owned();
                asked.lock().unwrap().push(id);
                let delay = Duration::from_millis(delay_ms.load(Ordering::SeqCst));
                let (client, answer) = (client.clone(), answer.clone());
                actix_rt::spawn(async move {
                    actix_rt::time::sleep(delay).await;
                    let reply = request.reply.expect("a request has a reply subject");
                    let _ = client.publish(reply, answer.to_string().into()).await;
                });
            }
        })
    };
    let app = spawn(
        TestDb::sqlite(),
        &[("FORWARD_SINKS", &sinks)],
        |_| {},
        |b| b,
    )
    .await;

    check_card_callbacks(
        &app,
        "votes",
        &answer,
        || asked.lock().unwrap().clone(),
        || delay_ms.store(4000, Ordering::SeqCst),
    )
    .await;
    assert_eq!(
        asked.lock().unwrap().len(),
        2,
        "the slow responder was asked"
    );
    assert_eq!(
        bus.count().await,
        0,
        "callbacks are requests, not stream messages"
    );
    responder.abort();
    app.stop().await;
}

#[test]
fn a_plain_http_sink_off_loopback_stops_start_up() {
    let out = crate::support::binary::lark_service()
        .args(["serve"])
        .env("APP_ID", lark_service::sim::SIM_APP_ID)
        .env("APP_SECRET", "x")
        .env("ENCRYPTION_KEY", "11".repeat(32))
        .env(
            "FORWARD_SINKS",
            r#"[{"name":"billing-hook","type":"http","events":["*"],"url":"http://user:hunter22@events.example.com/in","secret":"0123456789abcdef"}]"#,
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FORWARD_SINKS")
            && stderr.contains("billing-hook")
            && stderr.contains("must use https://"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter22"), "{stderr}");
}

#[test]
fn a_bad_sink_configuration_stops_start_up_naming_the_sink() {
    let out = crate::support::binary::lark_service()
        .args(["serve"])
        .env("APP_ID", lark_service::sim::SIM_APP_ID)
        .env("APP_SECRET", "x")
        .env("ENCRYPTION_KEY", "11".repeat(32))
        .env(
            "FORWARD_SINKS",
            r#"[{"name":"billing-hook","type":"http","events":["*"],"url":"ftp://example.invalid/"}]"#,
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FORWARD_SINKS") && stderr.contains("billing-hook"),
        "{stderr}"
    );
}
