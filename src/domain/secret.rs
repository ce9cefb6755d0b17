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

#[cfg(test)]
mod tests {
    use super::Secret;

    /// The longest run of `secret`'s characters that `shown` contains.
    fn longest_leak(secret: &str, shown: &str) -> usize {
        let chars: Vec<char> = secret.chars().collect();
        (1..=chars.len())
            .rev()
            .find(|&n| {
                chars
                    .windows(n)
                    .any(|w| shown.contains(&w.iter().collect::<String>()))
            })
            .unwrap_or(0)
    }

    #[test]
    fn debug_and_display_show_at_most_four_characters() {
        for value in [
            "test-admin-token-0123456789",
            "xK9pQ2mZ7vL4wR8tY3nB",
            "0123456789abcdef",
            "short",
        ] {
            let secret = Secret::new(value);
            for shown in [format!("{secret:?}"), secret.to_string()] {
                assert!(longest_leak(value, &shown) <= 4, "{value} shown as {shown}");
            }
        }
        assert_eq!(
            format!("{:?}", Secret::new("test-admin-token-0123456789")),
            "Secret(test***)"
        );
    }
}
