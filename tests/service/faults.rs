//! The fault suite: the service against a platform and a database that
//! misbehave. Connections cut at random points (mid-message included), a
//! peer that stops answering pings, the database going away mid-stream,
//! SIGTERM in the middle of a burst, and thousands of random request bodies.
//!
//! Every loop is bounded and every wait is on a condition with a deadline.
//! Random choices come from fixed seeds, so a failure replays exactly.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use futures_util::StreamExt;
use lark_service::db::connection::{build_pool, DatabaseUrl};
use lark_service::db::schema::{
    device_tokens, event_outbox, processed_events, sync_runs, user_auth_sessions,
};
use lark_service::db::Db;
use lark_service::events::webhook::{encrypt, sign};
use lark_service::sim::event_sink::EventSink;
use lark_service::sim::ws_server::Push;
use lark_service::sim::{Simulator, WsSim};
use lark_service::ws::{ClientConfig, MessageType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::support::binary::{lark_service_against, Served};
use crate::support::counting::{assert_handled_once, counting_app, event};
use crate::support::{
    backends, in_seconds, metric_value, seed_refreshable, sim_user, spawn_app_with,
    test_client_config, wait_for, TestApp, TestDb, ADMIN_TOKEN, FAST, REFRESH_PATH,
};

/// Reconnect at once after a drop (no jitter), pinging every `ping_seconds`.
fn reconnect_at_once(ping_seconds: u64) -> ClientConfig {
    ClientConfig {
        reconnect_nonce: Duration::ZERO,
        ..test_client_config(ping_seconds)
    }
}

/// Every event id in the dedup ledger.
async fn processed(db: &Db) -> Vec<String> {
    db.read(|c| {
        Ok(processed_events::table
            .select(processed_events::event_id)
            .load::<String>(c)?)
    })
    .await
    .expect("processed_events readable")
}

/// Pushed `message_id` → the event id it carries.
type Pushed = HashMap<String, String>;

/// Event ids whose message the simulator got a 200 ack for.
fn acked_ok(ws: &WsSim, pushed: &Pushed) -> HashSet<String> {
    ws.acks()
        .into_iter()
        .filter(|a| a.code == 200)
        .filter_map(|a| pushed.get(&a.message_id).cloned())
        .collect()
}

#[actix_rt::test]
async fn a_hundred_random_drops_during_ten_thousand_events_lose_and_double_nothing() {
    const EVENTS: usize = 10_000;
    const DROPS: usize = 100;
    /// Unacked events at most; keeps what a drop throws away small.
    const WINDOW: usize = 200;
    const STALL: Duration = Duration::from_secs(30);
    for db in backends() {
        let backend = db.backend();
        let (app, seen) = counting_app(db, &[], |sim| {
            sim.ws().set_client_config(reconnect_at_once(30));
            sim.ws().set_redelivery_timeout(Duration::from_millis(300));
        })
        .await;
        let ws = app.sim.ws();
        let mut rng = StdRng::seed_from_u64(0x5eed_d20b);
        let mut drop_at = BTreeSet::new();
        while drop_at.len() < DROPS {
            drop_at.insert(rng.gen_range(1..EVENTS));
        }
        let mut drops = 0u64;
        let mut pushed = Pushed::new();
        for i in 0..EVENTS {
            assert!(
                ws.wait_until(STALL, |w| w.unacked() < WINDOW).await,
                "{backend}: stalled at event {i} with {} unacked",
                ws.unacked()
            );
            let mut fragments = rng.gen_range(1..=3);
            if drop_at.contains(&i) {
                // Cut the connection that replaced the last one cut.
                let replaced =
                    |w: &WsSim| w.connections_total() == drops + 1 && w.open_connections() == 1;
                assert!(
                    ws.wait_until(STALL, replaced).await,
                    "{backend}: no reconnect after drop {drops}"
                );
                if rng.gen_bool(0.5) {
                    ws.drop_connections();
                } else {
                    // After 1–3 of the next frames: this event has three, so
                    // the cut may fall inside it.
                    ws.drop_after_frames(rng.gen_range(1..=3));
                    fragments = 3;
                }
                drops += 1;
            }
            let push = Push {
                kind: MessageType::Event,
                fragments,
            };
            let id = format!("drop-{i}");
            let message_id = ws.push(serde_json::to_vec(&event(&id)).unwrap(), push);
            pushed.insert(message_id, id);
        }
        if !ws.wait_all_acked(Duration::from_secs(60)).await {
            let acked = acked_ok(ws, &pushed);
            let lost: Vec<_> = pushed
                .iter()
                .filter(|(_, id)| !acked.contains(*id))
                .map(|(m, id)| (m, id, ws.attempts(m), seen.lock().unwrap().get(id).copied()))
                .collect();
            panic!(
                "{backend}: never acked (message, event, attempts, handled): {lost:?}; \
                 {} open connections of {}",
                ws.open_connections(),
                ws.connections_total()
            );
        }
        assert_eq!(
            ws.connections_total(),
            DROPS as u64 + 1,
            "{backend}: one reconnect per drop, no others"
        );
        assert_handled_once(&seen, EVENTS, backend);
        assert_eq!(processed(&app.app_db).await.len(), EVENTS, "{backend}");
    }
}

#[actix_rt::test]
async fn a_peer_that_stops_answering_pings_is_replaced_within_three_intervals() {
    const PING: Duration = Duration::from_secs(1);
    let (app, seen) = counting_app(TestDb::sqlite(), &[], |sim| {
        sim.ws()
            .set_client_config(reconnect_at_once(PING.as_secs()))
    })
    .await;
    let ws = app.sim.ws();
    // The ping sent on connecting is answered; the next ones are not.
    assert!(ws.wait_for_pings(1, Duration::from_secs(5)).await);
    ws.set_silent(true);
    let answered = ws.pings();
    assert!(
        ws.wait_for_pings(answered + 1, PING * 2).await,
        "the service keeps pinging"
    );
    let first_unanswered = Instant::now();
    // Three silent intervals, then an immediate reconnect; the slack covers
    // timer ticks on a busy machine, not a fourth interval.
    assert!(
        ws.wait_for_connections(2, PING * 3 + PING / 2).await,
        "no reconnect within 3 ping intervals of the first unanswered ping ({:?} so far)",
        first_unanswered.elapsed()
    );
    ws.set_silent(false);
    let id = ws.push_event(&event("after-silence"));
    assert!(
        ws.wait_until(Duration::from_secs(5), |w| w
            .acks()
            .iter()
            .any(|a| a.message_id == id && a.code == 200))
            .await
    );
    assert_eq!(seen.lock().unwrap().get("after-silence"), Some(&1));
    let reconnects = metric_value(&app.metrics().await, "lark_ws_reconnects_total");
    assert!(reconnects >= Some(1.0), "{reconnects:?}");
}

/// Makes a test's database unavailable to the service, and available again.
enum Outage {
    /// Another connection holds SQLite's write lock: reads still work (WAL),
    /// every write waits out the busy timeout and fails.
    SqliteLock(diesel::SqliteConnection),
    /// New connections are refused and the open ones are killed.
    Postgres {
        admin: diesel::PgConnection,
        name: String,
    },
}

impl Outage {
    fn begin(db: &TestDb) -> Self {
        match db {
            TestDb::Sqlite { url, .. } => {
                let path = url.strip_prefix("sqlite://").expect("sqlite URL");
                let mut conn = diesel::SqliteConnection::establish(path).expect("open SQLite");
                conn.batch_execute("PRAGMA busy_timeout = 10000; BEGIN EXCLUSIVE;")
                    .expect("take the write lock");
                Self::SqliteLock(conn)
            }
            TestDb::Postgres {
                admin_url, name, ..
            } => {
                let mut admin = diesel::PgConnection::establish(admin_url).expect("admin");
                admin
                    .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
                    .expect("refuse new connections");
                admin
                    .batch_execute(&format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = '{name}'"
                    ))
                    .expect("end the open ones");
                Self::Postgres {
                    admin,
                    name: name.clone(),
                }
            }
        }
    }

    fn end(self) {
        match self {
            Self::SqliteLock(mut conn) => conn.batch_execute("ROLLBACK").expect("release"),
            Self::Postgres { mut admin, name } => admin
                .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
                .expect("give the database back"),
        }
    }
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let resp = app.get("/readyz").await;
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("readyz JSON"))
}

