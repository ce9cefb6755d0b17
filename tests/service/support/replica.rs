//! Another replica of the service: a second `Service` on the same
//! database and simulator, in an actix system of its own, so stopping it
//! ends its actors too, as a crash or a deploy would.

use lark_service::config::Settings;
use lark_service::startup::Service;
use serde_json::Value;

use super::ADMIN_TOKEN;

pub struct Replica {
    server: actix_web::dev::ServerHandle,
    /// `http://127.0.0.1:PORT` of its control surface.
    pub address: String,
    http: reqwest::Client,
    thread: std::thread::JoinHandle<()>,
}

impl Replica {
    pub fn start(settings: Settings) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let app = Service::builder(settings)
                    .build()
                    .await
                    .expect("replica builds");
                tx.send((app.server_handle(), app.port()))
                    .expect("test waits");
                let _ = app.run_until_stopped().await;
            });
        });
        let (server, port) = rx.recv().expect("replica started");
        Self {
            server,
            address: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            thread,
        }
    }

    /// `POST` an admin route of this replica.
    pub async fn admin_post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    /// Outbox rows in `state`, as this replica's admin route lists them.
    pub async fn outbox_rows(&self, state: &str) -> Option<usize> {
        let body: Value = self
            .http
            .get(format!("{}/admin/outbox?state={state}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        Some(body["rows"].as_array()?.len())
    }

    /// Stop it at once (no drain), as a crash would, and wait for its system to end.
    pub async fn kill(self) {
        self.server.stop(false).await;
        let thread = self.thread;
        actix_rt::task::spawn_blocking(move || thread.join())
            .await
            .expect("join")
            .expect("replica thread");
    }
}
