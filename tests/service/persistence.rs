//! Every table written and read back, on each backend.

use chrono::Duration as ChronoDuration;
use lark_service::db::connection::build_pool;
use lark_service::db::models::{device_token, processed_event, sync_run, user_auth_session};
use lark_service::db::{DatabaseUrl, Db};
use lark_service::domain::{AuthMethod, SessionState};

use crate::support::backends;

async fn migrated(url: &str) -> Db {
    let pool = build_pool(&DatabaseUrl::parse(url).unwrap()).unwrap();
    let db = Db::start(pool);
    let backend = DatabaseUrl::parse(url).unwrap().backend();
    let folders = crate::support::migration_count(backend);
    assert_eq!(
        db.migrate().await.unwrap(),
        folders,
        "every migration on a fresh database"
    );
    assert_eq!(db.migrate().await.unwrap(), 0, "migrations are idempotent");
    db
}

#[actix_rt::test]
async fn every_table_round_trips_on_each_backend() {
    for test_db in backends() {
        let backend = test_db.backend();
        let db = migrated(test_db.url()).await;
        let now = lark_service::db::now();

        // user_auth_sessions
        let session = db
            .write(move |c| {
                user_auth_session::insert(
                    c,
                    &user_auth_session::NewUserAuthSession {
                        session_id: "5f0c9a52-0000-4000-8000-000000000001",
                        app_id: "cli_a1b2c3d4e5f60718",
                        open_id: Some("ou_1"),
                        auth_method: AuthMethod::WebsocketCard.as_str(),
                        state: SessionState::Pending.as_str(),
                        expires_at: now + ChronoDuration::minutes(10),
                        created_at: now,
                        updated_at: now,
                    },
                )?;
                user_auth_session::find(c, "5f0c9a52-0000-4000-8000-000000000001")
            })
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{backend}: session not found"));
        assert_eq!(session.open_id.as_deref(), Some("ou_1"));
        assert_eq!(session.state, "pending");
        let listed = db
            .read(|c| user_auth_session::list(c, Some(SessionState::Pending), 10))
            .await
            .unwrap();
        assert_eq!(listed.len(), 1, "{backend}");

        // processed_events: the second insert of the same id is not new.
        let event = |id: &str| processed_event::ProcessedEvent {
            event_id: id.into(),
            event_type: "im.message.receive_v1".into(),
            received_at: now,
        };
        let batch = vec![event("e1"), event("e2")];
        let new = db
            .write(move |c| processed_event::insert_new(c, &batch))
            .await
            .unwrap();
        assert_eq!(new.len(), 2, "{backend}");
        let again = vec![event("e2"), event("e3")];
        let new = db
            .write(move |c| processed_event::insert_new(c, &again))
            .await
            .unwrap();
        assert_eq!(new, vec!["e3".to_string()], "{backend}");
        assert!(db.read(|c| processed_event::exists(c, "e1")).await.unwrap());

        // sync_runs
        let id = db
            .write(move |c| {
                sync_run::insert(
                    c,
                    &sync_run::NewSyncRun {
                        trigger: "admin",
                        started_at: now,
                        status: "running",
                    },
                )
            })
            .await
            .unwrap();
        let counts = sync_run::RunCounts {
            users_total: 3,
            users_done: 3,
            users_updated: 2,
            users_failed: 1,
        };
        db.write(move |c| sync_run::finish(c, id, "finished", &counts, now, None))
            .await
            .unwrap();
        let run = db
            .read(move |c| sync_run::find(c, id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (run.users_total, run.users_updated, run.users_failed),
            (3, 2, 1),
            "{backend}"
        );
        assert!(run.finished_at.is_some());
        assert_eq!(run.status, "finished", "{backend}");

        // device_tokens: upsert twice, read, delete.
        let mut row = device_token::DeviceToken {
            profile: "default".into(),
            host: "project.feishu.cn".into(),
            client_id: None,
            access_token_enc: None,
            refresh_token_enc: None,
            expires_at: None,
            updated_at: now,
        };
        let first = row.clone();
        db.write(move |c| device_token::upsert(c, &first))
            .await
            .unwrap();
        row.client_id = Some("cid_1".into());
        row.access_token_enc = Some("v1:ciphertext".into());
        let second = row.clone();
        db.write(move |c| device_token::upsert(c, &second))
            .await
            .unwrap();
        let stored = db
            .read(|c| device_token::find(c, "default"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored, row, "{backend}");
        assert!(db
            .write(|c| device_token::delete(c, "default"))
            .await
            .unwrap());
        assert!(db
            .read(|c| device_token::find(c, "default"))
            .await
            .unwrap()
            .is_none());
    }
}

#[actix_rt::test]
async fn a_failed_batch_writes_nothing() {
    for test_db in backends() {
        let db = migrated(test_db.url()).await;
        let now = lark_service::db::now();
        let result = db
            .write(move |c| {
                let id = sync_run::insert(
                    c,
                    &sync_run::NewSyncRun {
                        trigger: "cron",
                        started_at: now,
                        status: "running",
                    },
                )?;
                // The CHECK constraint refuses this trigger: the whole unit rolls back.
                sync_run::insert(
                    c,
                    &sync_run::NewSyncRun {
                        trigger: "bogus",
                        started_at: now,
                        status: "running",
                    },
                )?;
                Ok(id)
            })
            .await;
        assert!(result.is_err(), "{}", test_db.backend());
        let first = db.read(|c| sync_run::find(c, 1)).await.unwrap();
        assert!(
            first.is_none(),
            "{}: the first insert was rolled back",
            test_db.backend()
        );
    }
}
