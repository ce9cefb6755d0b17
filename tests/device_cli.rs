//! The `auth` commands end to end against the simulated authorization
//! server: exact JSON on the right stream, exit codes, what is stored.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use lark_service::device::clock::Sleep;
use lark_service::device::{
    run, AuthCommand, AuthContext, Clock, DeviceClient, DeviceStore, EnvOverrides, MemoryStore,
    StoredToken,
};
use lark_service::sim::{Fault, SimState, Simulator};
use serde_json::{json, Value};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    auth: AuthCommand,
}

type SleepHook = Box<dyn Fn(usize, Duration, &SimState) + Send + Sync>;

/// A clock that never waits: sleeping moves its time forward and, unless a
/// hook says otherwise, the simulator's clock by the same amount.
struct TestClock {
    now_ms: AtomicI64,
    sim: Arc<SimState>,
    slept: Mutex<Vec<Duration>>,
    hook: Option<SleepHook>,
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn sleep(&self, d: Duration) -> Sleep<'_> {
        let index = {
            let mut slept = self.slept.lock().unwrap();
            slept.push(d);
            slept.len() - 1
        };
        self.now_ms
            .fetch_add(d.as_millis() as i64, Ordering::SeqCst);
        match &self.hook {
            Some(hook) => hook(index, d, &self.sim),
            None => self.sim.device.advance(d),
        }
        Box::pin(async {})
    }
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn out_json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }
}

struct Harness {
    sim: Simulator,
    store: Arc<MemoryStore>,
    client: DeviceClient,
    clock: TestClock,
    env: EnvOverrides,
}

const START_MS: i64 = 1_700_000_000_000;

impl Harness {
    fn new() -> Self {
        Self::with_hook(None)
    }

    fn with_hook(hook: Option<SleepHook>) -> Self {
        let sim = Simulator::start().unwrap();
        let clock = TestClock {
            now_ms: AtomicI64::new(START_MS),
            sim: sim.state().clone(),
            slept: Mutex::default(),
            hook,
        };
        Self {
            sim,
            store: Arc::new(MemoryStore::default()),
            client: DeviceClient::new().unwrap(),
            clock,
            env: EnvOverrides::default(),
        }
    }

    /// `127.0.0.1:PORT`.
    fn host(&self) -> String {
        self.sim.base_url().trim_start_matches("http://").to_owned()
    }

    fn state(&self) -> &SimState {
        self.sim.state()
    }

    async fn run(&self, args: &[&str]) -> Outcome {
        self.run_with(&self.client, args).await
    }

