//! Device-code login to a Feishu Project / Meegle host (OAuth 2.0 device
//! authorization grant, RFC 8628), with the command-line contract of the
//! Auth Guard: scripts on headless machines run `auth login --device-code
//! --phase init`, show the user the code, run `--phase poll`, and later
//! check `auth status`, branching on the exact JSON each prints.
//!
//! # Layout
//! - [`host`]: `--host` / `MEEGLE_HOST` normalised to `host[:port]`, and the
//!   https (loopback: http) origin derived from it.
//! - [`wire`]: the reqwest client and the checks every answer passes.
//! - [`discovery`], [`registration`], [`device_auth`], [`mcp`]: one file per
//!   exchange with the server (RFC 8414, RFC 7591, RFC 8628 + refresh, and
//!   the `tools/list` token check).
//! - [`store`]: the persistence trait with its refresh lock;
//!   [`db_store`] keeps it in the `device_tokens` table (tokens encrypted),
//!   [`memory_store`] in memory for tests.
//! - [`login`], [`status`]: the flows; [`clock`] makes their waiting testable.
//! - [`output`]: the JSON contract; [`cli`]: clap and the exit codes.
//! - [`error`]: one error enum whose variants map to the stable codes.
//! - [`feishu`]: Feishu's own device flow on the accounts host, for
//!   authorizing the app as a Feishu user (no CLI of its own here).
//! - [`url_decode`]: `url decode`, the guard's first step when the user
//!   sends a link: its kind and host, exactly as the reference CLI says.

pub mod cli;
pub mod clock;
pub mod db_store;
pub mod device_auth;
pub mod discovery;
pub mod env;
pub mod error;
pub mod feishu;
pub mod host;
pub mod login;
pub mod mcp;
pub mod memory_store;
pub mod output;
pub mod registration;
pub mod status;
pub mod store;
pub mod url_decode;
pub mod wire;

pub use cli::{run, AuthCommand, AuthContext};
pub use clock::{Clock, SystemClock};
pub use db_store::DbDeviceStore;
pub use env::EnvOverrides;
pub use error::DeviceError;
pub use host::DeviceHost;
pub use memory_store::MemoryStore;
pub use store::{DeviceStore, StoreError, StoredToken, TokenLock};
pub use wire::DeviceClient;