#[actix_rt::test]
async fn while_the_database_is_down_nothing_is_acked_and_the_service_recovers_by_itself() {
    const WAIT: Duration = Duration::from_secs(60);
    for db in backends() {
        let backend = db.backend();
        let (app, seen) = counting_app(db, &[], |sim| {
            sim.ws().set_redelivery_timeout(Duration::from_millis(500))
        })
        .await;
        let ws = app.sim.ws();
        let mut pushed = Pushed::new();
        let mut push = |tag: &str, n: usize| -> Vec<String> {
            (0..n)
                .map(|i| {
                    let id = format!("{tag}-{i}");
                    let message_id = ws.push_event(&event(&id));
                    pushed.insert(message_id.clone(), id);
                    message_id
                })
                .collect()
        };

        let before = push("db-before", 200);
        assert!(
            ws.wait_all_acked(WAIT).await,
            "{backend}: before the outage"
        );
        assert_eq!(readyz(&app).await.0, 200, "{backend}");

        let outage = Outage::begin(&app.db);
        // Events that meet the failing database; on SQLite their failed
        // writes are how the service finds out.
        let onset = push("db-onset", 20);
        let body = wait_for("/readyz to answer 503", WAIT, || async {
            let (status, body) = readyz(&app).await;
            (status == 503).then_some(body)
        })
        .await;
        assert_eq!(body["status"], "not_ready", "{backend}: {body}");
        // No credentials are needed for /readyz, so it says no more than
        // this; the reason is for operators, in /admin/actors.
        assert_eq!(body["database"], "unavailable", "{backend}: {body}");
        let actors: Value = app.admin_get("/admin/actors").await.json().await.unwrap();
        let ledger = actors["actors"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["name"] == "event_ledger"))
            .cloned()
            .unwrap_or_default();
        assert!(
            ledger["last_error"].as_str().is_some_and(|e| !e.is_empty()),
            "{backend}: the reason is in /admin/actors: {ledger}"
        );

        // Events arriving while it is known to be down: redelivered, because
        // not acked, and not handled, because they could not be recorded.
        let during = push("db-during", 50);
        // Polled: the simulator signals acks and connections, not resends.
        wait_for("redelivery while the database is down", WAIT, || async {
            during.iter().all(|m| ws.attempts(m) >= 2).then_some(())
        })
        .await;
        let down: HashSet<&String> = onset.iter().chain(&during).collect();
        let acked_while_down: Vec<_> = ws
            .acks()
            .into_iter()
            .filter(|a| down.contains(&a.message_id))
            .collect();
        assert!(
            acked_while_down.is_empty(),
            "{backend}: acked while the database was down: {acked_while_down:?}"
        );
        assert!(
            during
                .iter()
                .all(|m| !seen.lock().unwrap().contains_key(&pushed[m])),
            "{backend}: a handler ran for an event that could not be recorded"
        );

        outage.end();
        assert!(
            ws.wait_all_acked(WAIT).await,
            "{backend}: {} events still unacked after the database came back",
            ws.unacked()
        );
        wait_for("/readyz to answer 200 again", WAIT, || async {
            (readyz(&app).await.0 == 200).then_some(())
        })
        .await;

        let all: HashSet<String> = pushed.values().cloned().collect();
        assert_eq!(acked_ok(ws, &pushed), all, "{backend}: every event acked");
        let recorded = processed(&app.app_db).await;
        assert_eq!(recorded.len(), all.len(), "{backend}: recorded once each");
        assert_eq!(
            recorded.into_iter().collect::<HashSet<_>>(),
            all,
            "{backend}"
        );
        let seen = seen.lock().unwrap();
        for m in before.iter().chain(&during) {
            assert_eq!(seen.get(&pushed[m]), Some(&1), "{backend}: {}", pushed[m]);
        }
        // An event whose handler ran just before its write failed is handled
        // again on redelivery: delivery is at least once (see EventRouter).
        for m in &onset {
            assert!(seen.get(&pushed[m]) >= Some(&1), "{backend}: {}", pushed[m]);
        }
    }
}

