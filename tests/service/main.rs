//! Integration tests: the real service against the simulated platform, on
//! SQLite and (with `TEST_DATABASE_URL`) PostgreSQL. One binary, so the
//! crate is linked once.

mod support;

mod apaas;
mod authorization;
mod cli;
mod control_surface;
mod demo;
mod device_login;
mod device_store;
mod echo_bot;
mod events;
mod faults;
mod forwarding;
mod key_rotation;
mod long_connection;
mod openapi;
mod operator_assets;
mod persistence;
mod redirect;
mod refresh;
mod sync;
mod user_device_login;
