//! Events over the long connection: the simulated platform streams
//! `im.message.receive_v1` events to a client running as its own process,
//! and this measures what each event costs that process.
//!
//! Clients: `lark-service serve`, which acks an event type it has no handler
//! for without touching the dedup ledger (`noop`); the service with a no-op
//! handler registered, so every event is checked against and recorded in
//! the ledger, on SQLite (`sqlite`) and on PostgreSQL (`postgres`, its own
//! database, dropped afterwards); and with `--peers` the official SDKs'
//! clients with no-op handlers (`python`: lark-oapi's `ws.Client`, `node`:
//! `@larksuiteoapi/node-sdk`'s `WSClient`; install them with
//! `bench/peers/setup.sh`). A peer that is not installed is an error, never
//! a skipped row.
//!
//! Per client and round: idle RSS once connected; a burst of `--events`
//! with at most `--window` unacked (events/s, CPU time per event); a paced
//! stream at `--rate` events/s (ack latency from the simulator's send to the
//! ack's arrival, CPU per event at that rate); for our clients, a sweep of
//! windows 1…1,000 unacked that must finish without a stall or a
//! redelivery; and peak RSS (`VmHWM`). CPU is the client's own (user +
//! system, from `/proc`), so a simulator that is the bottleneck lowers
//! events/s but cannot hide the client's cost. Rounds run the clients
//! interleaved; medians and the peers' ratios to `noop` are printed and
//! written to `target/bench/stream.json`.
//!
//! `cargo bench --bench stream [-- --peers] [--rounds N] [--events N]
//! [--paced-events N] [--rate R] [--window W] [--only noop,sqlite,...]
//! [--postgres URL]` (PostgreSQL defaults to `TEST_DATABASE_URL`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use lark_service::config::Settings;
use lark_service::events::envelope::Envelope;
use lark_service::events::router::HandlerResult;
use lark_service::sim::ws_server::{StreamPlan, StreamReport};
use lark_service::sim::Simulator;
use lark_service::startup::Service;
use serde_json::{json, Map, Value};
use support::{
    free_port, median, message_event, mib, ms, percentile, service_env, BenchDb, ChildProcess,
    Report, ServiceProcess, Usage,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const EVENT_TYPE: &str = "im.message.receive_v1";
/// Set when this binary is re-run as the service with a no-op handler.
const CHILD_ENV: &str = "LARK_STREAM_BENCH_CHILD";
/// Stands for the event id in the envelope template.
const ID_SLOT: &str = "EVENT-ID-SLOT";
const WARM_UP_EVENTS: usize = 1_000;
const SWEEP_WINDOWS: [usize; 4] = [1, 10, 100, 1_000];
const SWEEP_EVENTS: usize = 2_000;
/// No ack for this long ends a stream as stalled (the simulator redelivers
/// after 3 s, so a stall shows as redeliveries first).
const STALL: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// What "idle" means: connected and left alone this long.
const IDLE_SETTLE: Duration = Duration::from_secs(1);
/// The idle RSS target, 15 MB.
const IDLE_RSS_TARGET_MIB: f64 = 15e6 / (1024.0 * 1024.0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Noop,
    Sqlite,
    Postgres,
    Python,
    Node,
}

impl Client {
    const ALL: [Client; 5] = [
        Self::Noop,
        Self::Sqlite,
        Self::Postgres,
        Self::Python,
        Self::Node,
    ];

    fn key(self) -> &'static str {
        match self {
            Self::Noop => "noop",
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Python => "python",
            Self::Node => "node",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Noop => "lark-service, no-op",
            Self::Sqlite => "lark-service, dedup on SQLite",
            Self::Postgres => "lark-service, dedup on PostgreSQL",
            Self::Python => "Python SDK (lark-oapi ws.Client)",
            Self::Node => "Node SDK (WSClient)",
        }
    }

    fn is_ours(self) -> bool {
        matches!(self, Self::Noop | Self::Sqlite | Self::Postgres)
    }
}

struct Options {
    events: usize,
    paced_events: usize,
    rate: f64,
    window: usize,
    rounds: usize,
    clients: Vec<Client>,
    postgres: Option<String>,
}

