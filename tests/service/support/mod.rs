//! Test harness: a fresh database per test, the simulated platform, and the
//! real application on a random port.
//!
//! Not every test module uses every helper.
#![allow(dead_code)]

pub mod binary;
pub mod counting;
pub mod db;
pub mod nats;
pub mod replica;

use std::future::Future;
use std::time::{Duration, Instant};

use lark_service::config::{defaults, overlay, Settings};
use lark_service::sim::Simulator;
use lark_service::startup::{Service, ServiceBuilder};
use lark_service::ws::ClientConfig;

pub use db::{backends, TestDb};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// Tick the token refresher every second, run AI calls on a simulated
/// Aily app, poll its runs fast.
pub const FAST: &[(&str, &str)] = &[
    ("TOKEN_REFRESH_INTERVAL_SECONDS", "1"),
    ("AILY_APP_ID", "spring_test__c"),
    ("AILY_POLL_INTERVAL_MS", "20"),
];
/// The accounts host's token endpoint, where seeded (card, device-flow)
/// sessions refresh.
pub const REFRESH_PATH: &str = "/oauth/v3/token";
/// The `ENCRYPTION_KEY` every test service (in-process or binary) runs with.
pub const TEST_KEY_HEX: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// Logs are quiet unless `TEST_LOG` is set.
pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        lark_service::telemetry::init("debug");
    }
}

/// The running service plus everything it talks to.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub sim: Simulator,
    pub db: TestDb,
    pub http: reqwest::Client,
    pub server: actix_web::dev::ServerHandle,
    pub app_db: lark_service::db::Db,
    pub router: actix::Addr<lark_service::events::router::EventRouter>,
}

