//! Supervision: every long-lived actor runs under an actix `Supervisor`,
//! restarts with backoff after a failure, and reports its state.
//!
//! - [`backoff`]: the delay maths, pure.
//! - [`status`]: `Lifecycle` (per-actor bookkeeping), the `Managed` trait,
//!   the shared `GetStatus`/`Restart` messages and the `StatusBoard`.

pub mod backoff;
pub mod status;

use actix::{Addr, Supervised, Supervisor};

pub use status::{ActorState, ActorStatus, GetStatus, Lifecycle, Managed, Restart, StatusBoard};

/// Start `actor` under a `Supervisor` on the current arbiter.
pub fn spawn<A: Managed + Supervised>(actor: A) -> Addr<A> {
    Supervisor::start(move |_| actor)
}
