//! Forwarding throughput and added latency: `lark-service serve` (the
//! release binary, its own process) receives N events over the simulated
//! long connection and forwards each through its outbox to a sink in this
//! process: a local HTTP endpoint (signed POSTs, checked), then NATS
//! JetStream on this machine (a fresh stream per run).
//!
//! For each sink it reports events per second from the first platform send
//! to the last arrival at the sink, the added latency of each event
//! (platform send → sink receive: the ledger and outbox transaction, the
//! ack, the claim and the delivery) at p50, p99 and max, and the service's
//! CPU time and peak RSS.
//!
//! `cargo bench --bench forward` (`FORWARD_BENCH_EVENTS` sets N, default
//! 20,000; add `-- postgres://…` to run it on PostgreSQL; the broker is
//! `FORWARD_BENCH_NATS_URL`, default `nats://127.0.0.1:4222`).

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::header::NATS_MESSAGE_ID;
use futures_util::StreamExt;
use lark_service::sim::event_sink::EventSink;
use lark_service::sim::{Simulator, SIM_APP_ID};
use serde_json::{json, Value};
use support::{free_port, mib, ms, percentile, service_env, wait_until, Report, ServiceProcess};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SECRET: &str = "forward-bench-secret-0123456789";
/// Unacked events the simulated platform keeps in flight.
const IN_FLIGHT: usize = 256;
/// Deliveries in flight per sink.
const CONCURRENCY: usize = 64;

/// Arrivals at a sink: event id and when it came, duplicates included.
type Arrivals = Arc<Mutex<Vec<(String, Instant)>>>;

/// Where the events go in one run.
enum Target {
    Http(EventSink),
    Nats {
        jetstream: async_nats::jetstream::Context,
        stream: String,
        arrivals: Arrivals,
        listener: tokio::task::JoinHandle<()>,
    },
}

impl Target {
    fn arrivals(&self) -> Vec<(String, Instant)> {
        match self {
            Self::Http(sink) => sink.arrivals(),
            Self::Nats { arrivals, .. } => arrivals.lock().map(|a| a.clone()).unwrap_or_default(),
        }
    }
}

fn event(tag: &str, i: usize) -> Value {
    json!({
        "schema": "2.0",
        "header": {"event_id": format!("{tag}-{i}"), "event_type": "im.message.receive_v1",
                   "create_time": "1608725989000", "token": "v", "app_id": SIM_APP_ID,
                   "tenant_key": "t"},
        "event": {"sender": {"sender_id": {"open_id": "ou_bench"}, "sender_type": "user"},
                  "message": {"message_id": format!("om_{tag}_{i}"), "chat_id": "oc_bench",
                              "message_type": "text", "content": "{\"text\":\"hello\"}"}}
    })
}

#[actix_rt::main]
async fn main() -> Result<(), BoxError> {
    let n: usize = std::env::var("FORWARD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let postgres = std::env::args()
        .skip(1)
        .find(|a| a.starts_with("postgres://"));
    let nats_url =
        std::env::var("FORWARD_BENCH_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());

    let sink = EventSink::start(SECRET)?;
    let http_sinks = json!([{
        "name": "bench-http", "type": "http", "events": ["im.message.*"], "url": sink.url(),
        "secret": SECRET, "concurrency": CONCURRENCY
    }]);
    run(
        "http",
        n,
        postgres.as_deref(),
        http_sinks,
        Target::Http(sink),
    )
    .await?;

    let client = async_nats::connect(&nats_url)
        .await
        .map_err(|e| format!("NATS JetStream is not reachable at {nats_url}: {e}"))?;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let stream = format!("LARK_BENCH_{tag}");
    let prefix = format!("lark.bench{tag}.events");
    // A core subscription sees each message as the server takes it in.
    let mut messages = client.subscribe(format!("{prefix}.>")).await?;
    client.flush().await?;
    let arrivals: Arrivals = Arc::default();
    let listener = {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            while let Some(m) = messages.next().await {
                let at = Instant::now();
                if let Some(id) = m.headers.as_ref().and_then(|h| h.get(NATS_MESSAGE_ID)) {
                    if let Ok(mut a) = arrivals.lock() {
                        a.push((id.as_str().to_owned(), at));
                    }
                }
            }
        })
    };
    let nats_sinks = json!([{
        "name": "bench-nats", "type": "nats", "events": ["im.message.*"], "url": nats_url,
        "stream": stream, "subject_prefix": prefix, "concurrency": CONCURRENCY
    }]);
    let target = Target::Nats {
        jetstream: async_nats::jetstream::new(client.clone()),
        stream,
        arrivals,
        listener,
    };
    run("nats", n, postgres.as_deref(), nats_sinks, target).await?;
    Ok(())
}

