//! Logging set-up and the one way tokens reach a log line.
//!
//! Every token passes through [`Masked`] before it is formatted, so a log
//! line shows at most a short prefix (`u-7dCz4T***`), never a usable secret.

use std::fmt;

use tracing_subscriber::{fmt as tfmt, EnvFilter};

/// How many characters of a secret a log line may show.
const VISIBLE_PREFIX: usize = 8;

/// Displays a secret as its first few characters followed by `***`.
/// Secrets of 12 characters or fewer show only `***`, because a prefix of a
/// short secret gives too much of it away.
pub struct Masked<'a>(pub &'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s.chars().count() <= 12 {
            return f.write_str("***");
        }
        let prefix: String = s.chars().take(VISIBLE_PREFIX).collect();
        write!(f, "{prefix}***")
    }
}

impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Install the global subscriber: human-readable lines on stderr, filtered by
/// `RUST_LOG` (default `info`). Calling it twice is harmless, which tests rely on.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tfmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::Masked;

    #[test]
    fn long_tokens_show_a_prefix_only() {
        assert_eq!(
            Masked("u-7dCz4TabcdefghijkLMNOP").to_string(),
            "u-7dCz4T***"
        );
    }

    #[test]
    fn short_secrets_show_nothing() {
        assert_eq!(Masked("secret").to_string(), "***");
        assert_eq!(Masked("").to_string(), "***");
    }
}
