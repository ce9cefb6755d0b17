//! What the benchmarks share: the real `lark-service serve` binary as a
//! child process pointed at the simulated platform, and that process's own
//! CPU time and memory read from `/proc`.
//!
//! The simulator runs inside the bench process; the service runs in its own.
//! So the figures are the client's alone: a simulator that is the bottleneck
//! shows up as fewer events per second, never as client CPU or client RSS.
//! The official SDKs' peers are measured the same way, as child processes.
//!
//! Each bench target includes this file with `mod support;` and uses what it
//! needs.
#![allow(dead_code)]

use std::io;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

use lark_service::sim::{Simulator, SIM_APP_ID, SIM_APP_SECRET};
use serde_json::{Map, Value};

/// The admin token every benchmarked service is started with.
pub const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";
/// The token vault key every benchmarked service is started with.
pub const ENCRYPTION_KEY_HEX: &str =
    "2222222222222222222222222222222222222222222222222222222222222222";

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One process's resource use, from `/proc/PID/stat` and `/proc/PID/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// User plus system CPU time of all its threads.
    pub cpu: Duration,
    /// Resident set now, KiB.
    pub rss_kib: u64,
    /// Peak resident set since start (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
}

/// Read a live process's usage.
pub fn usage(pid: u32) -> io::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may contain spaces: fields
    // are counted from the last ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::other("unreadable /proc stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), i.e. 12 and 13 after ')'.
    let ticks = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other("unreadable /proc stat field"))
    };
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    let cpu_ticks = ticks(11)? + ticks(12)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(Usage {
        cpu: Duration::from_nanos(cpu_ticks * 1_000_000_000 / hz.max(1)),
        rss_kib: kib("VmRSS:"),
        peak_rss_kib: kib("VmHWM:"),
    })
}

