//! The environment overrides of the device-code login, read once at the
//! edge so the rest of the flow (and its tests) never reads the process
//! environment.

/// `MEEGLE_HOST` and `MEEGLE_USER_ACCESS_TOKEN`; empty values count as unset.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvOverrides {
    /// Replaces the profile's saved host.
    pub host: Option<String>,
    /// Used instead of the stored token; never refreshed, never stored.
    pub user_access_token: Option<String>,
}

impl EnvOverrides {
    /// Read the two variables from the process environment.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            host: var("MEEGLE_HOST"),
            user_access_token: var("MEEGLE_USER_ACCESS_TOKEN"),
        }
    }
}

impl std::fmt::Debug for EnvOverrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvOverrides")
            .field("host", &self.host)
            .field(
                "user_access_token",
                &self
                    .user_access_token
                    .as_deref()
                    .map(crate::telemetry::Masked),
            )
            .finish()
    }
}
