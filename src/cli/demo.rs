//! `lark-service demo`: the quickstart, on this machine, with no
//! credentials and no database to set up.
//!
//! It starts the simulated open platform and the real service (SQLite in a
//! temporary directory, random ports), then walks the quickstart's steps
//! through the service's own interfaces (the long connection, the admin
//! API, `/metrics`) and prints each as the quickstart shows it. Every step
//! checks that what it claims really happened; the first that does not
//! stops the demo with its name, and the process exits non-zero.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use super::CliError;
use crate::apaas::apaas_client::AiResult;
use crate::auth::vault::EncryptionKey;
use crate::cli::ai::render as render_ai;
use crate::config::{defaults, overlay, Settings};
use crate::sim::card_click;
use crate::sim::oauth::SimUser;
use crate::sim::Simulator;
use crate::startup::Application;

/// The simulated user who receives the card, as in the quickstart.
pub const DEMO_OPEN_ID: &str = "ou_7dab8a3d3cdcc08c560abcd";
const DEMO_USER: &str = "张三";
const DEMO_EMAIL: &str = "zhangsan@example.com";
/// How long any one step may take before the demo calls it failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Args, Default)]
pub struct DemoArgs {
    /// Leave the service (and the simulator) running afterwards, and print
    /// the admin URL and token.
    #[arg(long)]
    pub keep_running: bool,
}

/// A step that did not happen.
#[derive(Debug, thiserror::Error)]
#[error("demo step `{step}` failed: {reason}")]
pub struct DemoError {
    pub step: &'static str,
    pub reason: String,
}

fn failed(step: &'static str) -> impl Fn(String) -> DemoError {
    move |reason| DemoError { step, reason }
}