const USAGE: &str = "usage: cargo bench --bench stream -- [--peers] [--rounds N] [--events N] \
[--paced-events N] [--rate EVENTS_PER_S] [--window UNACKED] [--only noop,sqlite,postgres,python,node] \
[--postgres URL]";

impl Options {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, BoxError> {
        let mut options = Self {
            events: 20_000,
            paced_events: 10_000,
            rate: 2_000.0,
            window: 1_000,
            rounds: 1,
            clients: Vec::new(),
            postgres: std::env::var("TEST_DATABASE_URL")
                .ok()
                .filter(|u| !u.is_empty()),
        };
        let mut peers = false;
        let mut only: Option<Vec<Client>> = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
            };
            match arg.as_str() {
                // cargo passes this to every bench binary.
                "--bench" => {}
                "--peers" => peers = true,
                "--rounds" => options.rounds = value("--rounds")?.parse()?,
                "--events" => options.events = value("--events")?.parse()?,
                "--paced-events" => options.paced_events = value("--paced-events")?.parse()?,
                "--rate" => options.rate = value("--rate")?.parse()?,
                "--window" => options.window = value("--window")?.parse()?,
                "--postgres" => options.postgres = Some(value("--postgres")?),
                "--only" => {
                    let list = value("--only")?;
                    let picked = list
                        .split(',')
                        .map(|k| {
                            Client::ALL
                                .into_iter()
                                .find(|c| c.key() == k.trim())
                                .ok_or_else(|| format!("unknown client `{k}`\n{USAGE}"))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    only = Some(picked);
                }
                other => return Err(format!("unknown argument `{other}`\n{USAGE}").into()),
            }
        }
        if options.rounds == 0 || options.events == 0 || options.window == 0 {
            return Err(
                format!("--rounds, --events and --window must be positive\n{USAGE}").into(),
            );
        }
        options.clients = match only {
            Some(picked) => picked,
            None => Client::ALL
                .into_iter()
                .filter(|c| c.is_ours() || peers)
                .filter(|c| *c != Client::Postgres || options.postgres.is_some())
                .collect(),
        };
        if options.clients.contains(&Client::Postgres) && options.postgres.is_none() {
            return Err("the postgres client needs TEST_DATABASE_URL or --postgres URL".into());
        }
        if !options.clients.contains(&Client::Postgres) && options.postgres.is_none() {
            eprintln!("PostgreSQL skipped: set TEST_DATABASE_URL or pass --postgres URL");
        }
        Ok(options)
    }
}

fn main() -> Result<(), BoxError> {
    let system = actix_rt::System::new();
    if std::env::var_os(CHILD_ENV).is_some() {
        return system.block_on(serve_with_noop_handler());
    }
    let options = Options::parse(std::env::args().skip(1))?;
    system.block_on(run(options))
}

/// The service as an embedding program builds it, with a handler that does
/// nothing: every event goes through the dedup ledger.
async fn serve_with_noop_handler() -> Result<(), BoxError> {
    lark_service::telemetry::init("warn");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let app = Service::builder(Settings::load()?)
        .on(EVENT_TYPE, |_event: Arc<Envelope>| async {
            HandlerResult::Ok(None)
        })
        .build()
        .await?;
    app.run_until(async move {
        term.recv().await;
    })
    .await?;
    Ok(())
}

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/peers")
}

/// The command that starts `client`'s peer, or why it cannot be started.
fn peer_command(client: Client) -> Result<Command, String> {
    let dir = peers_dir();
    let setup = "run bench/peers/setup.sh";
    match client {
        Client::Python => {
            let python = dir.join(".venv/bin/python");
            let importable = Command::new(&python)
                .args(["-c", "import lark_oapi.ws"])
                .output()
                .is_ok_and(|o| o.status.success());
            if !importable {
                return Err(format!(
                    "the Python SDK is not installed ({} cannot import lark_oapi.ws); {setup}",
                    python.display()
                ));
            }
            let mut command = Command::new(python);
            command.arg(dir.join("python/ws_peer.py"));
            Ok(command)
        }
        Client::Node => {
            let sdk = dir.join("node/node_modules/@larksuiteoapi/node-sdk/package.json");
            if !sdk.exists() {
                return Err(format!(
                    "the Node SDK is not installed ({} is missing); {setup}",
                    sdk.display()
                ));
            }
            if !Command::new("node")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return Err("the Node SDK peer needs `node` on PATH".into());
            }
            let mut command = Command::new("node");
            command.arg(dir.join("node/ws_peer.js"));
            Ok(command)
        }
        ours => Err(format!("{} is not a peer", ours.key())),
    }
}

