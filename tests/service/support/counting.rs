//! An app whose handler counts how often it saw each event id, and the
//! events it counts: what the long-connection and fault tests push.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::{spawn, TestApp, TestDb};

/// The event type the counting handler is registered for.
pub const COUNTED: &str = "test.count";

/// How many times the handler saw each event id.
pub type Seen = Arc<Mutex<HashMap<String, usize>>>;

/// The app with a counting handler, connected to the simulator.
pub async fn counting_app(
    db: TestDb,
    extra: &[(&str, &str)],
    prepare: impl FnOnce(&lark_service::sim::Simulator),
) -> (TestApp, Seen) {
    let seen: Seen = Arc::default();
    let handler_seen = seen.clone();
    let app = spawn(db, extra, prepare, move |b| {
        b.on(
            COUNTED,
            move |event: Arc<lark_service::events::Envelope>| {
                let seen = handler_seen.clone();
                async move {
                    *seen
                        .lock()
                        .unwrap()
                        .entry(event.event_id.to_string())
                        .or_default() += 1;
                    Ok(None)
                }
            },
        )
    })
    .await;
    assert!(
        app.sim
            .ws()
            .wait_for_connections(1, Duration::from_secs(10))
            .await,
        "the service connects"
    );
    (app, seen)
}

/// An envelope of the counted type with this event id.
pub fn event(id: &str) -> Value {
    json!({
        "schema": "2.0",
        "header": {"event_id": id, "event_type": COUNTED, "create_time": "1608725989000",
                   "token": "vtok", "app_id": lark_service::sim::SIM_APP_ID, "tenant_key": "t"},
        "event": {"n": id}
    })
}

/// `n` distinct events were handled, each exactly once.
pub fn assert_handled_once(seen: &Seen, n: usize, backend: &str) {
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), n, "{backend}: every event handled");
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        doubled.is_empty(),
        "{backend}: handled more than once: {doubled:?}"
    );
}
