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

/// `lark-service serve` running as a child process.
pub struct ServiceProcess {
    child: Child,
    /// `http://127.0.0.1:PORT` of its control surface.
    pub base_url: String,
    pub http: reqwest::Client,
}

impl ServiceProcess {
    /// Start the release binary with `env` (on top of [`service_env`]'s
    /// kind of settings) in `dir`, so no developer `.env` leaks in, and
    /// wait until `/healthz` answers.
    pub async fn start(env: &[(String, String)], http_port: u16, dir: &Path) -> io::Result<Self> {
        let child = Command::new(env!("CARGO_BIN_EXE_lark-service"))
            .arg("serve")
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut service = Self {
            child,
            base_url: format!("http://127.0.0.1:{http_port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = service.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "lark-service serve exited: {status}"
                )));
            }
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
                    "lark-service did not answer /healthz in 30 s",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn usage(&self) -> io::Result<Usage> {
        usage(self.pid())
    }

    /// An admin request with the bench token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(ADMIN_TOKEN)
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

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        // A bench that failed half-way must not leave a service running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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
