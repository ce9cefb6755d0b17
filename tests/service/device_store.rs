//! `DbDeviceStore` on each backend: what reaches the `device_tokens` table,
//! wrong and missing keys, and the refresh lock across connections.

use std::sync::mpsc;
use std::time::Duration;

use chrono::DateTime;
use lark_service::auth::vault::{EncryptionKey, Vault};
use lark_service::db::connection::ConnectionManager;
use lark_service::db::models::device_token::{self, DeviceToken};
use lark_service::db::DatabaseUrl;
use lark_service::device::{DbDeviceStore, DeviceStore, StoredToken};

use crate::support::{backends, TestDb};

const PROFILE: &str = "default";
const EXPIRES_AT_MS: i64 = 1_700_000_123_456;

fn key() -> EncryptionKey {
    EncryptionKey::from_hex(&"11".repeat(32)).unwrap()
}

fn url(db: &TestDb) -> DatabaseUrl {
    DatabaseUrl::parse(db.url()).unwrap()
}

fn open(db: &TestDb) -> DbDeviceStore {
    DbDeviceStore::open(&url(db), Some(Vault::new(&key()))).unwrap()
}

fn token(access: &str) -> StoredToken {
    StoredToken {
        access_token: access.into(),
        refresh_token: Some(format!("{access}-refresh-secret")),
        expires_at_ms: EXPIRES_AT_MS,
        client_id: "cid_123".into(),
        host: "project.example.com".into(),
    }
}

/// The row as stored, read past the store.
fn raw_row(db: &TestDb) -> Option<DeviceToken> {
    let mut conn = ConnectionManager::new(url(db)).establish().unwrap();
    device_token::find(&mut conn, PROFILE).unwrap()
}

#[test]
fn tokens_round_trip_and_are_encrypted_at_rest() {
    for db in backends() {
        let store = open(&db);
        assert_eq!(store.current_profile().unwrap(), "default");
        assert_eq!(store.load_token(PROFILE).unwrap(), None);
        let saved = token("mat_access_secret_0001");
        store.save_token(PROFILE, &saved).unwrap();
        assert_eq!(
            store.load_token(PROFILE).unwrap().as_ref(),
            Some(&saved),
            "{}",
            db.backend()
        );
        assert_eq!(
            store.host(PROFILE).unwrap().as_deref(),
            Some("project.example.com")
        );

        let row = raw_row(&db).unwrap();
        let access = row.access_token_enc.unwrap();
        let refresh = row.refresh_token_enc.unwrap();
        assert!(access.starts_with("v2:") && !access.contains("mat_access"));
        assert!(refresh.starts_with("v2:") && !refresh.contains("refresh-secret"));
        assert_eq!(row.client_id.as_deref(), Some("cid_123"));
        assert_eq!(
            row.expires_at,
            Some(
                DateTime::from_timestamp_millis(EXPIRES_AT_MS)
                    .unwrap()
                    .naive_utc()
            )
        );

        // No lifetime and no refresh token are stored as NULLs.
        let bare = StoredToken {
            refresh_token: None,
            expires_at_ms: 0,
            ..token("mat_access_secret_0002")
        };
        store.save_token(PROFILE, &bare).unwrap();
        assert_eq!(store.load_token(PROFILE).unwrap(), Some(bare));
        let row = raw_row(&db).unwrap();
        assert_eq!((row.refresh_token_enc, row.expires_at), (None, None));
    }
}

#[test]
fn a_host_is_saved_without_a_token_and_logout_keeps_it() {
    for db in backends() {
        let store = open(&db);
        store.set_host(PROFILE, "project.example.com").unwrap();
        assert_eq!(
            store.host(PROFILE).unwrap().as_deref(),
            Some("project.example.com")
        );
        assert_eq!(store.load_token(PROFILE).unwrap(), None);

        store.save_token(PROFILE, &token("mat_a_0001")).unwrap();
        // The same host again keeps the token.
        store.set_host(PROFILE, "project.example.com").unwrap();
        assert!(store.load_token(PROFILE).unwrap().is_some());

        assert!(store.delete_token(PROFILE).unwrap());
        assert!(!store.delete_token(PROFILE).unwrap());
        assert_eq!(store.load_token(PROFILE).unwrap(), None);
        assert_eq!(
            store.host(PROFILE).unwrap().as_deref(),
            Some("project.example.com")
        );
        let row = raw_row(&db).unwrap();
        assert_eq!(
            (row.client_id, row.access_token_enc, row.refresh_token_enc),
            (None, None, None)
        );
    }
}

