//! The scheduled user-profile sync.
//!
//! - [`schedule`]: the cron expression, checked at start-up.
//! - [`runner`]: one run, from its `sync_runs` row to its end.
//! - [`user_info_sync`]: the actor: one run at a time, on the schedule or
//!   on an operator's request.
//! - [`replica_lock`]: the cross-replica lock.
//! - [`run_view`], [`error`]: what a run looks like outside, what fails.

pub mod error;
pub mod replica_lock;
pub mod run_view;
pub mod runner;
pub mod schedule;
pub mod user_info_sync;