/// Settings aimed at `sim` and `db`, with `extra` pairs on top.
pub fn settings_for(sim: &Simulator, db: &TestDb, extra: &[(&str, &str)]) -> Settings {
    let mut raw = defaults().expect("defaults parse");
    let pairs = [
        ("APP_ID", lark_service::sim::SIM_APP_ID),
        ("APP_SECRET", lark_service::sim::SIM_APP_SECRET),
        ("ENCRYPTION_KEY", TEST_KEY_HEX),
        ("DATABASE_URL", db.url()),
        ("LARK_DOMAIN", sim.base_url()),
        ("LARK_ACCOUNTS_DOMAIN", sim.base_url()),
        ("HTTP_BIND", "127.0.0.1:0"),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
    ];
    overlay(
        &mut raw,
        pairs
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Settings::from_raw(&raw).expect("test settings parse")
}

/// Start the simulator and the real app on `db`.
pub async fn spawn_app(db: TestDb) -> TestApp {
    spawn_app_with(db, &[]).await
}

/// Like [`spawn_app`], with extra configuration pairs.
pub async fn spawn_app_with(db: TestDb, extra: &[(&str, &str)]) -> TestApp {
    spawn(db, extra, |_| {}, |b| b).await
}

/// Reconnect fast, so tests that drop connections do not wait the
/// platform's default two minutes; ping every `ping_seconds`.
pub fn test_client_config(ping_seconds: u64) -> ClientConfig {
    ClientConfig {
        reconnect_count: -1,
        reconnect_interval: Duration::from_secs(1),
        reconnect_nonce: Duration::from_secs(1),
        ping_interval: Duration::from_secs(ping_seconds),
    }
}

/// The general form: script the simulator before the app connects, and
/// add handlers to the service.
pub async fn spawn(
    db: TestDb,
    extra: &[(&str, &str)],
    prepare: impl FnOnce(&Simulator),
    customize: impl FnOnce(ServiceBuilder) -> ServiceBuilder,
) -> TestApp {
    init_logs();
    let sim = Simulator::start().expect("simulator starts");
    sim.ws().set_client_config(test_client_config(30));
    prepare(&sim);
    let settings = settings_for(&sim, &db, extra);
    let app = customize(Service::builder(settings))
        .build()
        .await
        .expect("application builds");
    let port = app.port();
    let server = app.server_handle();
    let app_db = app.db().clone();
    let router = app.router().clone();
    actix_rt::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        sim,
        db,
        http: reqwest::Client::new(),
        server,
        app_db,
        router,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn admin_post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    /// The Prometheus text.
    pub async fn metrics(&self) -> String {
        self.get("/metrics")
            .await
            .text()
            .await
            .expect("metrics body")
    }

    /// Deliver an event envelope to the service, as the platform would.
    pub async fn deliver(
        &self,
        envelope: &serde_json::Value,
    ) -> lark_service::events::router::RouteOutcome {
        self.router
            .send(lark_service::events::router::RouteEvent {
                payload: serde_json::to_vec(envelope).expect("envelope serialises"),
                source: lark_service::events::router::EventSource::WebSocket,
            })
            .await
            .expect("router answers")
            .outcome
    }

    /// Stop the HTTP server and wait for it.
    pub async fn stop(&self) {
        self.server.stop(true).await;
    }
}

/// The value of the sample `series` (e.g. `lark_actor_restarts_total{actor="x"}`).
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Poll `check` until it yields `Some`, or panic after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The key [`settings_for`] configures, for sealing and opening tokens in tests.
pub fn test_vault() -> lark_service::auth::vault::Vault {
    let key = lark_service::auth::vault::EncryptionKey::from_hex(TEST_KEY_HEX).expect("test key");
    lark_service::auth::vault::Vault::new(&key)
}

/// What seeding writes to: a connection of its own to `database_url`, and
/// the simulator that grants the users' tokens.
fn seed_with(
    database_url: &str,
    sim: &Simulator,
    users: Vec<lark_service::sim::oauth::SimUser>,
    seed: impl FnOnce(
        &mut lark_service::db::AnyConnection,
        &lark_service::sim::oauth::OAuthState,
        Vec<lark_service::sim::oauth::SimUser>,
    ) -> Result<usize, lark_service::sim::seed::SeedError>,
) {
    let url = lark_service::db::DatabaseUrl::parse(database_url).expect("test database URL");
    let mut conn = lark_service::db::connection::ConnectionManager::new(url)
        .establish()
        .expect("test database reachable");
    let n = users.len();
    let stored = seed(&mut conn, &sim.state().open_api.oauth, users).expect("sessions seeded");
    assert_eq!(stored, n);
}

/// Store completed sessions for `users`, each with a live access token
/// granted by the simulator (no refresh token).
pub fn seed_completed(app: &TestApp, users: Vec<lark_service::sim::oauth::SimUser>) {
    seed_with(app.db.url(), &app.sim, users, |conn, oauth, users| {
        lark_service::sim::seed::completed_sessions(
            conn,
            oauth,
            &test_vault(),
            lark_service::sim::SIM_APP_ID,
            users,
            lark_service::db::now(),
        )
    });
}

/// Store completed card sessions for `users` holding a device-flow token
/// pair (granted by the simulator) whose access token the database says expires at
/// `token_expires_at`, in the database at `database_url` (migrated).
pub fn seed_refreshable_at(
    database_url: &str,
    sim: &Simulator,
    users: Vec<lark_service::sim::oauth::SimUser>,
    token_expires_at: chrono::NaiveDateTime,
) {
    seed_with(database_url, sim, users, |conn, oauth, users| {
        lark_service::sim::seed::refreshable_sessions(
            conn,
            oauth,
            &test_vault(),
            lark_service::sim::SIM_APP_ID,
            users,
            lark_service::db::now(),
            token_expires_at,
        )
    });
}

/// [`seed_refreshable_at`] in `app`'s database.
pub fn seed_refreshable(
    app: &TestApp,
    users: Vec<lark_service::sim::oauth::SimUser>,
    token_expires_at: chrono::NaiveDateTime,
) {
    seed_refreshable_at(app.db.url(), &app.sim, users, token_expires_at);
}

/// A simulated user with a test-specific open_id: `ou_`, then `prefix` and
/// `n` zero-padded to 28 characters.
pub fn sim_user(prefix: &str, n: usize, name: &str) -> lark_service::sim::oauth::SimUser {
    let width = 28usize.saturating_sub(prefix.len());
    lark_service::sim::oauth::SimUser::new(&format!("ou_{prefix}{n:0width$}"), name)
}

/// The PostgreSQL test database, for tests that need two services on one
/// database; `None` (and a line saying so) without `TEST_DATABASE_URL`.
pub fn postgres_only(test: &str) -> Option<TestDb> {
    let db = backends().into_iter().find(|d| d.backend() == "postgres");
    if db.is_none() {
        eprintln!("{test}: skipped, it needs PostgreSQL (set TEST_DATABASE_URL)");
    }
    db
}

/// How many migrations `backend` (`sqlite` or `postgres`) has.
pub fn migration_count(backend: &str) -> usize {
    std::fs::read_dir(format!(
        "{}/migrations/{backend}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("migrations folder")
    .count()
}

/// `now + seconds`, as the database stores times.
pub fn in_seconds(seconds: i64) -> chrono::NaiveDateTime {
    lark_service::db::now() + chrono::Duration::seconds(seconds)
}

impl TestApp {
    /// Every session of `open_id`, newest first, straight from the database.
    pub async fn sessions_of(
        &self,
        open_id: &str,
    ) -> Vec<lark_service::db::models::user_auth_session::UserAuthSession> {
        use lark_service::db::models::user_auth_session;
        let open_id = open_id.to_owned();
        self.app_db
            .read(move |c| {
                user_auth_session::list(c, None, 10_000).map(|rows| {
                    rows.into_iter()
                        .filter(|r| r.open_id.as_deref() == Some(open_id.as_str()))
                        .collect()
                })
            })
            .await
            .expect("read")
    }

    /// The latest session of `open_id`.
    pub async fn session_of(
        &self,
        open_id: &str,
    ) -> lark_service::db::models::user_auth_session::UserAuthSession {
        self.sessions_of(open_id)
            .await
            .into_iter()
            .next()
            .expect("the session exists")
    }

    /// The access token stored for `open_id`, opened.
    pub async fn stored_access_token(&self, open_id: &str) -> String {
        let row = self.session_of(open_id).await;
        test_vault()
            .open(
                lark_service::auth::vault::Slot::new(
                    lark_service::auth::vault::SealedColumn::UserAccessToken,
                    &row.session_id,
                ),
                row.access_token_enc.as_deref().expect("an access token"),
            )
            .expect("the token opens")
    }

    /// `POST /admin/apaas/ai` as `user_id`.
    pub async fn ask_ai(&self, user_id: &str, prompt: &str) -> reqwest::Response {
        self.admin_post(
            "/admin/apaas/ai",
            serde_json::json!({"user_id": user_id, "prompt": prompt}),
        )
        .await
    }
}