    /// Run with a client of its own, as another process would have.
    async fn run_with(&self, client: &DeviceClient, args: &[&str]) -> Outcome {
        let cli = Cli::try_parse_from(std::iter::once("auth").chain(args.iter().copied())).unwrap();
        let cx = AuthContext {
            client,
            store: self.store.as_ref(),
            env: &self.env,
            clock: &self.clock,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(cli.auth, &cx, &mut out, &mut err).await;
        Outcome {
            code,
            stdout: String::from_utf8(out).unwrap(),
            stderr: String::from_utf8(err).unwrap(),
        }
    }

    async fn init(&self) -> Value {
        let host = self.host();
        let o = self
            .run(&["login", "--device-code", "--phase", "init", "--host", &host])
            .await;
        assert_eq!(o.code, 0, "{}", o.stderr);
        o.out_json()
    }

    async fn poll_once(&self, init: &Value) -> Outcome {
        self.run(&[
            "login",
            "--device-code",
            "--phase",
            "poll",
            "--once",
            "--device-code-value",
            init["device_code"].as_str().unwrap(),
            "--client-id",
            init["client_id"].as_str().unwrap(),
        ])
        .await
    }

    async fn poll_blocking(&self, init: &Value, extra: &[&str]) -> Outcome {
        let mut args = vec![
            "login",
            "--device-code",
            "--phase",
            "poll",
            "--device-code-value",
            init["device_code"].as_str().unwrap(),
            "--client-id",
            init["client_id"].as_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.run(&args).await
    }

    /// A complete login; returns the stored token.
    async fn login(&self) -> StoredToken {
        let init = self.init().await;
        assert!(self
            .state()
            .device
            .approve(init["user_code"].as_str().unwrap()));
        let o = self.poll_once(&init).await;
        assert_eq!(o.code, 0, "{}", o.stderr);
        self.stored().unwrap()
    }

    fn stored(&self) -> Option<StoredToken> {
        self.store.load_token("default").unwrap()
    }
}

/// `text` is exactly `expected`, keys sorted, indented by two spaces.
fn assert_pretty(text: &str, expected: Value) {
    assert_eq!(
        text,
        format!("{}\n", serde_json::to_string_pretty(&expected).unwrap())
    );
}

/// `text` is exactly `expected` on one compact line.
fn assert_line(text: &str, expected: Value) {
    assert_eq!(
        text,
        format!("{}\n", serde_json::to_string(&expected).unwrap())
    );
}

fn envelope(code: &str, message: &str, retryable: bool) -> Value {
    json!({"data": null, "error": {"code": code, "message": message, "retryable": retryable}, "meta": {}})
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

/// The error envelope of `o`, with only the given code checked exactly.
fn assert_error(o: &Outcome, code: &str, retryable: bool) -> String {
    assert_eq!(o.code, 1, "stdout: {} stderr: {}", o.stdout, o.stderr);
    assert_eq!(o.stdout, "", "errors never go to stdout");
    let env: Value =
        serde_json::from_str(&o.stderr).unwrap_or_else(|e| panic!("{e}: {}", o.stderr));
    assert_eq!(keys(&env), ["data", "error", "meta"]);
    assert_eq!(env["data"], Value::Null);
    assert_eq!(env["meta"], json!({}));
    assert_eq!(keys(&env["error"]), ["code", "message", "retryable"]);
    assert_eq!(env["error"]["code"], code, "{}", o.stderr);
    assert_eq!(env["error"]["retryable"], retryable, "{}", o.stderr);
    env["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn init_pending_slow_down_ok_then_status() {
    let h = Harness::new();
    let host = h.host();

    let init = h.init().await;
    assert_eq!(
        keys(&init),
        [
            "client_id",
            "device_code",
            "expires_in",
            "interval",
            "user_code",
            "verification_uri",
            "verification_uri_complete"
        ]
    );
    let user_code = init["user_code"].as_str().unwrap();
    assert!(init["client_id"].as_str().unwrap().starts_with("cid_"));
    assert_eq!(init["expires_in"], 600);
    assert_eq!(init["interval"], 5);
    assert_eq!(
        init["verification_uri"],
        format!("http://{host}/device-oauth/verify")
    );
    assert_eq!(
        init["verification_uri_complete"],
        format!("http://{host}/device-oauth/verify?channel=meegle-cli&usercode={user_code}")
    );
    assert_eq!(
        h.store.host("default").unwrap().as_deref(),
        Some(host.as_str())
    );
    assert!(h.stored().is_none());

    // What went over the wire, as the reference client sends it.
    let reg = &h.sim.recorder().requests_to("/device-oauth/register")[0];
    let body = reg.json();
    assert_eq!(
        keys(&body),
        ["client_name", "grant_types", "token_endpoint_auth_method"]
    );
    assert_eq!(
        body["grant_types"],
        json!([
            "urn:ietf:params:oauth:grant-type:device_code",
            "refresh_token"
        ])
    );
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert!(body["client_name"].as_str().unwrap().ends_with(')'));
    let dev = &h
        .sim
        .recorder()
        .requests_to("/device-oauth/device_authorization")[0];
    assert_eq!(
        String::from_utf8_lossy(&dev.body),
        format!("client_id={}", init["client_id"].as_str().unwrap())
    );

    let o = h.poll_once(&init).await;
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_pretty(&o.stdout, json!({"status": "authorization_pending"}));
    let poll = h
        .sim
        .recorder()
        .requests_to("/device-oauth/token")
        .pop()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&poll.body),
        format!(
            "client_id={}&device_code={}&grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code",
            init["client_id"].as_str().unwrap(),
            init["device_code"].as_str().unwrap()
        )
    );
    // Discovery is fetched again before each poll.
    assert_eq!(
        h.sim
            .recorder()
            .requests_to("/.well-known/oauth-authorization-server")
            .len(),
        2
    );

    let o = h.poll_once(&init).await;
    assert_pretty(&o.stdout, json!({"status": "slow_down"}));

    assert!(h.state().device.approve(user_code));
    h.state().device.advance(Duration::from_secs(11));
    let o = h.poll_once(&init).await;
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_pretty(
        &o.stdout,
        json!({"message": "Login successful", "status": "ok"}),
    );
    let token = h.stored().unwrap();
    assert!(h.state().device.is_valid_access_token(&token.access_token));
    assert_eq!(token.client_id, init["client_id"].as_str().unwrap());
    assert_eq!(token.host, host);
    assert_eq!(token.expires_at_ms, START_MS + 7_200_000);
    assert!(token.refresh_token.is_some());

    let o = h.run(&["status"]).await;
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_pretty(
        &o.stdout,
        json!({"authenticated": true, "expires_in_minutes": 120, "host": host, "source": "token_store"}),
    );
    let check = h
        .sim
        .recorder()
        .requests_to("/mcp_server/v1")
        .pop()
        .unwrap();
    assert_eq!(check.header("user-agent"), Some("meegle-cli"));
    assert_eq!(check.bearer(), Some(token.access_token.as_str()));
    assert_eq!(
        check.json(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    );

    let o = h.run(&["status", "--format", "ndjson"]).await;
    assert_line(
        &o.stdout,
        json!({"authenticated": true, "expires_in_minutes": 120, "host": host, "source": "token_store"}),
    );
}

#[tokio::test]
async fn ndjson_init_is_one_line() {
    let h = Harness::new();
    let host = h.host();
    let o = h
        .run(&[
            "login",
            "--device-code",
            "--phase",
            "init",
            "--host",
            &host,
            "--format",
            "ndjson",
        ])
        .await;
    assert_eq!(o.code, 0);
    assert_eq!(o.stdout.lines().count(), 1);
    assert!(
        o.stdout.starts_with("{\"client_id\":\"cid_"),
        "{}",
        o.stdout
    );
}

#[tokio::test]
async fn blocking_poll_sleeps_first_and_backs_off_on_slow_down() {
    let h = Harness::with_hook(Some(Box::new(|index, slept, sim: &SimState| match index {
        // Second poll arrives early by the server's clock: slow_down.
        1 => sim.device.advance(Duration::from_secs(1)),
        2 => {
            assert!(sim.device.approve(&sim.device.last_user_code().unwrap()));
            sim.device.advance(slept);
        }
        _ => sim.device.advance(slept),
    })));
    let init = h.init().await;
    let o = h.poll_blocking(&init, &["--interval", "1"]).await;
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_pretty(
        &o.stdout,
        json!({"message": "Login successful", "status": "ok"}),
    );
    // Interval clamped to 5 s, slept before the first poll, +5 s after slow_down.
    assert_eq!(
        *h.clock.slept.lock().unwrap(),
        [
            Duration::from_secs(5),
            Duration::from_secs(5),
            Duration::from_secs(10)
        ]
    );
    assert!(h.stored().is_some());
}

#[tokio::test]
async fn blocking_poll_gives_up_at_the_deadline() {
    let h = Harness::new();
    let init = h.init().await;
    let o = h.poll_blocking(&init, &["--expires-in", "12"]).await;
    let message = assert_error(&o, "DEVICE_CODE_EXPIRED", false);
    assert_eq!(
        message,
        "Authorization timed out, please re-run lark-service auth login --device-code"
    );
    assert_eq!(h.clock.slept.lock().unwrap().len(), 3);
    assert!(h.stored().is_none());
}

#[tokio::test]
async fn an_expired_device_code_is_reported() {
    let h = Harness::new();
    h.state()
        .device
        .configure(|s| s.device_code_lifetime = Duration::from_secs(30));
    let init = h.init().await;
    h.state().device.advance(Duration::from_secs(31));
    let o = h.poll_once(&init).await;
    assert_eq!(o.code, 0);
    assert_pretty(&o.stdout, json!({"status": "expired_token"}));

    let o = h.poll_blocking(&init, &[]).await;
    assert_error(&o, "DEVICE_CODE_EXPIRED", false);
    assert!(h.stored().is_none());
}

#[tokio::test]
async fn a_denied_login_prints_the_error_envelope() {
    let h = Harness::new();
    let init = h.init().await;
    assert!(h.state().device.deny(init["user_code"].as_str().unwrap()));
    let o = h.poll_once(&init).await;
    assert_eq!(o.code, 1);
    assert_eq!(o.stdout, "");
    assert_pretty(
        &o.stderr,
        envelope(
            "DEVICE_CODE_FAILED",
            "Device code authorization failed: access_denied",
            true,
        ),
    );
    let mut args = vec![
        "login",
        "--device-code",
        "--phase",
        "poll",
        "--once",
        "--format",
        "ndjson",
    ];
    args.extend(["--device-code-value", init["device_code"].as_str().unwrap()]);
    args.extend(["--client-id", init["client_id"].as_str().unwrap()]);
    h.state().device.advance(Duration::from_secs(10));
    let o = h.run(&args).await;
    assert_line(
        &o.stderr,
        envelope(
            "DEVICE_CODE_FAILED",
            "Device code authorization failed: access_denied",
            true,
        ),
    );
    assert!(h.stored().is_none());
}

#[tokio::test]
async fn status_without_a_token_needs_no_network() {
    let h = Harness::new();
    let o = h.run(&["status"]).await;
    assert_eq!((o.code, o.stderr.as_str()), (1, ""));
    assert_pretty(
        &o.stdout,
        json!({"authenticated": false, "host": null, "reason": "no local token"}),
    );
    assert!(h.sim.recorder().requests().is_empty());

    h.init().await;
    let o = h.run(&["status", "--format", "ndjson"]).await;
    assert_eq!(o.code, 1);
    assert_line(
        &o.stdout,
        json!({"authenticated": false, "host": h.host(), "reason": "no local token"}),
    );
}

#[tokio::test]
async fn an_expired_token_is_refreshed_before_the_check() {
    let h = Harness::new();
    let first = h.login().await;
    h.clock.now_ms.fetch_add(7_300_000, Ordering::SeqCst);
    h.state().device.advance(Duration::from_secs(7300));

    let o = h.run(&["status"]).await;
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    assert_eq!(o.out_json()["expires_in_minutes"], 120);
    assert_eq!(h.state().device.refreshes(), 1);
    let second = h.stored().unwrap();
    assert_ne!(second.access_token, first.access_token);
    assert_ne!(second.refresh_token, first.refresh_token, "rotated");
    let refresh = h
        .sim
        .recorder()
        .requests_to("/device-oauth/token")
        .pop()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&refresh.body),
        format!(
            "client_id={}&grant_type=refresh_token&refresh_token={}",
            first.client_id,
            first.refresh_token.unwrap()
        )
    );
}

#[tokio::test]
async fn a_refresh_without_rotation_keeps_the_old_refresh_token() {
    let h = Harness::new();
    h.state()
        .device
        .configure(|s| s.rotate_refresh_tokens = false);
    let first = h.login().await;
    h.state().device.revoke_access_tokens();
    let o = h.run(&["status"]).await;
    assert_eq!(o.code, 0, "{}", o.stdout);
    let second = h.stored().unwrap();
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(second.refresh_token, first.refresh_token);
}

#[tokio::test]
async fn a_rejected_token_is_refreshed_once_then_reported() {
    let h = Harness::new();
    h.login().await;
    h.state().device.revoke_access_tokens();
    let o = h.run(&["status"]).await;
    assert_eq!(o.code, 0, "401 then refresh then accepted: {}", o.stdout);
    assert_eq!(h.state().device.refreshes(), 1);

    h.state().device.revoke_access_tokens();
    h.state().device.revoke_refresh_tokens();
    let o = h.run(&["status"]).await;
    assert_eq!(o.code, 1);
    assert_pretty(
        &o.stdout,
        json!({"authenticated": false, "host": h.host(), "reason": "token rejected by server"}),
    );
}

#[tokio::test]
async fn an_unreachable_server_exits_2() {
    let h = Harness::new();
    h.login().await;
    h.state().device.configure(|s| s.mcp_failure = Some(503));
    let o = h.run(&["status"]).await;
    assert_eq!(o.code, 2);
    assert_pretty(
        &o.stdout,
        json!({"authenticated": false, "host": h.host(), "reason": "server unreachable: server returned error (503)"}),
    );

    // A closed port: the stored token's host is gone.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut token = h.stored().unwrap();
    token.host = closed.to_string();
    h.store.save_token("default", &token).unwrap();
    let o = h.run(&["status"]).await;
    assert_eq!(o.code, 2);
    assert!(
        o.out_json()["reason"]
            .as_str()
            .unwrap()
            .starts_with("server unreachable: "),
        "{}",
        o.stdout
    );
}

#[test]
fn two_processes_never_spend_one_refresh_token() {
    let h = Harness::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(h.login());
    h.state().device.revoke_access_tokens();
    let h = &h;
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    let client = DeviceClient::new().unwrap();
                    rt.block_on(h.run_with(&client, &["status"])).code
                })
            })
            .collect();
        for run in runs {
            assert_eq!(run.join().unwrap(), 0);
        }
    });
    assert_eq!(h.state().device.refreshes(), 1);
    assert_eq!(h.state().device.spent_refresh_reuses(), 0);
}

