//! The real `lark-service` binary as a child process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
        let mut lines = BufReader::new(stderr).lines();
        let listening = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.contains("control surface listening"));
        assert!(listening.is_some(), "serve never reported listening");
        std::thread::spawn(move || lines.for_each(drop));
        Self { child }
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
