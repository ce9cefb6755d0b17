//! The real `lark-service` binary as a child process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use lark_service::sim::Simulator;

/// How long `serve` may take to report its control surface listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The binary, run where no `.env` can leak in, with only the variables a
/// test sets.
pub fn lark_service() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lark-service"));
    let dir = tempfile::tempdir().expect("temp dir");
    cmd.current_dir(dir.keep())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

/// [`lark_service`] aimed at `sim` and the database at `database_url`,
/// with the credentials and key the in-process test services use.
pub fn lark_service_against(sim: &Simulator, database_url: &str) -> Command {
    let mut cmd = lark_service();
    cmd.env("APP_ID", lark_service::sim::SIM_APP_ID)
        .env("APP_SECRET", lark_service::sim::SIM_APP_SECRET)
        .env("ENCRYPTION_KEY", super::TEST_KEY_HEX)
        .env("LARK_DOMAIN", sim.base_url())
        .env("LARK_ACCOUNTS_DOMAIN", sim.base_url())
        .env("DATABASE_URL", database_url);
    cmd
}

/// A running `lark-service serve`.
pub struct Served {
    child: Child,
}

impl Served {
    /// Start `cmd` (a `serve` command) and return once it reports its
    /// control surface listening. Its log goes on being read, so it never
    /// blocks on a full pipe.
    pub fn start(mut cmd: Command) -> Self {
        let mut child = cmd.stderr(Stdio::piped()).spawn().expect("serve starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (listening, heard) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("control surface listening") {
                    let _ = listening.send(());
                }
            }
        });
        let served = Self { child };
        assert!(
            heard.recv_timeout(START_TIMEOUT).is_ok(),
            "serve did not report listening within {START_TIMEOUT:?}"
        );
        served
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Wait for the process to exit, or panic after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(exit) = self.child.try_wait().expect("child status") {
                return exit;
            }
            assert!(
                start.elapsed() < timeout,
                "serve did not stop within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // A test that failed half-way must not leave the service running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