#[tokio::test]
async fn an_env_token_overrides_the_store_and_is_never_refreshed() {
    let issuer = Harness::new();
    let token = issuer.login().await;

    let mut h = Harness::new();
    h.env = EnvOverrides {
        host: Some(issuer.host()),
        user_access_token: Some(token.access_token.clone()),
    };
    let o = h.run(&["status"]).await;
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert_pretty(
        &o.stdout,
        json!({"authenticated": true, "expires_in_minutes": null, "host": issuer.host(), "source": "env"}),
    );

    h.env.user_access_token = Some("mat_not_a_real_token".into());
    let o = h.run(&["status"]).await;
    assert_eq!(o.code, 1);
    assert_eq!(o.out_json()["reason"], "token rejected by server");
    assert_eq!(issuer.state().device.refreshes(), 0);
}

#[tokio::test]
async fn a_stored_token_is_not_sent_to_another_meegle_host() {
    let h = Harness::new();
    h.login().await;
    let other = Harness::new();
    let mut h = h;
    h.env.host = Some(other.host());
    let o = h.run(&["status"]).await;
    assert_eq!(o.code, 1);
    assert_pretty(
        &o.stdout,
        json!({"authenticated": false, "host": other.host(), "reason": "no local token"}),
    );
    assert!(other.sim.recorder().requests().is_empty());
}

