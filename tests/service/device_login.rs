//! The real binary's `auth` commands against the simulated authorization
//! server, with tokens in the database of each backend: the exact JSON on
//! the right stream and the exit codes of the Auth Guard contract.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use lark_service::auth::vault::{EncryptionKey, Vault};
use lark_service::db::DatabaseUrl;
use lark_service::device::{DbDeviceStore, DeviceStore, StoredToken};
use lark_service::sim::Simulator;
use serde_json::{json, Value};

use crate::support::{backends, TestDb};

fn key_hex() -> String {
    "33".repeat(32)
}

/// One simulated host and one database; runs the binary against both.
struct Auth {
    sim: Simulator,
    db: TestDb,
    dir: tempfile::TempDir,
}

impl Auth {
    fn new(db: TestDb) -> Self {
        Self {
            sim: Simulator::start().unwrap(),
            db,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `127.0.0.1:PORT`.
    fn host(&self) -> String {
        self.sim.base_url().trim_start_matches("http://").to_owned()
    }

    /// `lark-service auth ARGS` with `key` as ENCRYPTION_KEY, in a directory
    /// without a `.env` and with no other variables.
    fn command(&self, key: Option<&str>, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lark-service"));
        cmd.arg("auth")
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", self.db.url());
        if let Some(key) = key {
            cmd.env("ENCRYPTION_KEY", key);
        }
        cmd
    }

    fn run_with(&self, key: Option<&str>, args: &[&str]) -> Output {
        self.command(key, args).output().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(Some(&key_hex()), args)
    }

    fn init(&self) -> Value {
        let o = self.run(&[
            "login",
            "--device-code",
            "--phase",
            "init",
            "--host",
            &self.host(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stderr(&o), "");
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn poll_once(&self, init: &Value) -> Output {
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
    }

    /// A complete login through the binary.
    fn login(&self) -> StoredToken {
        let init = self.init();
        assert!(self
            .sim
            .state()
            .device
            .approve(init["user_code"].as_str().unwrap()));
        let o = self.poll_once(&init);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        self.stored().unwrap()
    }

    fn stored(&self) -> Option<StoredToken> {
        let key = EncryptionKey::from_hex(&key_hex()).unwrap();
        DbDeviceStore::open(
            &DatabaseUrl::parse(self.db.url()).unwrap(),
            Some(Vault::new(&key)),
        )
        .unwrap()
        .load_token("default")
        .unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// `o` printed exactly `expected` on stdout (sorted keys, two-space indent),
/// nothing on stderr, and exited with `code`.
fn assert_out(o: &Output, code: i32, expected: Value) {
    assert_eq!(stderr(o), "", "stderr");
    assert_eq!(
        stdout(o),
        format!("{}\n", serde_json::to_string_pretty(&expected).unwrap())
    );
    assert_eq!(o.status.code(), Some(code));
}

/// `o` failed with the error envelope on stderr carrying `code`; returns
/// the message.
fn assert_envelope(o: &Output, code: &str, retryable: bool) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    assert_eq!(stdout(o), "", "errors never go to stdout");
    let env: Value = serde_json::from_slice(&o.stderr).unwrap();
    let message = env["error"]["message"].as_str().unwrap().to_owned();
    assert_eq!(
        env,
        json!({"data": null, "error": {"code": code, "message": message, "retryable": retryable}, "meta": {}})
    );
    message
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn init_poll_status_logout_through_the_binary() {
    for db in backends() {
        let a = Auth::new(db);
        let host = a.host();

        let o = a.run(&["status"]);
        assert_out(
            &o,
            1,
            json!({"authenticated": false, "host": null, "reason": "no local token"}),
        );
        assert!(
            a.sim.recorder().requests().is_empty(),
            "status used the network"
        );

        let init = a.init();
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
        assert_eq!(
            (&init["expires_in"], &init["interval"]),
            (&json!(600), &json!(5))
        );
        assert_eq!(
            init["verification_uri_complete"],
            format!("http://{host}/device-oauth/verify?channel=meegle-cli&usercode={user_code}")
        );
        // The host is saved to the profile, still without a token.
        assert_out(
            &a.run(&["status"]),
            1,
            json!({"authenticated": false, "host": host, "reason": "no local token"}),
        );

        assert_out(
            &a.poll_once(&init),
            0,
            json!({"status": "authorization_pending"}),
        );
        assert!(a.stored().is_none());
        assert!(a.sim.state().device.approve(user_code));
        a.sim.state().device.advance(Duration::from_secs(6));
        assert_out(
            &a.poll_once(&init),
            0,
            json!({"message": "Login successful", "status": "ok"}),
        );
        let token = a.stored().unwrap();
        assert!(a
            .sim
            .state()
            .device
            .is_valid_access_token(&token.access_token));
        assert_eq!(token.client_id, init["client_id"].as_str().unwrap());
        assert_eq!(token.host, host);

        let o = a.run(&["status"]);
        let report: Value = serde_json::from_slice(&o.stdout).unwrap();
        // Issued for 120 minutes; whole minutes left, rounded down.
        let minutes = report["expires_in_minutes"].as_i64().unwrap();
        assert!((119..=120).contains(&minutes), "{report}");
        assert_out(
            &o,
            0,
            json!({"authenticated": true, "expires_in_minutes": minutes, "host": host, "source": "token_store"}),
        );
        let check = a
            .sim
            .recorder()
            .requests_to("/mcp_server/v1")
            .pop()
            .unwrap();
        assert_eq!(check.bearer(), Some(token.access_token.as_str()));

        let o = a.run(&["logout", "--format", "ndjson"]);
        assert_eq!((o.status.code(), stderr(&o).as_str()), (Some(0), ""));
        assert_eq!(
            stdout(&o),
            "{\"message\":\"Logged out\",\"status\":\"ok\"}\n"
        );
        assert!(a.stored().is_none());
        assert_out(
            &a.run(&["status"]),
            1,
            json!({"authenticated": false, "host": host, "reason": "no local token"}),
        );
    }
}

#[test]
fn a_denied_login_is_the_error_envelope() {
    for db in backends() {
        let a = Auth::new(db);
        let init = a.init();
        assert!(a
            .sim
            .state()
            .device
            .deny(init["user_code"].as_str().unwrap()));
        let message = assert_envelope(&a.poll_once(&init), "DEVICE_CODE_FAILED", true);
        assert_eq!(message, "Device code authorization failed: access_denied");
        assert!(a.stored().is_none());
    }
}

#[test]
fn the_encryption_key_is_needed_only_where_a_token_is() {
    for db in backends() {
        let a = Auth::new(db);
        let host = a.host();

        // Nothing stored: status and logout need no key.
        assert_out(
            &a.run_with(None, &["status"]),
            1,
            json!({"authenticated": false, "host": null, "reason": "no local token"}),
        );
        let o = a.run_with(None, &["logout"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

        // Login refuses up front rather than losing the token at the end.
        let o = a.run_with(
            None,
            &["login", "--device-code", "--phase", "init", "--host", &host],
        );
        let message = assert_envelope(&o, "TOKEN_STORE_FAILED", false);
        assert!(message.contains("ENCRYPTION_KEY is not set"), "{message}");
        assert!(a.sim.recorder().requests().is_empty());

        a.login();
        let o = a.run_with(None, &["status"]);
        let message = assert_envelope(&o, "TOKEN_STORE_FAILED", false);
        assert!(message.contains("ENCRYPTION_KEY is not set"), "{message}");

        let o = a.run_with(Some(&"44".repeat(32)), &["status", "--format", "ndjson"]);
        assert_eq!(stderr(&o).lines().count(), 1, "ndjson is one line");
        let message = assert_envelope(&o, "TOKEN_STORE_FAILED", false);
        assert!(message.contains("neither ENCRYPTION_KEY nor"), "{message}");

        let o = a.run_with(Some("not-hex"), &["status"]);
        let message = assert_envelope(&o, "TOKEN_STORE_FAILED", false);
        assert!(
            message.contains("ENCRYPTION_KEY: must be 64 hex"),
            "{message}"
        );
    }
}

/// Two processes find the token rejected at once; the database lock lets
/// only one of them spend the refresh token, the other uses its result.
#[test]
fn two_processes_refresh_once() {
    for db in backends() {
        let a = Auth::new(db);
        let before = a.login();
        a.sim.state().device.revoke_access_tokens();

        let children: Vec<_> = (0..2)
            .map(|_| {
                a.command(Some(&key_hex()), &["status"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let o = child.wait_with_output().unwrap();
            assert_eq!(o.status.code(), Some(0), "{} {}", stdout(&o), stderr(&o));
        }
        assert_eq!(a.sim.state().device.refreshes(), 1, "{}", a.db.backend());
        assert_eq!(a.sim.state().device.spent_refresh_reuses(), 0);
        let after = a.stored().unwrap();
        assert_ne!(after.access_token, before.access_token);
        assert!(a
            .sim
            .state()
            .device
            .is_valid_access_token(&after.access_token));
    }
}