/// A running client of either kind.
enum Running {
    Service(ServiceProcess),
    Peer(ChildProcess),
}

impl Running {
    fn usage(&self) -> std::io::Result<Usage> {
        match self {
            Self::Service(s) => s.usage(),
            Self::Peer(p) => p.usage(),
        }
    }

    fn stop(self) -> std::io::Result<()> {
        match self {
            Self::Service(s) => s.stop(),
            Self::Peer(p) => p.stop(),
        }
    }
}

async fn start_client(
    client: Client,
    sim: &Simulator,
    db: &BenchDb,
    dir: &Path,
) -> Result<Running, BoxError> {
    let port = free_port()?;
    let mut env = service_env(sim, db.url(), port);
    Ok(match client {
        Client::Noop => Running::Service(ServiceProcess::start(&env, port, dir).await?),
        Client::Sqlite | Client::Postgres => {
            env.push((CHILD_ENV.to_owned(), client.key().to_owned()));
            let this = std::env::current_exe()?;
            Running::Service(ServiceProcess::start_program(&this, &[], &env, port, dir).await?)
        }
        Client::Python | Client::Node => {
            let mut command = peer_command(client)?;
            command
                .current_dir(dir)
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            Running::Peer(ChildProcess::spawn(&mut command)?)
        }
    })
}

/// One client's figures from one round, by name, in report order.
type Figures = Vec<(&'static str, f64)>;

fn cpu_us_per_event(before: Usage, after: Usage, events: usize) -> f64 {
    let us = after.cpu.saturating_sub(before.cpu).as_secs_f64() * 1e6;
    (us / events.max(1) as f64 * 100.0).round() / 100.0
}

fn per_second(report: &StreamReport) -> f64 {
    (report.acked as f64 / report.elapsed.as_secs_f64().max(1e-9)).round()
}

/// A stream that lost events or needed redelivery.
fn stalled(report: &StreamReport, planned: usize) -> bool {
    report.pushed < planned || report.acked < report.pushed || report.redelivered > 0
}

async fn run_once(client: Client, options: &Options) -> Result<Figures, BoxError> {
    let sim = Simulator::start()?;
    let db = match (client, &options.postgres) {
        (Client::Postgres, Some(url)) => BenchDb::postgres(url)?,
        _ => BenchDb::sqlite()?,
    };
    let dir = tempfile::tempdir()?;
    let running = start_client(client, &sim, &db, dir.path()).await?;
    let ws = sim.ws();
    if !ws
        .wait_until(CONNECT_TIMEOUT, |s| s.open_connections() >= 1)
        .await
    {
        return Err(format!(
            "{} did not open a long connection to the simulator within {CONNECT_TIMEOUT:?} \
             (pings seen: {})",
            client.label(),
            ws.pings()
        )
        .into());
    }
    tokio::time::sleep(IDLE_SETTLE).await;
    let idle = running.usage()?;

    let template = message_event(ID_SLOT).to_string();
    let payload = |phase: &'static str| {
        let template = template.clone();
        move |i: usize| {
            template
                .replace(ID_SLOT, &format!("{phase}-{i}"))
                .into_bytes()
        }
    };
    let burst = |events| StreamPlan {
        events,
        max_in_flight: options.window,
        rate: None,
        stall: STALL,
    };
    let warm = ws.stream(burst(WARM_UP_EVENTS), payload("warm")).await;
    if stalled(&warm, WARM_UP_EVENTS) {
        return Err(format!(
            "{} stalled while warming up: {} pushed, {} acked, {} redelivered",
            client.label(),
            warm.pushed,
            warm.acked,
            warm.redelivered
        )
        .into());
    }

    let before = running.usage()?;
    let mut fast = ws.stream(burst(options.events), payload("burst")).await;
    let after_burst = running.usage()?;
    let paced_plan = StreamPlan {
        rate: Some(options.rate),
        ..burst(options.paced_events)
    };
    let mut paced = ws.stream(paced_plan, payload("paced")).await;
    let after_paced = running.usage()?;

    let mut figures: Figures = vec![
        ("events_per_s", per_second(&fast)),
        (
            "cpu_us_per_event",
            cpu_us_per_event(before, after_burst, fast.acked),
        ),
        (
            "cpu_us_per_event_paced",
            cpu_us_per_event(after_burst, after_paced, paced.acked),
        ),
        ("paced_events_per_s", per_second(&paced)),
        ("ack_p50_ms", ms(percentile(&mut paced.latencies, 50.0))),
        ("ack_p99_ms", ms(percentile(&mut paced.latencies, 99.0))),
        ("ack_max_ms", ms(percentile(&mut paced.latencies, 100.0))),
        (
            "burst_ack_p50_ms",
            ms(percentile(&mut fast.latencies, 50.0)),
        ),
        (
            "burst_ack_p99_ms",
            ms(percentile(&mut fast.latencies, 99.0)),
        ),
        ("idle_rss_mib", mib(idle.rss_kib)),
        (
            "stalled_streams",
            f64::from(u8::from(stalled(&fast, options.events)))
                + f64::from(u8::from(stalled(&paced, options.paced_events))),
        ),
    ];
    if client.is_ours() {
        let mut sweep_stalls = 0.0;
        for window in SWEEP_WINDOWS {
            let plan = StreamPlan {
                max_in_flight: window,
                ..burst(SWEEP_EVENTS)
            };
            let report = ws.stream(plan, payload("sweep")).await;
            sweep_stalls += f64::from(u8::from(stalled(&report, SWEEP_EVENTS)));
            figures.push((sweep_key(window), per_second(&report)));
        }
        figures.push(("sweep_stalls", sweep_stalls));
    }
    figures.push(("peak_rss_mib", mib(running.usage()?.peak_rss_kib)));
    running.stop()?;
    Ok(figures)
}