#[tokio::test]
async fn discovery_without_a_device_endpoint_is_unsupported() {
    let h = Harness::new();
    h.state()
        .device
        .configure(|s| s.omit_device_endpoint = true);
    let host = h.host();
    let o = h
        .run(&["login", "--device-code", "--phase", "init", "--host", &host])
        .await;
    assert_error(&o, "DEVICE_FLOW_UNSUPPORTED", false);
    assert!(h
        .sim
        .recorder()
        .requests_to("/device-oauth/register")
        .is_empty());
    assert_eq!(h.store.host("default").unwrap(), None, "nothing saved");
}

#[tokio::test]
async fn plain_http_to_a_remote_host_is_refused() {
    let h = Harness::new();
    let o = h
        .run(&[
            "login",
            "--device-code",
            "--phase",
            "init",
            "--host",
            "http://project.feishu.cn",
        ])
        .await;
    let message = assert_error(&o, "INSECURE_HOST", false);
    assert!(message.contains("https"), "{message}");

    // A discovery document pointing the token endpoint at plain http.
    let host = h.host();
    let base = h.sim.base_url().to_owned();
    h.sim.recorder().inject(
        "device_discovery",
        Fault::Respond {
            status: 200,
            body: json!({
                "issuer": base,
                "authorization_endpoint": format!("{base}/a"),
                "token_endpoint": "http://project.feishu.cn/token",
                "registration_endpoint": format!("{base}/device-oauth/register"),
                "device_authorization_endpoint": format!("{base}/device-oauth/device_authorization"),
            }),
        },
        1,
    );
    let o = h
        .run(&["login", "--device-code", "--phase", "init", "--host", &host])
        .await;
    let message = assert_error(&o, "OAUTH_DISCOVERY_INVALID", false);
    assert!(message.contains("token_endpoint"), "{message}");
    assert!(h
        .sim
        .recorder()
        .requests_to("/device-oauth/register")
        .is_empty());
}

