//! `lark-service url decode`: [`crate::device::url_decode`] on stdout and
//! stderr. Like `auth`, it keeps the Auth Guard's exit codes (0 decoded,
//! 1 anything else) and needs no configuration, database or network.

use std::process::ExitCode;

use crate::device::url_decode::{self, UrlCommand};

/// Run one `url` command.
pub fn run(command: &UrlCommand) -> ExitCode {
    // Logs only when RUST_LOG asks for them: stderr carries the envelope.
    crate::telemetry::init("off");
    let code = url_decode::run(command, &mut std::io::stdout(), &mut std::io::stderr());
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
