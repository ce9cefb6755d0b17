//! One file per table: the row struct, its insertable twin, and small query
//! functions that take the connection first and run one statement each.

pub mod device_token;
pub mod outbox_event;
pub mod processed_event;
pub mod sealed_value;
pub mod sync_run;
pub mod user_auth_session;
