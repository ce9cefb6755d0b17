//! lark-service: keeps a Feishu/Lark app connected to the open platform,
//! authorizes its users and calls AI APIs on their behalf.

pub mod domain;
pub mod events;
pub mod sim;
pub mod telemetry;
pub mod ws;
