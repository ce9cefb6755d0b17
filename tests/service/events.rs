//! The event router: dedup through the ledger, handler failures, bad input.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use lark_service::events::router::{EventSource, HandlerError, RouteEvent, RouteOutcome};
use lark_service::sim::Simulator;
use lark_service::startup::{Application, Service};
use serde_json::json;

use crate::support::{backends, settings_for, TestDb};

fn envelope(event_id: &str, event_type: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schema": "2.0",
        "header": {"event_id": event_id, "event_type": event_type, "create_time": "1608725989000",
                   "token": "v", "app_id": "cli_a1b2c3d4e5f60718", "tenant_key": "t"},
        "event": {"n": 1}
    }))
    .unwrap()
}

async fn route(app: &Application, payload: Vec<u8>) -> RouteOutcome {
    app.router()
        .send(RouteEvent {
            payload,
            source: EventSource::WebSocket,
        })
        .await
        .expect("router answers")
        .outcome
}

/// An app whose `test.count` handler counts calls and whose `test.fail`
/// handler fails the first `fail_times` calls.
async fn counting_app(
    db: &TestDb,
    sim: &Simulator,
    calls: Arc<AtomicUsize>,
    fail_times: usize,
) -> Application {
    let failures = Arc::new(AtomicUsize::new(0));
    let count = calls.clone();
    Service::builder(settings_for(sim, db, &[]))
        .on("test.count", move |_event| {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                Ok(Some(json!({"toast": {"type": "info", "content": "ok"}})))
            }
        })
        .on("test.fail", move |_event| {
            let calls = calls.clone();
            let failures = failures.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if failures.fetch_add(1, Ordering::SeqCst) < fail_times {
                    Err(HandlerError("downstream unavailable".into()))
                } else {
                    Ok(None)
                }
            }
        })
        .build()
        .await
        .expect("app builds")
}

#[actix_rt::test]
async fn a_redelivered_event_is_handled_once() {
    for db in backends() {
        let sim = Simulator::start().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let app = counting_app(&db, &sim, calls.clone(), 0).await;

        let first = route(&app, envelope("ev-1", "test.count")).await;
        assert_eq!(first.code(), 200);
        assert_eq!(
            first.body().unwrap()["toast"]["content"],
            "ok",
            "{}",
            db.backend()
        );
        let again = route(&app, envelope("ev-1", "test.count")).await;
        assert_eq!(again, RouteOutcome::Duplicate, "{}", db.backend());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{}", db.backend());
    }
}

#[actix_rt::test]
async fn concurrent_copies_of_one_event_run_the_handler_once() {
    let db = TestDb::sqlite();
    let sim = Simulator::start().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let app = counting_app(&db, &sim, calls.clone(), 0).await;

    let copies = (0..10).map(|_| route(&app, envelope("ev-same", "test.count")));
    let outcomes = futures_util::future::join_all(copies).await;
    assert!(outcomes.iter().all(|o| o.code() == 200));
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, RouteOutcome::Handled(_)))
            .count(),
        1
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[actix_rt::test]
async fn a_failed_handler_is_answered_500_and_retried_on_redelivery() {
    for db in backends() {
        let sim = Simulator::start().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let app = counting_app(&db, &sim, calls.clone(), 1).await;

        let first = route(&app, envelope("ev-f", "test.fail")).await;
        assert_eq!(first.code(), 500, "{}", db.backend());
        let second = route(&app, envelope("ev-f", "test.fail")).await;
        assert_eq!(
            second.code(),
            200,
            "{}: not recorded after the failure",
            db.backend()
        );
        let third = route(&app, envelope("ev-f", "test.fail")).await;
        assert_eq!(third, RouteOutcome::Duplicate);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}

#[actix_rt::test]
async fn a_copy_arriving_while_the_first_fails_is_not_acknowledged() {
    let db = TestDb::sqlite();
    let sim = Simulator::start().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let app = counting_app(&db, &sim, calls.clone(), 1).await;

    // Both are sent before either is answered, so the second finds the
    // first in flight; it must share the first's failure, not be acked.
    let (first, copy) = futures_util::future::join(
        route(&app, envelope("ev-ff", "test.fail")),
        route(&app, envelope("ev-ff", "test.fail")),
    )
    .await;
    assert_eq!(first.code(), 500);
    assert_eq!(copy.code(), 500, "{copy:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let redelivered = route(&app, envelope("ev-ff", "test.fail")).await;
    assert!(
        matches!(redelivered, RouteOutcome::Handled(_)),
        "{redelivered:?}"
    );
}

#[actix_rt::test]
async fn garbage_is_rejected_and_unknown_types_are_acknowledged() {
    let db = TestDb::sqlite();
    let sim = Simulator::start().unwrap();
    let app = counting_app(&db, &sim, Arc::new(AtomicUsize::new(0)), 0).await;

    for garbage in [
        &b"not json"[..],
        b"{}",
        b"[1,2]",
        br#"{"header":{"event_id":5}}"#,
    ] {
        let outcome = route(&app, garbage.to_vec()).await;
        assert!(matches!(outcome, RouteOutcome::Rejected(_)), "{outcome:?}");
        assert_eq!(outcome.code(), 400);
    }
    let unknown = route(&app, envelope("ev-u", "nobody.handles.this")).await;
    assert_eq!(unknown, RouteOutcome::Unhandled);
}

#[actix_rt::test]
async fn a_burst_of_distinct_events_is_all_handled_and_recorded() {
    for db in backends() {
        let sim = Simulator::start().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let app = counting_app(&db, &sim, calls.clone(), 0).await;

        let burst = (0..500).map(|i| route(&app, envelope(&format!("burst-{i}"), "test.count")));
        let outcomes = futures_util::future::join_all(burst).await;
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, RouteOutcome::Handled(_))),
            "{}",
            db.backend()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 500);
        let recorded = app
            .db()
            .read(|c| {
                let ids: Vec<String> = (0..500).map(|i| format!("burst-{i}")).collect();
                lark_service::db::models::processed_event::existing(c, &ids)
            })
            .await
            .unwrap();
        assert_eq!(recorded.len(), 500, "{}", db.backend());
    }
}