pub async fn run(args: DemoArgs) -> Result<(), CliError> {
    crate::telemetry::init("warn");
    let mut out = std::io::stdout();
    let demo = Demo::start()
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    demo.walk(&mut out)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    if args.keep_running {
        let _ = writeln!(
            out,
            "\n🟢 Still running. Admin API: {}/admin/actors  (Authorization: Bearer {})\n   Simulated platform: {}\n   Ctrl-C stops it.",
            demo.address,
            demo.admin_token,
            demo.sim.base_url()
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    demo.stop().await;
    Ok(())
}

/// The service and its simulated platform, running.
pub struct Demo {
    pub sim: Simulator,
    pub address: String,
    pub admin_token: String,
    http: reqwest::Client,
    server: actix_web::dev::ServerHandle,
    _dir: tempfile::TempDir,
}

impl Demo {
    /// Start the simulator and the service against it.
    pub async fn start() -> Result<Self, DemoError> {
        let step = failed("start the simulated platform and the service");
        let sim = Simulator::start().map_err(|e| step(e.to_string()))?;
        let mut user = SimUser::new(DEMO_OPEN_ID, DEMO_USER);
        user.email = Some(DEMO_EMAIL.to_owned());
        sim.state().open_api.oauth.add_user(user);
        // Poll every second, so the approval shows up at once.
        sim.state().device.configure(|s| s.interval = 1);

        let dir = tempfile::tempdir().map_err(|e| step(e.to_string()))?;
        let admin_token = hex::encode(rand::random::<[u8; 16]>());
        let key = EncryptionKey::generate();
        let database_url = format!("sqlite://{}", dir.path().join("lark-service.db").display());
        let settings = demo_settings(&sim, &database_url, &admin_token, &key)
            .map_err(|e| step(e.to_string()))?;
        let app = Application::build(settings)
            .await
            .map_err(|e| step(e.to_string()))?;
        let address = format!("http://127.0.0.1:{}", app.port());
        let server = app.server_handle();
        actix_rt::spawn(app.run_until_stopped());
        Ok(Self {
            sim,
            address,
            admin_token,
            http: reqwest::Client::new(),
            server,
            _dir: dir,
        })
    }

    /// Walk the quickstart, printing each step to `out`.
    pub async fn walk(&self, out: &mut impl Write) -> Result<(), DemoError> {
        self.connected(out).await?;
        let sent = self.send_card(out).await?;
        self.click(out, &sent).await?;
        self.session_row(out, &sent).await?;
        self.ai_call(out).await?;
        self.user_info_sync(out, &sent).await?;
        self.metrics(out).await?;
        Ok(())
    }

    async fn connected(&self, out: &mut impl Write) -> Result<(), DemoError> {
        let step = failed("connect the long connection");
        say(out, "🚀 Starting WebSocket client...");
        if !self.sim.ws().wait_for_connections(1, STEP_TIMEOUT).await {
            return Err(step(format!("no connection within {STEP_TIMEOUT:?}")));
        }
        let ready: Value = self.get("/readyz").await.map_err(&step)?;
        if ready["events"] != "websocket" {
            return Err(step(format!("/readyz says {ready}")));
        }
        say(out, "✅ WebSocket connected! Listening for events...\n");
        Ok(())
    }

    async fn send_card(&self, out: &mut impl Write) -> Result<Value, DemoError> {
        let step = failed("send the authorization card");
        let sent = self
            .post(
                "/admin/auth-cards",
                json!({"user_id": DEMO_OPEN_ID, "options": {"include_detailed_description": true, "custom_message": "请授权以使用 AI 能力"}}),
            )
            .await
            .map_err(&step)?;
        let message_id = sent["message_id"]
            .as_str()
            .ok_or_else(|| step(format!("no message id in {sent}")))?;
        if self.sim.state().open_api.im.message(message_id).is_none() {
            return Err(step("the platform never received the card".into()));
        }
        say(out, "✅ Authorization card sent!");
        say(out, &format!("   Message ID: {message_id}"));
        say(
            out,
            &format!(
                "   Session ID: {}",
                sent["session_id"].as_str().unwrap_or_default()
            ),
        );
        say(
            out,
            &format!(
                "   Expires at: {} UTC",
                sent["expires_at"].as_str().unwrap_or_default()
            ),
        );
        say(
            out,
            "\n📱 The simulated user opens Feishu and clicks 'Authorize'...\n",
        );
        Ok(sent)
    }

    /// The user clicks Authorize; the click is answered with a device code
    /// and its link, the user approves there, and the session completes.
    async fn click(&self, out: &mut impl Write, sent: &Value) -> Result<(), DemoError> {
        let step = failed("receive the click and complete the authorization");
        let message_id = sent["message_id"].as_str().unwrap_or_default();
        let session_id = sent["session_id"].as_str().unwrap_or_default();
        let click = card_click::click(self.sim.state(), message_id, DEMO_OPEN_ID)
            .map_err(|e| step(e.to_string()))?;
        let pushed = self.sim.ws().push_event(&click);
        say(out, "📨 Received card action event");
        say(out, &format!("   Session ID: {session_id}"));
        say(out, &format!("   OpenID: {DEMO_OPEN_ID}"));
        say(out, "   Action: authorize");
        say(out, "🔄 Requesting a device code from the accounts host...");
        let acked = self
            .sim
            .ws()
            .wait_until(STEP_TIMEOUT, |ws| {
                ws.acks().iter().any(|a| a.message_id == pushed)
            })
            .await;
        let answer = self
            .sim
            .ws()
            .acks()
            .into_iter()
            .find(|a| a.message_id == pushed)
            .and_then(|a| a.data)
            .unwrap_or(Value::Null);
        let link = open_url_in(&answer["card"]["data"]);
        let user_code = link.as_deref().and_then(user_code_in);
        let (Some(link), Some(user_code), true) = (link, user_code, acked) else {
            return Err(step(format!("the click was answered with {answer}")));
        };
        say(out, "✅ The card now shows a code and a link:");
        say(out, &format!("   Code: {user_code}"));
        say(out, &format!("   Link: {link}"));
        say(
            out,
            "\n👆 The simulated user opens the link in Feishu and approves...\n",
        );
        if !self.sim.state().device.approve_as(&user_code, DEMO_OPEN_ID) {
            return Err(step(format!(
                "the accounts host does not know code {user_code}"
            )));
        }
        let path = format!("/admin/sessions/{session_id}");
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        let session = loop {
            let session = self.get(&path).await.map_err(&step)?;
            if session["state"] != "pending" {
                break session;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(step(format!("still pending after {STEP_TIMEOUT:?}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if session["state"] != "completed" {
            return Err(step(format!("the session is {}", session["state"])));
        }
        say(out, "✅ Authorization completed!");
        say(
            out,
            &format!(
                "   User: {} ({})",
                session["user_name"].as_str().unwrap_or_default(),
                session["email"].as_str().unwrap_or_default()
            ),
        );
        say(
            out,
            &format!(
                "   Token expires: {}",
                session["token_expires_at"].as_str().unwrap_or_default()
            ),
        );
        let authorized = format!("Authorized as {DEMO_USER}");
        let replaced = self
            .sim
            .ws()
            .wait_until(STEP_TIMEOUT, |_| {
                self.sim
                    .state()
                    .open_api
                    .im
                    .message(message_id)
                    .and_then(|m| m.updates.last().cloned())
                    .is_some_and(|card| card.to_string().contains(&authorized))
            })
            .await;
        if !replaced {
            return Err(step("the card was not replaced".into()));
        }
        say(out, &format!("   The card now reads: {authorized}.\n"));
        Ok(())
    }

    async fn session_row(&self, out: &mut impl Write, sent: &Value) -> Result<(), DemoError> {
        let step = failed("read the session row");
        let session_id = sent["session_id"].as_str().unwrap_or_default();
        let s: Value = self
            .get(&format!("/admin/sessions/{session_id}"))
            .await
            .map_err(&step)?;
        let cells = [
            s["session_id"].as_str().unwrap_or_default().to_owned(),
            s["state"].as_str().unwrap_or_default().to_owned(),
            s["user_name"].as_str().unwrap_or_default().to_owned(),
            s["email"].as_str().unwrap_or_default().to_owned(),
            s["token_expires_at"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ];
        if cells[1] != "completed" || cells[3] != DEMO_EMAIL {
            return Err(step(format!("unexpected row {s}")));
        }
        say(
            out,
            "🗄  user_auth_sessions (tokens stored encrypted, never shown):",
        );
        say(
            out,
            &format!(
                " {:<36} | {:<9} | {:<9} | {:<20} | {}",
                "session_id", "state", "user_name", "email", "token_expires_at"
            ),
        );
        say(
            out,
            &format!(
                " {:<36} | {:<9} | {:<9} | {:<20} | {}\n",
                cells[0], cells[1], cells[2], cells[3], cells[4]
            ),
        );
        Ok(())
    }

    /// An AI call as the user who just authorized, with their own token.
    async fn ai_call(&self, out: &mut impl Write) -> Result<(), DemoError> {
        let step = failed("call the AI API as the user");
        say(
            out,
            "🤖 Calling AI API as the user (POST /admin/apaas/ai)...",
        );
        let body = self
            .post(
                "/admin/apaas/ai",
                json!({"user_id": DEMO_OPEN_ID, "prompt": "用一句话介绍飞书"}),
            )
            .await
            .map_err(&step)?;
        let result: AiResult = serde_json::from_value(body).map_err(|e| step(e.to_string()))?;
        let state = self.sim.state();
        let calls = state.open_api.aily.calls();
        let as_user = calls.iter().all(|c| {
            c.bearer
                .as_deref()
                .and_then(|t| state.open_api.oauth.access_token_owner(t))
                .as_deref()
                == Some(DEMO_OPEN_ID)
        });
        if calls.is_empty() || !as_user || result.response.is_empty() {
            return Err(step(format!(
                "{} Aily calls, all with the user's token: {as_user}; answer {:?}",
                calls.len(),
                result.response
            )));
        }
        say(out, &render_ai(&result));
        Ok(())
    }

    /// The user changes their display name on the platform; a sync run
    /// (as the schedule or an operator starts it) brings the row up to date.
    async fn user_info_sync(&self, out: &mut impl Write, sent: &Value) -> Result<(), DemoError> {
        let step = failed("sync the user's profile");
        let session_id = sent["session_id"].as_str().unwrap_or_default();
        let renamed = format!("{DEMO_USER} (Zhang San)");
        self.sim
            .state()
            .open_api
            .oauth
            .update_user(DEMO_OPEN_ID, |u| u.name = renamed.clone());
        say(out, "🔄 The user renamed themselves in Feishu; running a user-info sync (POST /admin/sync)...");
        let started = self.post("/admin/sync", json!({})).await.map_err(&step)?;
        let id = started["run_id"]
            .as_i64()
            .ok_or_else(|| step(format!("no run id in {started}")))?;
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        let run = loop {
            let run = self
                .get(&format!("/admin/sync/{id}"))
                .await
                .map_err(&step)?;
            if run["status"] != "running" {
                break run;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(step(format!(
                    "run {id} still running after {STEP_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let session = self
            .get(&format!("/admin/sessions/{session_id}"))
            .await
            .map_err(&step)?;
        if run["status"] != "finished"
            || run["updated"] != 1
            || session["user_name"] != renamed.as_str()
        {
            return Err(step(format!(
                "run {run}, session name {}",
                session["user_name"]
            )));
        }
        say(
            out,
            &format!(
                "✅ Sync run {id} finished: {}/{} users checked, {} updated",
                run["done"], run["total"], run["updated"]
            ),
        );
        say(
            out,
            &format!(
                "   User: {}\n",
                session["user_name"].as_str().unwrap_or_default()
            ),
        );
        Ok(())
    }

    async fn metrics(&self, out: &mut impl Write) -> Result<(), DemoError> {
        let step = failed("read the metrics");
        let text = self
            .http
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .map_err(|e| step(e.to_string()))?
            .text()
            .await
            .map_err(|e| step(e.to_string()))?;
        let moved: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                [
                    "lark_ws_connected",
                    "lark_auth_completed_total",
                    "lark_events_total",
                    "lark_ws_frames_total",
                    "lark_auth_sessions",
                    "lark_user_sync_runs_total",
                    "lark_user_sync_users_total",
                    "lark_apaas_requests_total",
                ]
                .iter()
                .any(|m| l.starts_with(m))
            })
            .filter(|l| {
                l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v > 0.0)
            })
            .collect();
        if !moved
            .iter()
            .any(|l| l.starts_with("lark_auth_completed_total"))
        {
            return Err(step("lark_auth_completed_total did not move".into()));
        }
        say(out, "📈 Metrics that moved (GET /metrics):");
        for line in moved {
            say(out, &format!("   {line}"));
        }
        say(
            out,
            "\n🎉 Demo complete: every step above really happened against the simulated platform.",
        );
        Ok(())
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.request(self.http.get(format!("{}{path}", self.address)))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.request(
            self.http
                .post(format!("{}{path}", self.address))
                .json(&body),
        )
        .await
    }

    async fn request(&self, req: reqwest::RequestBuilder) -> Result<Value, String> {
        let resp = req
            .bearer_auth(&self.admin_token)
            .timeout(STEP_TIMEOUT)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {body}"));
        }
        Ok(body)
    }

    /// Stop the service.
    pub async fn stop(&self) {
        self.server.stop(true).await;
    }
}

/// The first `open_url` target in a card.
fn open_url_in(card: &Value) -> Option<String> {
    match card {
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some("open_url") {
                return map.get("default_url")?.as_str().map(str::to_owned);
            }
            map.values().find_map(open_url_in)
        }
        Value::Array(items) => items.iter().find_map(open_url_in),
        _ => None,
    }
}

/// The `user_code` a verification link carries.
fn user_code_in(link: &str) -> Option<String> {
    url::Url::parse(link)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == "user_code")
        .map(|(_, v)| v.into_owned())
}

fn say(out: &mut impl Write, line: &str) {
    let _ = writeln!(out, "{line}");
}

/// Settings aimed at the simulator: credentials it accepts, a fresh key,
/// random ports, fast reconnects.
fn demo_settings(
    sim: &Simulator,
    database_url: &str,
    admin_token: &str,
    key: &EncryptionKey,
) -> Result<Settings, crate::config::ConfigError> {
    let mut raw = defaults()?;
    let key_hex = key.to_hex();
    let pairs = [
        ("APP_ID", crate::sim::SIM_APP_ID),
        ("APP_SECRET", crate::sim::SIM_APP_SECRET),
        ("ENCRYPTION_KEY", key_hex.as_str()),
        ("DATABASE_URL", database_url),
        ("LARK_DOMAIN", sim.base_url()),
        ("LARK_ACCOUNTS_DOMAIN", sim.base_url()),
        ("HTTP_BIND", "127.0.0.1:0"),
        ("ADMIN_TOKEN", admin_token),
        ("AILY_APP_ID", "spring_demo__c"),
    ];
    overlay(
        &mut raw,
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Settings::from_raw(&raw)
}