#[test]
fn another_host_drops_the_old_hosts_token() {
    for db in backends() {
        let store = open(&db);
        store.save_token(PROFILE, &token("mat_a_0001")).unwrap();
        store.set_host(PROFILE, "other.example.com").unwrap();
        assert_eq!(store.load_token(PROFILE).unwrap(), None);
        assert_eq!(
            store.host(PROFILE).unwrap().as_deref(),
            Some("other.example.com")
        );
    }
}

#[test]
fn a_wrong_or_missing_key_is_an_error_never_garbage() {
    for db in backends() {
        open(&db).save_token(PROFILE, &token("mat_a_0001")).unwrap();

        let other = EncryptionKey::from_hex(&"22".repeat(32)).unwrap();
        let wrong = DbDeviceStore::open(&url(&db), Some(Vault::new(&other))).unwrap();
        let e = wrong.load_token(PROFILE).unwrap_err().to_string();
        assert!(
            e.contains("neither ENCRYPTION_KEY nor one of ENCRYPTION_KEY_PREVIOUS"),
            "{e}"
        );
        assert!(wrong.lock_token(PROFILE).is_err());

        let keyless = DbDeviceStore::open(&url(&db), None).unwrap();
        let e = keyless.load_token(PROFILE).unwrap_err().to_string();
        assert!(e.contains("ENCRYPTION_KEY is not set"), "{e}");
        assert!(keyless
            .save_token(PROFILE, &token("mat_b_0001"))
            .unwrap_err()
            .to_string()
            .contains("ENCRYPTION_KEY is not set"));
        // What needs no key still works without one.
        assert_eq!(
            keyless.host(PROFILE).unwrap().as_deref(),
            Some("project.example.com")
        );
        assert!(keyless.delete_token(PROFILE).unwrap());
        assert_eq!(keyless.load_token(PROFILE).unwrap(), None);
    }
}

#[test]
fn opening_twice_migrates_once() {
    for db in backends() {
        open(&db).set_host(PROFILE, "h.example.com").unwrap();
        assert_eq!(
            open(&db).host(PROFILE).unwrap().as_deref(),
            Some("h.example.com")
        );
    }
}

/// Two stores stand for two processes: the second `lock_token` waits until
/// the first holder commits, then sees the rotated token, so the spent
/// refresh token is never sent twice.
#[test]
fn a_second_lock_waits_for_the_first_commit() {
    for db in backends() {
        let first = open(&db);
        first.save_token(PROFILE, &token("mat_old_0001")).unwrap();
        let held = first.lock_token(PROFILE).unwrap();
        assert_eq!(held.token().unwrap().access_token, "mat_old_0001");

        let second = open(&db);
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let lock = second.lock_token(PROFILE).unwrap();
            tx.send(lock.token().cloned()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "{}: the second lock did not wait",
            db.backend()
        );
        // Plain reads are not blocked by a held lock.
        assert_eq!(
            first.load_token(PROFILE).unwrap().unwrap().access_token,
            "mat_old_0001"
        );

        held.commit(&token("mat_new_0002")).unwrap();
        let seen = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(seen, token("mat_new_0002"), "{}", db.backend());
        waiter.join().unwrap();
        assert_eq!(
            first.load_token(PROFILE).unwrap(),
            Some(token("mat_new_0002"))
        );
    }
}

#[test]
fn dropping_a_lock_releases_it_and_changes_nothing() {
    for db in backends() {
        let first = open(&db);
        first.save_token(PROFILE, &token("mat_old_0001")).unwrap();
        let held = first.lock_token(PROFILE).unwrap();

        let second = open(&db);
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let lock = second.lock_token(PROFILE).unwrap();
            tx.send(lock.token().cloned()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        drop(held);
        let seen = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(seen, Some(token("mat_old_0001")));
        waiter.join().unwrap();

        // A lock on a profile without a row holds nothing and commits a row.
        let lock = first.lock_token("other").unwrap();
        assert!(lock.token().is_none());
        lock.commit(&token("mat_x_0003")).unwrap();
        assert_eq!(
            first.load_token("other").unwrap(),
            Some(token("mat_x_0003"))
        );
    }
}
