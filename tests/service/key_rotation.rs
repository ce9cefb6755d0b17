//! Key rotation against the simulator, on each backend: AI calls keep
//! working while a replica with the new key (and the old one as previous)
//! takes over and `lark-service rekey` runs, after which every stored token
//! opens with the new key alone; a token under an unknown key, or a
//! ciphertext copied from another row, moves its session to
//! `reauth_required` with a metric; `rekey` is idempotent, resumes where
//! values are left, and lists what it cannot open.

use std::process::Output;
use std::time::Duration;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::Aes256Gcm;
use base64::Engine;
use lark_service::auth::vault::{EncryptionKey, SealedColumn, Slot, Vault};
use lark_service::db::models::{sealed_value, user_auth_session};
use lark_service::db::{AnyConnection, DatabaseUrl};
use lark_service::device::{DbDeviceStore, DeviceStore, StoredToken};
use lark_service::sim::oauth::SimUser;
use serde_json::{json, Value};

use crate::support::binary::lark_service;
use crate::support::replica::Replica;
use crate::support::{
    backends, in_seconds, metric_value, seed_completed, seed_refreshable, settings_for, sim_user,
    spawn_app_with, wait_for, TestApp, TestDb, REFRESH_PATH, TEST_KEY_HEX,
};

const TIMEOUT: Duration = Duration::from_secs(30);
/// The key every test service starts with is the old one.
const OLD: &str = TEST_KEY_HEX;
const NEW: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const UNKNOWN: &str = "3333333333333333333333333333333333333333333333333333333333333333";
/// AI calls on the simulated Aily app, and a refresher that ticks only at
/// start: the old-key service must not refresh (and seal) during the test.
const OLD_SERVICE: &[(&str, &str)] = &[
    ("AILY_APP_ID", "spring_test__c"),
    ("AILY_POLL_INTERVAL_MS", "20"),
    ("TOKEN_REFRESH_INTERVAL_SECONDS", "3600"),
];

fn user(n: usize) -> SimUser {
    sim_user("rotate", n, &format!("User {n}"))
}

fn key(hex: &str) -> EncryptionKey {
    EncryptionKey::from_hex(hex).expect("test key")
}

fn conn(db: &TestDb) -> AnyConnection {
    lark_service::db::connection::ConnectionManager::new(DatabaseUrl::parse(db.url()).unwrap())
        .establish()
        .expect("test database reachable")
}