/// The environment that points a service at `sim` and `database_url`.
pub fn service_env(sim: &Simulator, database_url: &str, http_port: u16) -> Vec<(String, String)> {
    [
        ("APP_ID", SIM_APP_ID),
        ("APP_SECRET", SIM_APP_SECRET),
        ("ENCRYPTION_KEY", ENCRYPTION_KEY_HEX),
        ("DATABASE_URL", database_url),
        ("LARK_DOMAIN", sim.base_url()),
        ("LARK_ACCOUNTS_DOMAIN", sim.base_url()),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("RUST_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([("HTTP_BIND".to_owned(), format!("127.0.0.1:{http_port}"))])
    .collect()
}

/// A child process that is killed if the bench fails half-way, and whose
/// usage is read from `/proc`.
pub struct ChildProcess {
    child: Child,
}

impl ChildProcess {
    /// Start `command` with no stdin and its stdout discarded (its stderr
    /// shows, so a failing peer says why).
    pub fn spawn(command: &mut Command) -> io::Result<Self> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(Self { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn usage(&self) -> io::Result<Usage> {
        usage(self.pid())
    }

    /// An error if the process has exited already.
    pub fn check_running(&mut self, what: &str) -> io::Result<()> {
        match self.child.try_wait()? {
            Some(status) => Err(io::Error::other(format!("{what} exited: {status}"))),
            None => Ok(()),
        }
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(mut self) -> io::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).map_err(io::Error::other)?;
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(io::Error::last_os_error());
        }
        self.child.wait().map(drop)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // A bench that failed half-way must not leave a process running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `lark-service serve` (or another program serving the same control
/// surface) running as a child process.
pub struct ServiceProcess {
    process: ChildProcess,
    /// `http://127.0.0.1:PORT` of its control surface.
    pub base_url: String,
    pub http: reqwest::Client,
}

impl ServiceProcess {
    /// Start the release `lark-service serve` with `env` (on top of
    /// [`service_env`]'s kind of settings) in `dir`, so no developer `.env`
    /// leaks in, and wait until `/healthz` answers.
    pub async fn start(env: &[(String, String)], http_port: u16, dir: &Path) -> io::Result<Self> {
        Self::start_program(
            Path::new(env!("CARGO_BIN_EXE_lark-service")),
            &["serve"],
            env,
            http_port,
            dir,
        )
        .await
    }

    /// Like [`start`](Self::start), for any program that reads the service's
    /// settings from the environment and serves `/healthz` on `HTTP_BIND`
    /// (a bench binary embedding the service through `Service::builder`).
    pub async fn start_program(
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
        http_port: u16,
        dir: &Path,
    ) -> io::Result<Self> {
        let process = ChildProcess::spawn(
            Command::new(program)
                .args(args)
                .current_dir(dir)
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        )?;
        let mut service = Self {
            process,
            base_url: format!("http://127.0.0.1:{http_port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            service.process.check_running("the service")?;
            let health = service
                .http
                .get(format!("{}/healthz", service.base_url))
                .send()
                .await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Ok(service);
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(
                    "the service did not answer /healthz in 30 s",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn usage(&self) -> io::Result<Usage> {
        self.process.usage()
    }

    /// An admin request with the bench token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(self) -> io::Result<()> {
        self.process.stop()
    }
}

/// A database of the bench's own: a SQLite file in a temporary directory,
/// or a randomly named database on a PostgreSQL server, dropped again when
/// this is dropped.
pub enum BenchDb {
    Sqlite {
        url: String,
        _dir: tempfile::TempDir,
    },
    Postgres {
        url: String,
        server_url: String,
        name: String,
    },
}

impl BenchDb {
    pub fn sqlite() -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        Ok(Self::Sqlite { url, _dir: dir })
    }

    /// Create a new database on the server `server_url` points at.
    pub fn postgres(server_url: &str) -> io::Result<Self> {
        let name = format!("lark_bench_{}", uuid::Uuid::new_v4().simple());
        let mut server = PgConnection::establish(server_url).map_err(|e| {
            io::Error::other(format!("PostgreSQL at {server_url} is unreachable: {e}"))
        })?;
        server
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| io::Error::other(format!("cannot create a bench database: {e}")))?;
        let mut url = url::Url::parse(server_url).map_err(io::Error::other)?;
        url.set_path(&format!("/{name}"));
        Ok(Self::Postgres {
            url: url.to_string(),
            server_url: server_url.to_owned(),
            name,
        })
    }

    pub fn url(&self) -> &str {
        match self {
            Self::Sqlite { url, .. } | Self::Postgres { url, .. } => url,
        }
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        if let Self::Postgres {
            server_url, name, ..
        } = self
        {
            // Nothing to report to if this fails: the bench is ending anyway.
            if let Ok(mut server) = PgConnection::establish(server_url) {
                let _ =
                    server.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// A realistic `im.message.receive_v1` envelope (schema 2.0, a short text
/// message in a group chat, about 900 bytes), the event the stream and
/// micro benchmarks feed in.
pub fn message_event(event_id: &str) -> Value {
    serde_json::json!({
        "schema": "2.0",
        "header": {
            "event_id": event_id,
            "token": "",
            "create_time": "1718000000000",
            "event_type": "im.message.receive_v1",
            "tenant_key": "2ca1d211f64f6438",
            "app_id": SIM_APP_ID
        },
        "event": {
            "sender": {
                "sender_id": {
                    "union_id": "on_8ed6aa67826108097d9ee143816345",
                    "user_id": "e33ggbyz",
                    "open_id": "ou_84aad35d084aa403a838cf73ee18467"
                },
                "sender_type": "user",
                "tenant_key": "2ca1d211f64f6438"
            },
            "message": {
                "message_id": format!("om_{event_id}"),
                "root_id": "",
                "parent_id": "",
                "create_time": "1718000000000",
                "update_time": "1718000000000",
                "chat_id": "oc_5ad11d72b830411d72b836c20",
                "thread_id": "",
                "chat_type": "group",
                "message_type": "text",
                "content": "{\"text\":\"@_user_1 please summarise yesterday's incident review and file the follow-ups\"}",
                "mentions": [{
                    "key": "@_user_1",
                    "id": {
                        "union_id": "on_8ed6aa67826108097d9ee143816345",
                        "user_id": "e33ggbyz",
                        "open_id": "ou_84aad35d084aa403a838cf73ee18467"
                    },
                    "name": "Bench Bot",
                    "tenant_key": "2ca1d211f64f6438"
                }],
                "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Lark/7.20.5"
            }
        }
    })
}

/// Wait until `check` is true, polling every 20 ms, at most `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> io::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!("timed out waiting for {what}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The `p`-th percentile (0–100) of `samples`, sorted in place.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// A benchmark's result: printed as one JSON line and written to
/// `target/bench/NAME.json`, so README tables can be regenerated.
pub struct Report {
    name: String,
    fields: Map<String, Value>,
}

impl Report {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            fields: Map::new(),
        }
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    /// Print and save; returns the JSON.
    pub fn emit(&self) -> io::Result<Value> {
        let mut all = Map::new();
        all.insert("bench".into(), Value::String(self.name.clone()));
        all.extend(self.fields.clone());
        let json = Value::Object(all);
        println!("{json}");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join(format!("{}.json", self.name)),
            serde_json::to_vec_pretty(&json).map_err(io::Error::other)?,
        )?;
        Ok(json)
    }
}

/// The median of `values` (0 for none), sorted in place.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// Milliseconds with three decimals, for reports.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Mebibytes with one decimal, from KiB.
pub fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// What a benchmark of N simulated users sets up before the service starts.
pub struct Setup {
    /// Holds the SQLite file and is the service's working directory.
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub backend: String,
    pub sim: Simulator,
    /// The bench's own handle on the database, migrated.
    pub db: lark_service::db::Db,
    /// A connection for seeding.
    pub conn: lark_service::db::AnyConnection,
    /// The vault the service will open the seeded tokens with.
    pub vault: lark_service::auth::vault::Vault,
    /// `$VAR`, or 100,000.
    pub users: usize,
}

impl Setup {
    /// SQLite in a temporary directory, or the `postgres://…` URL among the
    /// arguments; the user count from `users_var`.
    pub async fn new(users_var: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        use lark_service::auth::vault::{EncryptionKey, Vault};
        use lark_service::db::connection::{build_pool, ConnectionManager};
        use lark_service::db::DatabaseUrl;
        let users = std::env::var(users_var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let dir = tempfile::tempdir()?;
        let database_url = std::env::args()
            .skip(1)
            .find(|a| a.starts_with("postgres://"))
            .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.path().display()));
        let url = DatabaseUrl::parse(&database_url)?;
        let backend = url.backend().to_string();
        let sim = Simulator::start()?;
        let db = lark_service::db::Db::start(build_pool(&url)?);
        db.migrate().await?;
        let conn = ConnectionManager::new(url).establish()?;
        let vault = Vault::new(&EncryptionKey::from_hex(ENCRYPTION_KEY_HEX)?);
        Ok(Self {
            dir,
            database_url,
            backend,
            sim,
            db,
            conn,
            vault,
            users,
        })
    }

    /// The simulated users `0..users`.
    pub fn population(&self) -> impl Iterator<Item = lark_service::sim::oauth::SimUser> {
        (0..self.users).map(|n| {
            lark_service::sim::oauth::SimUser::new(
                &format!("ou_bench{n:026}"),
                &format!("User {n}"),
            )
        })
    }
}