fn sweep_key(window: usize) -> &'static str {
    match window {
        1 => "window_1_events_per_s",
        10 => "window_10_events_per_s",
        100 => "window_100_events_per_s",
        _ => "window_1000_events_per_s",
    }
}

async fn run(options: Options) -> Result<(), BoxError> {
    // A peer that cannot run fails the whole bench before anything starts.
    for client in options.clients.iter().filter(|c| !c.is_ours()) {
        peer_command(*client)?;
    }
    let mut rounds: Vec<(Client, Vec<Figures>)> =
        options.clients.iter().map(|c| (*c, Vec::new())).collect();
    for round in 1..=options.rounds {
        for (client, runs) in rounds.iter_mut() {
            eprintln!(
                "round {round}/{}: {} ({} events)",
                options.rounds,
                client.label(),
                options.events
            );
            let figures = run_once(*client, &options).await?;
            eprintln!("  {}", Value::Object(figures_json(&figures)));
            runs.push(figures);
        }
    }

    let medians: Vec<(Client, Map<String, Value>)> = rounds
        .iter()
        .map(|(client, runs)| (*client, medians(runs)))
        .collect();
    print_table(&medians, &options);
    let ratios = ratios(&medians);
    for (client, r) in &ratios {
        println!(
            "{} / lark-service no-op: {}",
            client.label(),
            Value::Object(r.clone())
        );
    }
    print_targets(&medians, options.rate);

    let mut report = Report::new("stream");
    report
        .set(
            "options",
            json!({"events": options.events, "paced_events": options.paced_events,
                   "rate": options.rate, "window": options.window, "rounds": options.rounds,
                   "cores": std::thread::available_parallelism().map_or(0, |n| n.get())}),
        )
        .set(
            "medians",
            Value::Object(
                medians
                    .iter()
                    .map(|(c, m)| (c.key().to_owned(), Value::Object(m.clone())))
                    .collect(),
            ),
        )
        .set(
            "ratios_to_noop",
            Value::Object(
                ratios
                    .iter()
                    .map(|(c, r)| (c.key().to_owned(), Value::Object(r.clone())))
                    .collect(),
            ),
        )
        .set(
            "rounds",
            Value::Object(
                rounds
                    .iter()
                    .map(|(c, runs)| {
                        let runs = runs.iter().map(|f| Value::Object(figures_json(f)));
                        (c.key().to_owned(), Value::Array(runs.collect()))
                    })
                    .collect(),
            ),
        );
    report.emit()?;
    Ok(())
}