/// Every session row's (state, claimed?, access token expiry).
async fn session_rows(db: &Db) -> Vec<(String, bool, Option<chrono::NaiveDateTime>)> {
    db.read(|c| {
        Ok(user_auth_sessions::table
            .select((
                user_auth_sessions::state,
                user_auth_sessions::refresh_claimed_by.is_not_null(),
                user_auth_sessions::token_expires_at,
            ))
            .load(c)?)
    })
    .await
    .expect("sessions readable")
}

#[actix_rt::test]
async fn a_thirty_second_database_outage_during_a_thousand_due_refreshes_loses_no_session_and_spends_no_token_twice(
) {
    const USERS: usize = 1_000;
    const OUTAGE: Duration = Duration::from_secs(30);
    for db in backends() {
        let backend = db.backend();
        let app = spawn_app_with(db, FAST).await;
        let sim = &app.sim;
        // A slow platform keeps refreshes in flight, so the outage meets
        // pairs the platform has rotated and the service has not stored.
        sim.recorder().inject(
            "oidc_refresh_access_token",
            lark_service::sim::Fault::Delay(Duration::from_millis(150)),
            USERS,
        );
        let users = (0..USERS)
            .map(|n| sim_user("outage", n, "Outage User"))
            .collect();
        seed_refreshable(&app, users, in_seconds(60));
        let oauth = &sim.state().open_api.oauth;
        wait_for(
            "refreshes to be under way",
            Duration::from_secs(60),
            || async { (oauth.refreshes_granted() >= USERS / 10).then_some(()) },
        )
        .await;

        let outage = Outage::begin(&app.db);
        let began = Instant::now();
        let granted_at_onset = oauth.refreshes_granted();
        let mut most_pending = 0.0f64;
        // The outage lasts its 30 s (the fault's length, not a wait for
        // the service); meanwhile watch the service keep its rotated pairs.
        while began.elapsed() < OUTAGE {
            let metrics = app.metrics().await;
            let pending = metric_value(&metrics, "lark_token_store_pending").unwrap_or(0.0);
            most_pending = most_pending.max(pending);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let granted_during = oauth.refreshes_granted() - granted_at_onset;
        outage.end();

        let rows = wait_for(
            "every session to hold a stored new pair",
            // Claims that could not be released during the outage are
            // retried once their lease (120 s) runs out.
            Duration::from_secs(180),
            || async {
                let rows = session_rows(&app.app_db).await;
                rows.iter()
                    .all(|(state, claimed, expires)| {
                        state == "completed" && !claimed && *expires > Some(in_seconds(3600))
                    })
                    .then_some(rows)
            },
        )
        .await;
        assert_eq!(rows.len(), USERS, "{backend}: 0 sessions lost");
        assert_eq!(
            oauth.reused_refresh_tokens(),
            Vec::<String>::new(),
            "{backend}: no refresh token presented twice"
        );
        assert_eq!(oauth.refreshes_granted(), USERS, "{backend}");
        assert_eq!(
            sim.recorder().requests_to(REFRESH_PATH).len(),
            USERS,
            "{backend}: each refresh token presented once"
        );
        assert!(
            most_pending >= 1.0,
            "{backend}: the outage met no rotated pair in flight (granted during it: {granted_during})"
        );
        // Once the database is known to fail, nothing more is spent: only
        // the refreshes already at the platform can complete meanwhile.
        assert!(
            granted_during <= 64,
            "{backend}: {granted_during} refresh tokens spent while the database was down"
        );
        let metrics = app.metrics().await;
        assert_eq!(
            metric_value(&metrics, "lark_token_store_pending"),
            Some(0.0),
            "{backend}"
        );
        assert!(
            metrics.contains("lark_token_store_wait_seconds_bucket"),
            "{metrics}"
        );
    }
}

const SINK_SECRET: &str = "fault-suite-sink-secret-0123";

/// `lark-service serve` against `sim`, forwarding `test.*` events to `sink`.
fn serve(sim: &Simulator, db: &TestDb, sink: &EventSink) -> Served {
    let sinks = json!([{
        "name": "app", "type": "http", "events": ["test.*"], "url": sink.url(),
        "secret": SINK_SECRET, "timeout_ms": 1000, "backoff_base_ms": 10, "backoff_max_ms": 200
    }]);
    let mut cmd = lark_service_against(sim, db.url());
    cmd.args(["serve"])
        .env("HTTP_BIND", "127.0.0.1:0")
        .env("FORWARD_SINKS", sinks.to_string());
    Served::start(cmd)
}

/// Ledger rows and outbox rows, by event id.
async fn ledger_and_outbox(db: &TestDb) -> (Vec<String>, Vec<String>) {
    let url = DatabaseUrl::parse(db.url()).unwrap();
    let db = Db::start(build_pool(&url).expect("pool"));
    let outbox = db
        .read(|c| {
            Ok(event_outbox::table
                .select(event_outbox::event_id)
                .load::<String>(c)?)
        })
        .await
        .unwrap();
    (processed(&db).await, outbox)
}

/// Every ledger row has exactly one outbox row, and no outbox row lacks
/// its ledger row: the two are written in one transaction or not at all.
fn assert_whole(ledger: &[String], outbox: &[String], backend: &str) {
    let mut rows = outbox.to_vec();
    rows.sort();
    let mut expected = ledger.to_vec();
    expected.sort();
    assert_eq!(rows, expected, "{backend}: ledger and outbox rows match");
}

#[actix_rt::test]
async fn sigterm_during_a_burst_finishes_and_acks_what_it_took_and_writes_nothing_by_half() {
    const BURST: usize = 3000;
    for db in backends() {
        let backend = db.backend();
        let sim = Simulator::start().unwrap();
        let ws = sim.ws().clone();
        ws.set_client_config(test_client_config(30));
        // No redelivery during the burst: every event reaches the first
        // process once, so a slow machine does not pile copies on it.
        ws.set_redelivery_timeout(Duration::from_secs(300));
        let sink = EventSink::start(SINK_SECRET).unwrap();
        let mut served = serve(&sim, &db, &sink);
        assert!(ws.wait_for_connections(1, Duration::from_secs(10)).await);

        let mut pushed = Pushed::new();
        for i in 0..BURST {
            let id = format!("burst-{i}");
            let mut envelope = event(&id);
            envelope["header"]["event_type"] = "test.burst".into();
            pushed.insert(ws.push_event(&envelope), id);
        }
        assert!(
            ws.wait_for_acks(BURST / 10, Duration::from_secs(60)).await,
            "{backend}: the burst is being handled"
        );
        served.sigterm();
        let acked_at_term = ws.ack_count();
        let exit = served.wait_exit(Duration::from_secs(20));
        assert!(exit.success(), "{backend}: serve exited with {exit}");
        // The service closed its socket after its last ack.
        assert!(
            ws.wait_until(Duration::from_secs(5), |w| w.open_connections() == 0)
                .await
        );
        assert!(
            acked_at_term < BURST,
            "{backend}: SIGTERM came after the burst, not during it"
        );

        let (ledger, outbox) = ledger_and_outbox(&db).await;
        let acked = acked_ok(&ws, &pushed);
        let recorded: HashSet<String> = ledger.iter().cloned().collect();
        let unacked: Vec<_> = recorded.difference(&acked).collect();
        let unrecorded: Vec<_> = acked.difference(&recorded).collect();
        assert!(
            unacked.is_empty() && unrecorded.is_empty(),
            "{backend}: {} recorded but not acked (e.g. {:?}), {} acked but not recorded (e.g. {:?})",
            unacked.len(),
            unacked.first(),
            unrecorded.len(),
            unrecorded.first()
        );
        assert_whole(&ledger, &outbox, backend);

        // What it had not taken is redelivered to the next run, once.
        ws.set_redelivery_timeout(Duration::from_secs(1));
        let mut again = serve(&sim, &db, &sink);
        assert!(
            ws.wait_all_acked(Duration::from_secs(60)).await,
            "{backend}: {} events lost across the restart",
            ws.unacked()
        );
        again.sigterm();
        assert!(again.wait_exit(Duration::from_secs(20)).success());
        let (ledger, outbox) = ledger_and_outbox(&db).await;
        assert_eq!(ledger.len(), BURST, "{backend}: each event recorded once");
        assert_whole(&ledger, &outbox, backend);
    }
}

/// Row counts of every table, to show nothing was written.
async fn row_counts(db: &Db) -> [i64; 5] {
    db.read(|c| {
        use diesel::dsl::count_star;
        Ok([
            user_auth_sessions::table.select(count_star()).first(c)?,
            processed_events::table.select(count_star()).first(c)?,
            sync_runs::table.select(count_star()).first(c)?,
            device_tokens::table.select(count_star()).first(c)?,
            event_outbox::table.select(count_star()).first(c)?,
        ])
    })
    .await
    .expect("tables readable")
}

const WEBHOOK_KEY: &str = "fault-suite encrypt key";

/// One random request.
struct Garbage {
    method: reqwest::Method,
    path: String,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

fn random_string(rng: &mut StdRng, max: usize) -> String {
    let len = rng.gen_range(0..=max);
    (0..len)
        .map(|_| match rng.gen_range(0..4) {
            0 => rng.gen_range(' '..='~'),
            1 => rng.gen::<char>(),
            2 => ['/', '%', '?', '#', '.', '\\', '"', '\0'][rng.gen_range(0..8)],
            _ => rng.gen_range('a'..='z'),
        })
        .collect()
}

fn random_json(rng: &mut StdRng, depth: u32) -> Value {
    match rng.gen_range(0..if depth == 0 { 4 } else { 6 }) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<f64>() * 1e6 - 5e5),
        3 => json!(random_string(rng, 24)),
        4 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.gen_range(0..4))
                .map(|_| (random_string(rng, 8), random_json(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// A JSON value no field of any route takes: a number or a boolean. (Not
/// null, an optional field's "absent"; not an object or array either, since
/// serde reads a struct with defaulted fields from `{}` and from `[]` alike.)
fn wrong_type(rng: &mut StdRng) -> Value {
    if rng.gen_bool(0.5) {
        json!(rng.gen::<bool>())
    } else {
        json!(rng.gen_range(-1e9..1e9))
    }
}

/// An envelope-like body with at least one field broken.
fn broken_envelope(rng: &mut StdRng) -> Value {
    let mut envelope = json!({
        "schema": "2.0",
        "header": {"event_id": random_string(rng, 12), "event_type": random_string(rng, 12),
                   "token": "vtok", "create_time": "1608725989000"},
        "event": random_json(rng, 2)
    });
    let field = ["schema", "header", "event_id", "event_type", "token"][rng.gen_range(0..5)];
    match field {
        "schema" | "header" => envelope[field] = wrong_type(rng),
        _ => envelope["header"][field] = wrong_type(rng),
    }
    envelope
}

fn random_body(rng: &mut StdRng, route: &str) -> Vec<u8> {
    let value = match rng.gen_range(0..6) {
        0 => return (0..rng.gen_range(0..512)).map(|_| rng.gen()).collect(),
        1 if route == "webhook" => random_json(rng, 3),
        // A scalar, since an object or array could be a valid request (a
        // device login takes `{}` and `[]`).
        1 => random_json(rng, 0),
        2 if route == "webhook" => json!({"encrypt": random_string(rng, 80)}),
        2 => json!({"user_id": wrong_type(rng), "options": random_json(rng, 2)}),
        3 if route == "webhook" => {
            let inner = if rng.gen_bool(0.5) {
                serde_json::to_vec(&broken_envelope(rng)).unwrap()
            } else {
                (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect()
            };
            json!({"encrypt": encrypt(WEBHOOK_KEY, &inner)})
        }
        3 => json!([{"user_id": random_string(rng, 20)}]),
        4 if route == "webhook" => broken_envelope(rng),
        4 => json!({"user_id": random_string(rng, 20), "options": wrong_type(rng)}),
        _ => {
            // A well-formed body cut short is never well-formed.
            let mut whole =
                serde_json::to_vec(&json!({"user_id": random_string(rng, 20)})).unwrap();
            whole.truncate(rng.gen_range(0..whole.len()));
            return whole;
        }
    };
    serde_json::to_vec(&value).unwrap()
}

fn random_request(rng: &mut StdRng) -> Garbage {
    let segment = |rng: &mut StdRng| {
        let mut url = url::Url::parse("http://x/").unwrap();
        url.path_segments_mut()
            .unwrap()
            .push(&random_string(rng, 40));
        url.path().trim_start_matches('/').to_owned()
    };
    let (method, path, route) = match rng.gen_range(0..10) {
        0..=3 => (
            reqwest::Method::POST,
            "/webhook/event".to_owned(),
            "webhook",
        ),
        4 => (reqwest::Method::POST, "/admin/auth-cards".into(), "admin"),
        5 => (
            reqwest::Method::POST,
            "/admin/device-logins".into(),
            "admin",
        ),
        6 => {
            let seg = segment(rng);
            let path = match rng.gen_range(0..4) {
                0 => format!("/admin/sessions/{seg}/revoke"),
                1 => format!("/admin/outbox/{seg}/retry"),
                2 => format!("/admin/actors/{seg}/restart"),
                _ => format!("/admin/auth-cards/{seg}"),
            };
            (reqwest::Method::POST, path, "admin")
        }
        7 => {
            let seg = segment(rng);
            let path = match rng.gen_range(0..3) {
                0 => format!("/admin/sessions/{seg}"),
                1 => format!("/admin/sync/{seg}"),
                _ => format!("/admin/sessions?state={seg}&limit={seg}"),
            };
            (reqwest::Method::GET, path, "admin")
        }
        8 => (reqwest::Method::PUT, "/admin/auth-cards".into(), "admin"),
        _ => (reqwest::Method::POST, "/webhook/event".into(), "webhook"),
    };
    let body = random_body(rng, route);
    let mut headers = Vec::new();
    let content_type = [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
    ];
    let ct = content_type[rng.gen_range(0..content_type.len())];
    if !ct.is_empty() {
        headers.push(("content-type", ct.to_owned()));
    }
    if route == "admin" && rng.gen_bool(0.9) {
        headers.push(("authorization", format!("Bearer {ADMIN_TOKEN}")));
    }
    if route == "webhook" && rng.gen_bool(0.7) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let signature = if rng.gen_bool(0.8) {
            sign(&now, "n0nce", WEBHOOK_KEY, &body)
        } else {
            // Printable, so it is a header value at all.
            (0..rng.gen_range(0..80))
                .map(|_| rng.gen_range('!'..='~'))
                .collect()
        };
        headers.push(("x-lark-request-timestamp", now));
        headers.push(("x-lark-request-nonce", "n0nce".into()));
        headers.push(("x-lark-signature", signature));
    }
    Garbage {
        method,
        path,
        body,
        headers,
    }
}

#[actix_rt::test]
async fn ten_thousand_random_bodies_get_clear_errors_never_a_panic_and_write_nothing() {
    for db in backends() {
        let backend = db.backend();
        // The full count once; PostgreSQL only adds its storage under the
        // same refusals, so a sample shows it writes nothing either.
        let requests = if backend == "sqlite" { 10_000 } else { 2_000 };
        let app = spawn_app_with(
            db,
            &[
                ("LARK_ENCRYPT_KEY", WEBHOOK_KEY),
                ("LARK_VERIFICATION_TOKEN", "vtok"),
            ],
        )
        .await;
        let rows_before = row_counts(&app.app_db).await;
        let mut rng = StdRng::seed_from_u64(0xbad_b0d1e5);
        let garbage: Vec<Garbage> = (0..requests).map(|_| random_request(&mut rng)).collect();
        let app = &app;
        let answers: Vec<(String, Result<u16, String>)> = futures_util::stream::iter(garbage)
            .map(|g| async move {
                let mut req = app.http.request(g.method, app.url(&g.path)).body(g.body);
                for (k, v) in g.headers {
                    req = req.header(k, v);
                }
                // A handler that panics takes its connection down with it.
                let answer = match req.send().await {
                    Ok(resp) => Ok(resp.status().as_u16()),
                    Err(e) => {
                        assert!(!e.is_builder(), "the test built a bad request: {e}");
                        Err(e.to_string())
                    }
                };
                (g.path, answer)
            })
            .buffer_unordered(8)
            .collect()
            .await;

        let dropped: Vec<_> = answers.iter().filter(|(_, a)| a.is_err()).collect();
        assert!(
            dropped.is_empty(),
            "{backend}: {} requests lost their connection (a panic?), e.g. {:?}",
            dropped.len(),
            dropped.first()
        );
        let server_errors: Vec<_> = answers
            .iter()
            .filter(|(_, a)| matches!(a, Ok(s) if *s >= 500))
            .collect();
        assert!(
            server_errors.is_empty(),
            "{backend}: {} server errors, e.g. {:?}",
            server_errors.len(),
            server_errors.first()
        );
        let refused = answers
            .iter()
            .filter(|(_, a)| matches!(a, Ok(s) if (400..500).contains(s)))
            .count();
        assert!(refused > requests * 9 / 10, "{backend}: {refused} refused");
        assert_eq!(
            row_counts(&app.app_db).await,
            rows_before,
            "{backend}: no table gained or lost a row"
        );
        let metrics = app.metrics().await;
        let bad_webhooks: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("lark_bad_input_total{") && l.contains("webhook"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(bad_webhooks > 0.0, "{backend}: bad input is counted");
        assert_eq!(readyz(app).await.0, 200, "{backend}: still ready");
    }
}
