//! lark-service: keeps a Feishu/Lark app connected to the open platform,
//! authorizes its users and calls AI APIs on their behalf.

pub mod apaas;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod device;
pub mod domain;
pub mod events;
pub mod forward;
pub mod http;
pub mod lark;
pub mod metrics;
pub mod platform;
pub mod refresh;
pub mod sim;
pub mod startup;
pub mod supervise;
pub mod sync;
pub mod telemetry;
pub mod ws;
