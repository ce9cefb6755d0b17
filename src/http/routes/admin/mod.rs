//! `/admin/*`: the operator API, behind the bearer token.

pub mod actors;
