//! The scheduled user-profile sync.

pub mod schedule;