fn figures_json(figures: &Figures) -> Map<String, Value> {
    figures
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect()
}

/// Each figure's median over the rounds.
fn medians(runs: &[Figures]) -> Map<String, Value> {
    let Some(first) = runs.first() else {
        return Map::new();
    };
    first
        .iter()
        .map(|(key, _)| {
            let mut values: Vec<f64> = runs
                .iter()
                .filter_map(|f| f.iter().find(|(k, _)| k == key).map(|(_, v)| *v))
                .collect();
            ((*key).to_owned(), json!(round2(median(&mut values))))
        })
        .collect()
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn figure(medians: &Map<String, Value>, key: &str) -> f64 {
    medians.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

/// How many times the no-op service's figure each peer's is.
fn ratios(medians: &[(Client, Map<String, Value>)]) -> Vec<(Client, Map<String, Value>)> {
    let Some((_, ours)) = medians.iter().find(|(c, _)| *c == Client::Noop) else {
        return Vec::new();
    };
    medians
        .iter()
        .filter(|(c, _)| !c.is_ours())
        .map(|(client, theirs)| {
            let keys = [
                "cpu_us_per_event",
                "events_per_s",
                "ack_p99_ms",
                "idle_rss_mib",
                "peak_rss_mib",
            ];
            let r = keys
                .iter()
                .map(|k| {
                    let ratio = figure(theirs, k) / figure(ours, k);
                    ((*k).to_owned(), json!(round2(ratio)))
                })
                .collect();
            (*client, r)
        })
        .collect()
}

fn print_table(medians: &[(Client, Map<String, Value>)], options: &Options) {
    println!();
    println!(
        "| client | events/s | CPU µs/event | CPU µs/event at {} /s | ack p50 / p99 / max ms at {} /s | idle / peak RSS MiB |",
        options.rate, options.rate
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (client, m) in medians {
        let f = |k| figure(m, k);
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.3} / {:.3} / {:.3} | {:.1} / {:.1} |",
            client.label(),
            f("events_per_s"),
            f("cpu_us_per_event"),
            f("cpu_us_per_event_paced"),
            f("ack_p50_ms"),
            f("ack_p99_ms"),
            f("ack_max_ms"),
            f("idle_rss_mib"),
            f("peak_rss_mib"),
        );
    }
    println!();
}

fn print_targets(medians: &[(Client, Map<String, Value>)], rate: f64) {
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    for (client, m) in medians.iter().filter(|(c, _)| c.is_ours()) {
        let f = |k| figure(m, k);
        let name = client.key();
        if *client == Client::Noop {
            let cpu = f("cpu_us_per_event");
            println!(
                "target {name}: CPU ≤ 5 µs/event: {cpu:.2} µs, {}",
                verdict(cpu <= 5.0)
            );
        } else {
            let rate = f("events_per_s");
            println!(
                "target {name}: ≥ 10,000 events/s with dedup: {rate:.0}, {}",
                verdict(rate >= 10_000.0)
            );
        }
        let stalls = f("sweep_stalls") + f("stalled_streams");
        println!(
            "target {name}: no stall with up to 1,000 unacked: {stalls:.0} stalled streams, {}",
            verdict(stalls == 0.0)
        );
        let p99 = f("ack_p99_ms");
        println!(
            "target {name}: ack p99 ≤ 1 ms at {rate} events/s: {p99:.3} ms, {}",
            verdict(p99 <= 1.0)
        );
        let idle = f("idle_rss_mib");
        println!(
            "target {name}: idle RSS ≤ 15 MB ({IDLE_RSS_TARGET_MIB:.1} MiB): {idle:.1} MiB, {}",
            verdict(idle <= IDLE_RSS_TARGET_MIB)
        );
    }
}
