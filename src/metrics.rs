//! Every metric the service exports, by the names the design fixes.
//!
//! [`install`] registers the Prometheus recorder once per process, describes
//! each family and writes a zero sample with its most common labels, so
//! dashboards and alert rules see every family from the first scrape.
//! Code elsewhere uses these constants with the `metrics` macros.

use std::sync::Mutex;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const WS_CONNECTED: &str = "lark_ws_connected";
pub const WS_RECONNECTS: &str = "lark_ws_reconnects_total";
pub const WS_FRAMES: &str = "lark_ws_frames_total";
pub const WS_REFUSED: &str = "lark_ws_refused";
pub const EVENTS: &str = "lark_events_total";
pub const EVENT_HANDLE_SECONDS: &str = "lark_event_handle_seconds";
pub const EVENTS_DUPLICATE: &str = "lark_events_duplicate_total";
pub const AUTH_SESSIONS: &str = "lark_auth_sessions";
pub const AUTH_COMPLETED: &str = "lark_auth_completed_total";
pub const AUTH_FAILED: &str = "lark_auth_failed_total";
pub const AUTH_CARD_UPDATES: &str = "lark_auth_card_updates_total";
pub const USER_AUTH_SUCCESS_RATE: &str = "lark_user_auth_success_rate";
pub const TOKEN_REFRESH: &str = "lark_token_refresh_total";
pub const TOKENS_EXPIRING_SOON: &str = "lark_tokens_expiring_within_hour";
pub const TOKEN_STORE_PENDING: &str = "lark_token_store_pending";
pub const TOKEN_STORE_WAIT_SECONDS: &str = "lark_token_store_wait_seconds";
pub const USER_SYNC_RUNS: &str = "lark_user_sync_runs_total";
pub const USER_SYNC_USERS: &str = "lark_user_sync_users_total";
pub const USER_SYNC_PROGRESS: &str = "lark_user_sync_progress_ratio";
pub const APAAS_REQUESTS: &str = "lark_apaas_requests_total";
pub const ACTOR_RESTARTS: &str = "lark_actor_restarts_total";
pub const ACTOR_MAILBOX: &str = "lark_actor_mailbox";
pub const HTTP_REQUESTS: &str = "lark_http_requests_total";
pub const BAD_INPUT: &str = "lark_bad_input_total";
pub const FORWARD_TOTAL: &str = "lark_forward_total";
pub const OUTBOX_PENDING: &str = "lark_outbox_pending";
pub const OUTBOX_DEAD_LETTERS: &str = "lark_outbox_dead_letters";
pub const FORWARD_SECONDS: &str = "lark_forward_seconds";
pub const VAULT_UNREADABLE: &str = "lark_vault_unreadable_total";

/// Every family above, for checks that dashboards and alerts name only
/// metrics that exist.
pub const ALL: &[&str] = &[
    WS_CONNECTED,
    WS_RECONNECTS,
    WS_FRAMES,
    WS_REFUSED,
    EVENTS,
    EVENT_HANDLE_SECONDS,
    EVENTS_DUPLICATE,
    AUTH_SESSIONS,
    AUTH_COMPLETED,
    AUTH_FAILED,
    AUTH_CARD_UPDATES,
    USER_AUTH_SUCCESS_RATE,
    TOKEN_REFRESH,
    TOKENS_EXPIRING_SOON,
    TOKEN_STORE_PENDING,
    TOKEN_STORE_WAIT_SECONDS,
    USER_SYNC_RUNS,
    USER_SYNC_USERS,
    USER_SYNC_PROGRESS,
    APAAS_REQUESTS,
    ACTOR_RESTARTS,
    ACTOR_MAILBOX,
    HTTP_REQUESTS,
    BAD_INPUT,
    FORWARD_TOTAL,
    OUTBOX_PENDING,
    OUTBOX_DEAD_LETTERS,
    FORWARD_SECONDS,
    VAULT_UNREADABLE,
];

/// Buckets from 100 µs to 3 s: event handling must finish well inside the
/// platform's 3 s ack deadline, and the fast path is sub-millisecond.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0,
];

static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("could not install the metrics recorder: {0}")]
pub struct MetricsError(String);

/// Install the recorder (once per process; later calls return the same
/// handle) and publish a zero sample of every family.
pub fn install(actor_names: &[&'static str]) -> Result<PrometheusHandle, MetricsError> {
    // Held across the install so concurrent callers (parallel tests) wait
    // for the one recorder instead of racing to set it.
    let mut slot = HANDLE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let handle = match slot.as_ref() {
        Some(h) => h.clone(),
        None => {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .map_err(|e| MetricsError(e.to_string()))?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).map_err(|e| MetricsError(e.to_string()))?;
            describe();
            *slot = Some(handle.clone());
            handle
        }
    };
    drop(slot);
    zero_samples(actor_names);
    Ok(handle)
}