#[tokio::test]
async fn garbage_at_each_init_step_is_a_clear_error() {
    for (route, code, retryable) in [
        ("device_discovery", "OAUTH_DISCOVERY_FAILED", true),
        ("device_registration", "CLIENT_REGISTRATION_FAILED", true),
        ("device_authorization", "DEVICE_CODE_FAILED", true),
    ] {
        let h = Harness::new();
        h.state().device.serve_garbage(route, 1);
        let host = h.host();
        let o = h
            .run(&["login", "--device-code", "--phase", "init", "--host", &host])
            .await;
        let message = assert_error(&o, code, retryable);
        assert!(message.contains("502"), "{route}: {message}");
        assert_eq!(
            h.store.host("default").unwrap(),
            None,
            "{route}: nothing saved"
        );
    }
}

#[tokio::test]
async fn wrong_shapes_at_each_init_step_are_clear_errors() {
    let cases = [
        ("device_discovery", json!([1, 2]), "OAUTH_DISCOVERY_INVALID"),
        (
            "device_discovery",
            json!({"issuer": 5}),
            "OAUTH_DISCOVERY_INVALID",
        ),
        (
            "device_registration",
            json!({"code": 0, "data": {}, "msg": "quota"}),
            "CLIENT_REGISTRATION_FAILED",
        ),
        (
            "device_registration",
            json!({"client_id": 17}),
            "CLIENT_REGISTRATION_FAILED",
        ),
        (
            "device_authorization",
            json!({"device_code": 5}),
            "DEVICE_CODE_FAILED",
        ),
        (
            "device_authorization",
            json!({"device_code": "d", "user_code": "U"}),
            "DEVICE_CODE_FAILED",
        ),
    ];
    for (route, body, code) in cases {
        let h = Harness::new();
        h.sim.recorder().inject(
            route,
            Fault::Respond {
                status: 200,
                body: body.clone(),
            },
            1,
        );
        let host = h.host();
        let o = h
            .run(&["login", "--device-code", "--phase", "init", "--host", &host])
            .await;
        assert_eq!(o.code, 1, "{route} {body}");
        let env: Value = serde_json::from_str(&o.stderr).unwrap();
        assert_eq!(env["error"]["code"], code, "{route} {body}: {}", o.stderr);
    }
}

