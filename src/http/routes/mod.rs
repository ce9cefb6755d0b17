//! One file per route or area.

pub mod admin;
pub mod health;
pub mod metrics;
pub mod oauth;
pub mod webhook;
