//! Shared state of the simulated platform: the request log every route
//! writes to, and the scripted faults tests queue up.
//!
//! The simulator is a stand-in for a remote system, not part of the service,
//! so plain mutexes are fine here: nothing in it is on a hot path that the
//! benchmarks attribute to the client.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;

/// One request as the simulator received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl RecordedRequest {
    /// Case-insensitive header lookup.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The bearer token the request carried, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
    }

    /// The body parsed as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A fault a test queues for the next call(s) to one route.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this HTTP status and JSON body instead of the real answer.
    Respond {
        status: u16,
        body: serde_json::Value,
    },
    /// The gateway's rate limit: HTTP 429, code 99991400, `x-ogw-ratelimit-reset`.
    RateLimit { reset_seconds: u64 },
    /// Answer normally, but only after this delay.
    Delay(Duration),
}

/// Request log and fault queues, keyed by a route name such as
/// `"tenant_access_token"` that each route documents.
#[derive(Default)]
pub struct Recorder {
    requests: Mutex<Vec<RecordedRequest>>,
    faults: Mutex<HashMap<&'static str, VecDeque<Fault>>>,
}

impl Recorder {
    /// Append a request to the log.
    pub fn record(&self, req: &HttpRequest, body: &[u8]) {
        let entry = RecordedRequest {
            method: req.method().to_string(),
            path: req.path().to_owned(),
            query: req.query_string().to_owned(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                .collect(),
            body: body.to_vec(),
            at: Instant::now(),
        };
        lock(&self.requests).push(entry);
    }

    /// Every request so far whose path ends with `suffix`.
    pub fn requests_to(&self, suffix: &str) -> Vec<RecordedRequest> {
        lock(&self.requests)
            .iter()
            .filter(|r| r.path.ends_with(suffix))
            .cloned()
            .collect()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    /// Queue `fault` for the next `times` calls of `route`.
    pub fn inject(&self, route: &'static str, fault: Fault, times: usize) {
        let mut faults = lock(&self.faults);
        let queue = faults.entry(route).or_default();
        queue.extend(std::iter::repeat_n(fault, times));
    }

    /// The next queued fault for `route`, if any.
    pub fn take_fault(&self, route: &'static str) -> Option<Fault> {
        lock(&self.faults)
            .get_mut(route)
            .and_then(VecDeque::pop_front)
    }
}

/// Lock a simulator mutex. A poisoned lock only means another simulated
/// route panicked; its data is still the best answer we have.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
