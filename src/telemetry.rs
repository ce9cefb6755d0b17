//! Logging set-up and the one way tokens reach a log line.
//!
//! Every token passes through [`Masked`] before it is formatted, so a log
//! line shows at most a four-character prefix (`u-7d***`), never a usable
//! secret: four characters of a token are mostly its type prefix, enough to
//! tell tokens apart in a log and far too little to guess the rest.

use std::fmt;

use tracing_subscriber::{fmt as tfmt, EnvFilter};

/// How many characters of a secret a log line may show.
const VISIBLE_PREFIX: usize = 4;
/// Secrets this short or shorter show nothing at all: four characters of a
/// short secret give too much of it away.
const SHOWN_FROM: usize = 13;

/// Displays a secret as its first [`VISIBLE_PREFIX`] characters followed by
/// `***` (`***` alone for secrets under [`SHOWN_FROM`] characters). It is
/// used for every secret, configured ones (`APP_SECRET`, `ADMIN_TOKEN`)
/// included.
pub struct Masked<'a>(pub &'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s.chars().count() < SHOWN_FROM {
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
    fn long_tokens_show_four_characters_only() {
        assert_eq!(Masked("u-7dCz4TabcdefghijkLMNOP").to_string(), "u-7d***");
        assert_eq!(format!("{:?}", Masked("0123456789abc")), "0123***");
        // Characters, not bytes: a multi-byte prefix is not cut in half.
        assert_eq!(Masked("éééééééééééééé").to_string(), "éééé***");
    }

    #[test]
    fn short_secrets_show_nothing() {
        assert_eq!(Masked("secret").to_string(), "***");
        assert_eq!(Masked("").to_string(), "***");
        assert_eq!(Masked("0123456789ab").to_string(), "***");
    }
}