#[tokio::test]
async fn garbage_at_the_poll_and_refresh_stores_nothing() {
    let h = Harness::new();
    let init = h.init().await;
    assert!(h
        .state()
        .device
        .approve(init["user_code"].as_str().unwrap()));
    h.state().device.serve_garbage("device_token", 1);
    let o = h.poll_once(&init).await;
    assert_error(&o, "DEVICE_CODE_FAILED", true);
    h.sim.recorder().inject(
        "device_token",
        Fault::Respond {
            status: 200,
            body: json!({"access_token": 42}),
        },
        1,
    );
    let o = h.poll_once(&init).await;
    let message = assert_error(&o, "DEVICE_CODE_FAILED", true);
    assert!(message.contains("access_token"), "{message}");
    assert!(h.stored().is_none());

    // Refresh answering garbage: the old token stays, the server is "unreachable".
    h.state().device.advance(Duration::from_secs(10));
    let o = h.poll_once(&init).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let before = h.stored().unwrap();
    h.state().device.revoke_access_tokens();
    h.state().device.serve_garbage("device_token", 1);
    let o = h.run(&["status"]).await;
    assert_eq!(o.code, 2, "{}", o.stdout);
    assert!(
        o.out_json()["reason"].as_str().unwrap().contains("502"),
        "{}",
        o.stdout
    );
    assert_eq!(h.stored().unwrap(), before);

    // The MCP check answering garbage.
    let h2 = Harness::new();
    h2.login().await;
    h2.state().device.serve_garbage("device_mcp", 1);
    let o = h2.run(&["status"]).await;
    assert_eq!(o.code, 2, "{}", o.stdout);
}

#[tokio::test]
async fn wrapped_answers_work_end_to_end() {
    let h = Harness::new();
    h.state().device.configure(|s| s.wrap_responses = true);
    let token = h.login().await;
    assert!(h.state().device.is_valid_access_token(&token.access_token));
    let reg = h.sim.recorder().requests_to("/device-oauth/register");
    assert_eq!(reg.len(), 1);
}

#[tokio::test]
async fn misuse_is_reported_as_options_errors() {
    let h = Harness::new();
    let host = h.host();
    let o = h.run(&["login", "--phase", "init", "--host", &host]).await;
    assert_pretty(
        &o.stderr,
        envelope(
            "INVALID_OPTION",
            "--phase is only available in --device-code mode",
            false,
        ),
    );
    assert_eq!(o.code, 1);
    let o = h
        .run(&[
            "login",
            "--device-code",
            "--phase",
            "poll",
            "--format",
            "ndjson",
        ])
        .await;
    assert_line(
        &o.stderr,
        envelope(
            "MISSING_OPTION",
            "--phase poll requires --device-code-value and --client-id",
            false,
        ),
    );
    assert_eq!(o.code, 1);
    for args in [
        &["login", "--device-code", "--phase", "later"][..],
        &["status", "--format", "table"],
        &[
            "login",
            "--device-code",
            "--phase",
            "poll",
            "--device-code-value",
            "d",
            "--client-id",
            "c",
            "--interval",
            "soon",
        ],
    ] {
        let o = h.run(args).await;
        assert_error(&o, "INVALID_OPTION", false);
    }
    let o = h.run(&["login", "--device-code"]).await;
    assert_error(&o, "MISSING_OPTION", false);
    let o = h.run(&["login", "--device-code", "--phase", "init"]).await;
    assert_error(&o, "HOST_NOT_CONFIGURED", false);
    assert!(h.sim.recorder().requests().is_empty());
}

