//! Parsed domain types: values that were checked once at the edge, so the
//! rest of the code can trust them.

pub mod base_url;
pub mod scopes;
pub mod secret;
pub mod session;

pub use base_url::BaseUrl;
pub use scopes::Scopes;
pub use secret::Secret;
pub use session::{AuthMethod, SessionState};
