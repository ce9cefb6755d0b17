//! `Secret`: a string that never prints itself.

use std::fmt;

use crate::telemetry::Masked;

/// A credential from configuration. `Debug` and `Display` mask it, so a
/// `Settings` dump in a log line cannot leak it; [`Secret::expose`] is the
/// one deliberate way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", Masked(&self.0))
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Masked(&self.0), f)
    }
}