#[tokio::test]
async fn logout_removes_the_token_but_keeps_the_host() {
    let h = Harness::new();
    h.login().await;
    let o = h.run(&["logout"]).await;
    assert_eq!(o.code, 0);
    assert_pretty(&o.stdout, json!({"message": "Logged out", "status": "ok"}));
    assert!(h.stored().is_none());
    let o = h.run(&["status"]).await;
    assert_eq!(o.code, 1);
    assert_eq!(o.out_json()["host"], h.host());
    // The saved host serves a later init without --host.
    let o = h.run(&["login", "--device-code", "--phase", "init"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
}

/// The published `@lark-project/meegle` CLI, run against the same simulator
/// behind a TLS proxy (it insists on https), prints the same keys as we do.
/// Runs only where `MEEGLE_BIN` names its binary and `openssl` and `socat`
/// are installed; otherwise it says so and passes.
#[tokio::test]
async fn the_reference_cli_prints_the_same_keys() {
    use std::process::{Command, Stdio};

    let Some(meegle) = std::env::var_os("MEEGLE_BIN") else {
        eprintln!("MEEGLE_BIN not set: reference CLI comparison skipped");
        return;
    };
    let tools = ["openssl", "socat"];
    if tools.iter().any(|t| {
        Command::new(t)
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
    }) {
        eprintln!("openssl or socat missing: reference CLI comparison skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());

    let h = Harness::new();
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut proxy = Command::new("socat")
        .arg(format!(
            "OPENSSL-LISTEN:{tls_port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
            cert.display(),
            key.display()
        ))
        .arg(format!("TCP:{}", h.host()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "TLS proxy did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tls_host = format!("127.0.0.1:{tls_port}");
    h.state()
        .device
        .configure(|s| s.public_base = Some(format!("https://{tls_host}")));

    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // The simulator advertises the TLS origin only while the reference CLI
    // runs; our client talks to it over loopback http.
    let reference = |args: &[&str]| {
        let tls_origin = format!("https://{tls_host}");
        h.state()
            .device
            .configure(|s| s.public_base = Some(tls_origin));
        let out = Command::new(&meegle)
            .args(args)
            .env_clear()
            .env("HOME", &home)
            .env("PATH", "/usr/bin:/bin")
            .env("SSL_CERT_FILE", &cert)
            .env("USER", "tester")
            .output()
            .unwrap();
        h.state().device.configure(|s| s.public_base = None);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    let (code, out) = reference(&["auth", "status", "--format", "json"]);
    assert_eq!(code, 1);
    let theirs: Value = serde_json::from_str(&out).unwrap();
    let ours = h.run(&["status"]).await.out_json();
    assert_eq!(keys(&theirs), keys(&ours));

    let (code, out) = reference(&[
        "auth",
        "login",
        "--device-code",
        "--phase",
        "init",
        "--host",
        &tls_host,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{out}");
    let their_init: Value = serde_json::from_str(&out).unwrap();
    let our_init = h.init().await;
    assert_eq!(keys(&their_init), keys(&our_init));
    assert!(their_init["verification_uri_complete"]
        .as_str()
        .unwrap()
        .ends_with(&format!(
            "?channel=meegle-cli&usercode={}",
            their_init["user_code"].as_str().unwrap()
        )));
    // Both registered with the same body shape.
    let regs = h.sim.recorder().requests_to("/device-oauth/register");
    assert_eq!(keys(&regs[0].json()), keys(&regs[1].json()));
    assert_eq!(regs[0].json()["grant_types"], regs[1].json()["grant_types"]);

    let poll_args = |init: &Value| {
        vec![
            "auth".to_owned(),
            "login".into(),
            "--device-code".into(),
            "--phase".into(),
            "poll".into(),
            "--once".into(),
            "--device-code-value".into(),
            init["device_code"].as_str().unwrap().into(),
            "--client-id".into(),
            init["client_id"].as_str().unwrap().into(),
            "--format".into(),
            "json".into(),
        ]
    };
    let their_poll: Vec<String> = poll_args(&their_init);
    let their_poll: Vec<&str> = their_poll.iter().map(String::as_str).collect();
    let (code, out) = reference(&their_poll);
    assert_eq!(
        (code, out.as_str()),
        (0, "{\n  \"status\": \"authorization_pending\"\n}\n")
    );
    let ours = h.poll_once(&our_init).await;
    assert_eq!(ours.stdout, out);

    // Same poll form, byte for byte apart from the values.
    let polls = h.sim.recorder().requests_to("/device-oauth/token");
    let form_keys = |body: &[u8]| -> Vec<String> {
        url::form_urlencoded::parse(body)
            .map(|(k, _)| k.into_owned())
            .collect()
    };
    assert_eq!(form_keys(&polls[0].body), form_keys(&polls[1].body));

    h.state().device.advance(Duration::from_secs(10));
    assert!(h
        .state()
        .device
        .approve(their_init["user_code"].as_str().unwrap()));
    let (code, out) = reference(&their_poll);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "{\n  \"message\": \"Login successful\",\n  \"status\": \"ok\"\n}\n"
        )
    );

    let (code, out) = reference(&["auth", "status", "--format", "json"]);
    assert_eq!(code, 0, "{out}");
    let theirs: Value = serde_json::from_str(&out).unwrap();
    h.login().await;
    let mut ours = h.run(&["status"]).await.out_json();
    // `source` is ours alone: the contract adds it.
    ours.as_object_mut().unwrap().remove("source");
    assert_eq!(keys(&theirs), keys(&ours));
    assert_eq!(theirs["authenticated"], true);

    let _ = proxy.kill();
    let _ = proxy.wait();
}

#[tokio::test]
async fn feishu_device_flow_against_the_accounts_host() {
    use lark_service::device::feishu::{next_interval, FeishuDeviceClient, FeishuPoll};
    use lark_service::domain::BaseUrl;
    use lark_service::sim::{SIM_APP_ID, SIM_APP_SECRET};

    let sim = Simulator::start().unwrap();
    let accounts = BaseUrl::parse(sim.base_url()).unwrap();
    let feishu = FeishuDeviceClient::new(
        DeviceClient::new().unwrap(),
        accounts.clone(),
        SIM_APP_ID,
        SIM_APP_SECRET,
    );

    let code = feishu
        .authorize("contact:user.base:readonly")
        .await
        .unwrap();
    let asked = &sim.recorder().requests_to("/oauth/v1/device_authorization")[0];
    assert!(asked.header("authorization").unwrap().starts_with("Basic "));
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&asked.body)
        .into_owned()
        .collect();
    assert_eq!(
        form,
        [
            ("client_id".to_owned(), SIM_APP_ID.to_owned()),
            (
                "scope".to_owned(),
                "contact:user.base:readonly offline_access".to_owned()
            )
        ]
    );

    assert_eq!(
        feishu.poll(&code.device_code).await.unwrap(),
        FeishuPoll::Pending
    );
    let slow = feishu.poll(&code.device_code).await.unwrap();
    assert_eq!(slow, FeishuPoll::SlowDown);
    assert_eq!(
        next_interval(Duration::from_secs(5), &slow),
        Duration::from_secs(10)
    );
    // Whoever is signed in to the accounts site approves; the grant is theirs.
    sim.state().open_api.oauth.sign_in("ou_device_user");
    assert!(sim.state().device.approve(&code.user_code));
    sim.state().device.advance(Duration::from_secs(10));
    let FeishuPoll::Granted(grant) = feishu.poll(&code.device_code).await.unwrap() else {
        panic!("not granted");
    };
    assert!(grant.refresh_token.is_some());
    assert_eq!(
        grant.refresh_token_expires_in,
        lark_service::sim::oauth::REFRESH_TOKEN_TTL.as_secs()
    );
    assert_eq!(
        sim.state()
            .open_api
            .oauth
            .access_token_owner(&grant.access_token)
            .as_deref(),
        Some("ou_device_user")
    );
    assert_eq!(
        grant.scope.as_deref(),
        Some("contact:user.base:readonly offline_access")
    );
    let polled = sim.recorder().requests_to("/oauth/v3/token").pop().unwrap();
    assert!(String::from_utf8_lossy(&polled.body).contains("client_secret="));

    let denied = feishu.authorize("").await.unwrap();
    assert!(sim.state().device.deny(&denied.user_code));
    let e = feishu.poll(&denied.device_code).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "Device code authorization failed: access_denied"
    );

    let wrong =
        FeishuDeviceClient::new(DeviceClient::new().unwrap(), accounts, SIM_APP_ID, "wrong");
    let e = wrong.authorize("").await.unwrap_err();
    assert_eq!(e.code(), "DEVICE_CODE_FAILED");
    assert!(e.to_string().contains("invalid_client"), "{e}");
}