fn describe() {
    describe_gauge!(WS_CONNECTED, "1 while the long connection is up, else 0");
    describe_counter!(WS_RECONNECTS, "Long-connection reconnect attempts");
    describe_counter!(WS_FRAMES, "WebSocket frames by direction (in/out) and kind");
    describe_gauge!(
        WS_REFUSED,
        "1 while the platform refuses the long connection, by reason (app_rejected, forbidden, connection_limit)"
    );
    describe_counter!(EVENTS, "Events by type and outcome");
    describe_histogram!(
        EVENT_HANDLE_SECONDS,
        Unit::Seconds,
        "Time from receipt to ack of an event"
    );
    describe_counter!(EVENTS_DUPLICATE, "Events dropped as already processed");
    describe_gauge!(AUTH_SESSIONS, "Authorization sessions by state");
    describe_counter!(AUTH_COMPLETED, "Completed authorizations by method");
    describe_counter!(AUTH_FAILED, "Failed authorizations by reason");
    describe_counter!(
        AUTH_CARD_UPDATES,
        "Authorization cards replaced in place (PATCH), by outcome"
    );
    describe_gauge!(
        USER_AUTH_SUCCESS_RATE,
        "Completed / (completed + failed) authorizations since start"
    );
    describe_counter!(TOKEN_REFRESH, "User token refreshes by outcome");
    describe_gauge!(
        TOKENS_EXPIRING_SOON,
        "Completed sessions whose access token expires within an hour"
    );
    describe_gauge!(
        TOKEN_STORE_PENDING,
        "Refreshed token pairs whose refresh token is spent and that wait for the database to store them"
    );
    describe_histogram!(
        TOKEN_STORE_WAIT_SECONDS,
        Unit::Seconds,
        "Time from the platform's new pair to its commit"
    );
    describe_counter!(USER_SYNC_RUNS, "User-info sync runs by outcome");
    describe_counter!(USER_SYNC_USERS, "Users visited by the sync, by outcome");
    describe_gauge!(USER_SYNC_PROGRESS, "Progress of the running sync (0..1)");
    describe_counter!(APAAS_REQUESTS, "AI API calls by outcome");
    describe_counter!(ACTOR_RESTARTS, "Supervised actor restarts");
    describe_gauge!(ACTOR_MAILBOX, "Work queued or in flight per actor");
    describe_counter!(
        HTTP_REQUESTS,
        "Control-surface requests by route and status"
    );
    describe_counter!(BAD_INPUT, "Rejected input by source and reason");
    describe_counter!(
        FORWARD_TOTAL,
        "Forwarding attempts by sink and outcome (ok, retry, dead, timeout, error)"
    );
    describe_gauge!(OUTBOX_PENDING, "Outbox rows waiting for delivery");
    describe_gauge!(OUTBOX_DEAD_LETTERS, "Outbox rows that ran out of attempts");
    describe_histogram!(
        FORWARD_SECONDS,
        Unit::Seconds,
        "Time one delivery attempt (or card-callback request) took, by sink"
    );
    describe_counter!(
        VAULT_UNREADABLE,
        "Stored tokens no configured key opens, by reason (unknown_key, damaged); each moves its session to reauth_required"
    );
}

/// Touch each family with its common labels so it shows before its first event.
fn zero_samples(actor_names: &[&'static str]) {
    gauge!(WS_CONNECTED).increment(0.0);
    counter!(WS_RECONNECTS).absolute(0);
    for direction in ["in", "out"] {
        for kind in ["event", "card", "ping", "pong"] {
            counter!(WS_FRAMES, "direction" => direction, "kind" => kind).increment(0);
        }
    }
    for reason in crate::ws::RefusedReason::ALL {
        gauge!(WS_REFUSED, "reason" => reason.as_str()).increment(0.0);
    }
    for outcome in ["ok", "error", "timeout"] {
        counter!(EVENTS, "event_type" => "card.action.trigger", "outcome" => outcome).increment(0);
    }
    histogram!(EVENT_HANDLE_SECONDS).record(0.0);
    counter!(EVENTS_DUPLICATE).increment(0);
    for state in crate::domain::SessionState::ALL {
        gauge!(AUTH_SESSIONS, "state" => state.as_str()).increment(0.0);
    }
    for method in crate::domain::AuthMethod::ALL {
        counter!(AUTH_COMPLETED, "method" => method.as_str()).increment(0);
    }
    counter!(AUTH_FAILED, "reason" => "exchange_failed").increment(0);
    for outcome in ["ok", "error"] {
        counter!(AUTH_CARD_UPDATES, "outcome" => outcome).increment(0);
    }
    gauge!(USER_AUTH_SUCCESS_RATE).increment(0.0);
    for outcome in ["ok", "transient", "reauth_required"] {
        counter!(TOKEN_REFRESH, "outcome" => outcome).increment(0);
    }
    gauge!(TOKENS_EXPIRING_SOON).increment(0.0);
    gauge!(TOKEN_STORE_PENDING).increment(0.0);
    histogram!(TOKEN_STORE_WAIT_SECONDS).record(0.0);
    for outcome in ["ok", "failed", "skipped"] {
        counter!(USER_SYNC_RUNS, "outcome" => outcome).increment(0);
    }
    for outcome in ["updated", "unchanged", "failed"] {
        counter!(USER_SYNC_USERS, "outcome" => outcome).increment(0);
    }
    gauge!(USER_SYNC_PROGRESS).increment(0.0);
    for outcome in ["ok", "auth_required", "scope_missing", "error"] {
        counter!(APAAS_REQUESTS, "outcome" => outcome).increment(0);
    }
    for &actor in actor_names {
        counter!(ACTOR_RESTARTS, "actor" => actor).increment(0);
        gauge!(ACTOR_MAILBOX, "actor" => actor).increment(0.0);
    }
    counter!(HTTP_REQUESTS, "route" => "/healthz", "status" => "200").increment(0);
    for outcome in ["ok", "retry", "dead"] {
        counter!(FORWARD_TOTAL, "sink" => "none", "outcome" => outcome).increment(0);
    }
    gauge!(OUTBOX_PENDING).increment(0.0);
    gauge!(OUTBOX_DEAD_LETTERS).increment(0.0);
    histogram!(FORWARD_SECONDS, "sink" => "none").record(0.0);
    for reason in ["unknown_key", "damaged"] {
        counter!(VAULT_UNREADABLE, "reason" => reason).increment(0);
    }
}

/// Count a rejected input (malformed frame, forged webhook, bad JSON…).
pub fn bad_input(source: &'static str, reason: &'static str) {
    counter!(BAD_INPUT, "source" => source, "reason" => reason).increment(1);
}