/// One sink: a fresh simulator, database and service; `n` events; a report.
async fn run(
    kind: &str,
    n: usize,
    postgres: Option<&str>,
    sinks: Value,
    target: Target,
) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let database_url = postgres.map_or_else(
        || format!("sqlite://{}/bench.db", dir.path().display()),
        str::to_owned,
    );
    let backend = if postgres.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let sim = Simulator::start()?;
    let port = free_port()?;
    let mut env = service_env(&sim, &database_url, port);
    env.push(("FORWARD_SINKS".into(), sinks.to_string()));
    let service = ServiceProcess::start(&env, port, dir.path()).await?;
    wait_until("the long connection", Duration::from_secs(30), || async {
        sim.ws().open_connections() > 0
    })
    .await?;
    let idle = service.usage()?;

    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let mut sent = Vec::with_capacity(n);
    let report = sim
        .ws()
        .stream_events(n, IN_FLIGHT, Duration::from_secs(60), |i| {
            sent.push(Instant::now());
            event(&tag, i)
        })
        .await;
    if report.acked != n {
        return Err(format!("{kind}: only {} of {n} events were acked", report.acked).into());
    }
    wait_until("every event at the sink", Duration::from_secs(600), || {
        // Counting distinct ids costs more; do it only once it can be done.
        let arrivals = target.arrivals();
        let done = arrivals.len() >= n && first_arrivals(&arrivals).len() >= n;
        async move { done }
    })
    .await?;
    let end = service.usage()?;
    let arrivals = target.arrivals();
    let first = first_arrivals(&arrivals);
    let mut latencies: Vec<Duration> = first
        .iter()
        .filter_map(|(id, at)| {
            let i: usize = id.strip_prefix(&format!("{tag}-"))?.parse().ok()?;
            Some(at.saturating_duration_since(*sent.get(i)?))
        })
        .collect();
    if latencies.len() != n {
        return Err(format!(
            "{kind}: {} of {n} arrivals match a sent event",
            latencies.len()
        )
        .into());
    }
    let last = first.values().max().copied().unwrap_or_else(Instant::now);
    let span = last.saturating_duration_since(sent[0]);
    let held = match &target {
        Target::Nats {
            jetstream, stream, ..
        } => Some(stream_count(jetstream, stream).await?),
        Target::Http(_) => None,
    };
    service.stop()?;

    let mut out = Report::new(&format!("forward-{kind}-{backend}"));
    out.set("sink", kind)
        .set("backend", backend)
        .set("events", n)
        .set("seconds", (span.as_secs_f64() * 100.0).round() / 100.0)
        .set("events_per_second", (n as f64 / span.as_secs_f64()).round())
        .set("p50_added_ms", ms(percentile(&mut latencies, 50.0)))
        .set("p99_added_ms", ms(percentile(&mut latencies, 99.0)))
        .set("max_added_ms", ms(percentile(&mut latencies, 100.0)))
        .set("duplicates_at_sink", arrivals.len() - n)
        .set(
            "service_cpu_seconds",
            ((end.cpu - idle.cpu).as_secs_f64() * 100.0).round() / 100.0,
        )
        .set("peak_rss_mib", mib(end.peak_rss_kib));
    if let Some(held) = held {
        out.set("stream_messages", held);
    }
    out.emit()?;
    if let Target::Nats {
        jetstream,
        stream,
        listener,
        ..
    } = target
    {
        listener.abort();
        jetstream.delete_stream(&stream).await?;
    }
    Ok(())
}

/// The first arrival of each event id.
fn first_arrivals(arrivals: &[(String, Instant)]) -> HashMap<String, Instant> {
    let mut first = HashMap::with_capacity(arrivals.len());
    for (id, at) in arrivals {
        first.entry(id.clone()).or_insert(*at);
    }
    first
}

/// Messages the stream holds (each event once, if dedup works).
async fn stream_count(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
) -> Result<u64, BoxError> {
    Ok(jetstream
        .get_stream(stream)
        .await?
        .info()
        .await?
        .state
        .messages)
}