/// `lark-service rekey ARGS` on `db` with ENCRYPTION_KEY `current` and
/// ENCRYPTION_KEY_PREVIOUS `previous`.
fn rekey(db_url: &str, current: &str, previous: &str, args: &[&str]) -> Output {
    let mut cmd = lark_service();
    cmd.env("DATABASE_URL", db_url)
        .env("ENCRYPTION_KEY", current)
        .arg("rekey")
        .args(args);
    if !previous.is_empty() {
        cmd.env("ENCRYPTION_KEY_PREVIOUS", previous);
    }
    cmd.output().expect("rekey runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every stored sealed value: column, row key, value.
fn stored_values(db: &TestDb) -> Vec<(SealedColumn, String, String)> {
    let mut c = conn(db);
    SealedColumn::ALL
        .into_iter()
        .flat_map(|column| {
            sealed_value::page(&mut c, column, "", 1_000_000)
                .unwrap()
                .into_iter()
                .map(move |(row, value)| (column, row, value))
        })
        .collect()
}

/// Store sessions for `users` sealed with `vault` (not the service's key).
fn seed_sealed_with(app: &TestApp, vault: &Vault, users: Vec<SimUser>, refreshable: bool) {
    let mut c = conn(&app.db);
    let oauth = &app.sim.state().open_api.oauth;
    let (n, now) = (users.len(), lark_service::db::now());
    let app_id = lark_service::sim::SIM_APP_ID;
    let stored = if refreshable {
        lark_service::sim::seed::refreshable_sessions(
            &mut c,
            oauth,
            vault,
            app_id,
            users,
            now,
            in_seconds(60),
        )
    } else {
        lark_service::sim::seed::completed_sessions(&mut c, oauth, vault, app_id, users, now)
    };
    assert_eq!(stored.expect("sessions seeded"), n);
}

/// A value in the format written before key ids (no associated data).
fn legacy_seal(key_hex: &str, plaintext: &str) -> String {
    let key = hex::decode(key_hex).unwrap();
    let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ct = cipher.encrypt(&nonce, plaintext.as_bytes()).unwrap();
    let blob = [nonce.as_slice(), &ct].concat();
    format!(
        "v1:{}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

async fn ask(http: &reqwest::Client, address: &str, open_id: &str) -> (u16, Value) {
    let resp = http
        .post(format!("{address}/admin/apaas/ai"))
        .bearer_auth(crate::support::ADMIN_TOKEN)
        .json(&json!({"user_id": open_id, "prompt": "What is 2+2?"}))
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The AI answers `open_id` through the service at `address`.
async fn answers(http: &reqwest::Client, address: &str, open_id: &str, when: &str) {
    let (status, body) = ask(http, address, open_id).await;
    assert_eq!(status, 200, "{when}: {open_id}: {body}");
    assert_eq!(body["response"], "Echo: What is 2+2?", "{when}: {body}");
}

fn device_token() -> StoredToken {
    StoredToken {
        access_token: "mat_rotate_access_0001".into(),
        refresh_token: Some("mat_rotate_refresh_0001".into()),
        expires_at_ms: 4_102_444_800_000,
        client_id: "cid_rotate".into(),
        host: "project.example.com".into(),
    }
}

#[actix_rt::test]
async fn key_rotation_under_traffic_keeps_ai_calls_working_and_rekey_moves_every_token() {
    for db in backends() {
        let backend = db.backend();
        let app = spawn_app_with(db, OLD_SERVICE).await;
        let users: Vec<SimUser> = (0..120).map(user).collect();
        seed_completed(&app, users[..80].to_vec());
        // Due: the new-key replica refreshes (and seals) them while rekey runs.
        seed_refreshable(&app, users[80..].to_vec(), in_seconds(60));
        let url = DatabaseUrl::parse(app.db.url()).unwrap();
        DbDeviceStore::open(&url, Some(Vault::new(&key(OLD))))
            .unwrap()
            .save_token("default", &device_token())
            .unwrap();
        let http = reqwest::Client::new();
        for u in &users[..10] {
            answers(&http, &app.address, &u.open_id, "before the rotation").await;
        }

        // Step 1: a replica with the new key, the old one still opening.
        let mut rotating = FAST_NEW.to_vec();
        rotating.push(("ENCRYPTION_KEY_PREVIOUS", OLD));
        let b = Replica::start(settings_for(&app.sim, &app.db, &rotating));
        // Traffic moves to it; the old-key service stops serving.
        app.stop().await;

        // Step 2: rekey while the new replica serves AI calls and refreshes.
        let db_url = app.db.url().to_owned();
        let run =
            actix_rt::task::spawn_blocking(move || rekey(&db_url, NEW, OLD, &["--batch", "7"]));
        let mut calls = 0;
        while !run.is_finished() || calls < users.len() {
            let u = &users[calls % users.len()];
            answers(&http, &b.address, &u.open_id, "during rekey").await;
            calls += 1;
        }
        let out = run.await.expect("rekey finished");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{backend}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains("every stored token opens with the current key"),
            "{}",
            stdout(&out)
        );

        // The refresher of the new replica refreshed the due sessions.
        wait_for("the due sessions to be refreshed", TIMEOUT, || async {
            let n = app.sim.recorder().requests_to(REFRESH_PATH).len();
            (n >= users.len() - 80).then_some(())
        })
        .await;

        // Step 3: the new key alone opens everything.
        let values = stored_values(&app.db);
        let new_only = Vault::new(&key(NEW));
        // 120 access tokens, 40 refresh tokens, the device pair.
        assert!(values.len() >= 162, "{backend}: {}", values.len());
        for (column, row, value) in &values {
            assert!(new_only.is_current(value), "{backend}: {column}:{row}");
            new_only
                .open(Slot::new(*column, row), value)
                .unwrap_or_else(|e| panic!("{backend}: {column}:{row}: {e}"));
        }
        let c = Replica::start(settings_for(&app.sim, &app.db, FAST_NEW));
        for u in &users {
            answers(&http, &c.address, &u.open_id, "with the new key alone").await;
        }
        let device = DbDeviceStore::open(&url, Some(new_only.clone()))
            .unwrap()
            .load_token("default")
            .unwrap();
        assert_eq!(device, Some(device_token()), "{backend}");
        let not_completed = app
            .app_db
            .read(|c| user_auth_session::list(c, None, 10_000))
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.state != "completed")
            .count();
        assert_eq!(not_completed, 0, "{backend}: no session was lost");
        b.kill().await;
        c.kill().await;
    }
}

/// A replica with the new key that ticks its refresher every second.
const FAST_NEW: &[(&str, &str)] = &[
    ("ENCRYPTION_KEY", NEW),
    ("AILY_APP_ID", "spring_test__c"),
    ("AILY_POLL_INTERVAL_MS", "20"),
    ("TOKEN_REFRESH_INTERVAL_SECONDS", "1"),
];

#[actix_rt::test]
async fn an_unknown_key_or_a_swapped_ciphertext_needs_reauthorization_and_is_counted() {
    for db in backends() {
        let backend = db.backend();
        let mut extra = OLD_SERVICE.to_vec();
        extra.push(("TOKEN_REFRESH_INTERVAL_SECONDS", "1"));
        let app = spawn_app_with(db, &extra).await;
        let unknown = Vault::new(&key(UNKNOWN));
        let (ai_user, due_user, swapped, donor, synced) =
            (user(201), user(202), user(203), user(204), user(205));
        seed_sealed_with(&app, &unknown, vec![ai_user.clone(), synced.clone()], false);
        seed_sealed_with(&app, &unknown, vec![due_user.clone()], true);
        seed_completed(&app, vec![swapped.clone(), donor.clone()]);
        // Copy the donor's (valid) ciphertext into another user's row.
        let donor_row = app.session_of(&donor.open_id).await;
        let victim = app.session_of(&swapped.open_id).await;
        let mut c = conn(&app.db);
        assert!(sealed_value::replace(
            &mut c,
            SealedColumn::UserAccessToken,
            &victim.session_id,
            victim.access_token_enc.as_deref().unwrap(),
            donor_row.access_token_enc.as_deref(),
        )
        .unwrap());

        // The AI call path: a clear 409, and the session needs a new authorization.
        for (u, reason) in [
            (&ai_user, "encryption key unknown"),
            (&swapped, "stored token is damaged"),
        ] {
            let (status, body) = ask(&app.http, &app.address, &u.open_id).await;
            assert_eq!(status, 409, "{backend}: {body}");
            assert_eq!(body["error"]["code"], "auth_required", "{body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(reason) && message.contains("auth card"),
                "{message}"
            );
            let row = app.session_of(&u.open_id).await;
            assert_eq!(row.state, "reauth_required", "{backend}");
            assert!(
                row.error.as_deref().is_some_and(|e| e.starts_with(reason)),
                "{row:?}"
            );
        }
        // The donor's own token still works: only the copy fails.
        answers(&app.http, &app.address, &donor.open_id, "donor").await;

        // The refresher: no refresh token presented, no retry loop.
        let row = wait_for(
            "the due session to need reauthorization",
            TIMEOUT,
            || async {
                let row = app.session_of(&due_user.open_id).await;
                (row.state != "completed").then_some(row)
            },
        )
        .await;
        assert_eq!(row.state, "reauth_required", "{backend}");
        assert!(
            row.error
                .as_deref()
                .is_some_and(|e| e.starts_with("encryption key unknown")),
            "{row:?}"
        );
        assert!(app.sim.recorder().requests_to(REFRESH_PATH).is_empty());

        // The sync: the user is not counted as a failure to retry.
        let resp = app.admin_post("/admin/sync", json!({})).await;
        assert_eq!(resp.status(), 202, "{backend}");
        let row = wait_for(
            "the synced session to need reauthorization",
            TIMEOUT,
            || async {
                let row = app.session_of(&synced.open_id).await;
                (row.state != "completed").then_some(row)
            },
        )
        .await;
        assert!(
            row.error
                .as_deref()
                .is_some_and(|e| e.starts_with("encryption key unknown")),
            "{row:?}"
        );

        let metrics = app.metrics().await;
        for (reason, least) in [("unknown_key", 3.0), ("damaged", 1.0)] {
            let series = format!("lark_vault_unreadable_total{{reason=\"{reason}\"}}");
            assert!(
                metric_value(&metrics, &series) >= Some(least),
                "{backend}: {series}"
            );
        }
    }
}

#[actix_rt::test]
async fn rekey_is_idempotent_resumes_and_lists_what_it_cannot_open() {
    for db in backends() {
        let backend = db.backend();
        let app = spawn_app_with(db, OLD_SERVICE).await;
        let url = app.db.url().to_owned();
        seed_completed(&app, (300..330).map(user).collect());
        // A value from before key ids, in a refresh token column.
        let legacy_user = user(330);
        seed_completed(&app, vec![legacy_user.clone()]);
        let legacy_row = app.session_of(&legacy_user.open_id).await;
        set_refresh(
            &app.db,
            &legacy_row.session_id,
            &legacy_seal(OLD, "legacy-refresh-token"),
        );

        let out = rekey(&url, NEW, OLD, &["--batch", "4"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{backend}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(stdout(&out).contains("32 resealed"), "{}", stdout(&out));

        // Again: nothing to do, every value proven to open.
        let out = rekey(&url, NEW, OLD, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("0 resealed, 32 already under the current key"),
            "{}",
            stdout(&out)
        );

        // Values still under the old key (an interrupted run, an old
        // replica): only they are resealed.
        seed_completed(&app, (340..345).map(user).collect());
        let out = rekey(&url, NEW, OLD, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("5 resealed, 32 already under the current key"),
            "{}",
            stdout(&out)
        );
        let new_only = Vault::new(&key(NEW));
        let legacy = app.session_of(&legacy_user.open_id).await;
        assert_eq!(
            new_only
                .open(
                    Slot::new(SealedColumn::UserRefreshToken, &legacy.session_id),
                    legacy.refresh_token_enc.as_deref().unwrap()
                )
                .unwrap(),
            "legacy-refresh-token"
        );

        // A value under a key rekey was not given: listed, exit 1, untouched.
        let lost = user(350);
        seed_sealed_with(&app, &Vault::new(&key(UNKNOWN)), vec![lost.clone()], false);
        let lost_row = app.session_of(&lost.open_id).await;
        let out = rekey(&url, NEW, OLD, &[]);
        assert_eq!(out.status.code(), Some(1), "{backend}: {}", stdout(&out));
        let listed = format!(
            "cannot open user_auth_sessions.access_token_enc:{}",
            lost_row.session_id
        );
        assert!(stdout(&out).contains(&listed), "{}", stdout(&out));
        assert!(
            stderr(&out).contains("--forget-unreadable"),
            "{}",
            stderr(&out)
        );
        assert_eq!(app.session_of(&lost.open_id).await.state, "completed");

        // Asked to forget it: the session needs a new authorization, exit 0.
        let out = rekey(&url, NEW, OLD, &["--forget-unreadable"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
        let row = app.session_of(&lost.open_id).await;
        assert_eq!(row.state, "reauth_required", "{backend}");
        assert_eq!(row.access_token_enc, None);
        assert!(row
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("encryption key unknown")));

        // Configuration and database errors are exit 2.
        let mut cmd = lark_service();
        let o = cmd.env("DATABASE_URL", &url).arg("rekey").output().unwrap();
        assert_eq!(o.status.code(), Some(2));
        assert!(
            stderr(&o).contains("ENCRYPTION_KEY is not set"),
            "{}",
            stderr(&o)
        );
        let o = rekey("postgres://nobody@127.0.0.1:1/none", NEW, OLD, &[]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("DATABASE_URL"), "{}", stderr(&o));
    }
}

/// Overwrite the refresh token column of session `session_id`.
fn set_refresh(db: &TestDb, session_id: &str, value: &str) {
    use diesel::prelude::*;
    use lark_service::db::schema::user_auth_sessions::dsl as s;
    let n = diesel::update(s::user_auth_sessions.filter(s::session_id.eq(session_id)))
        .set(s::refresh_token_enc.eq(value))
        .execute(&mut conn(db))
        .unwrap();
    assert_eq!(n, 1);
}
