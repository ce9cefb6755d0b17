//! `Scopes`: the OAuth scopes asked of every user (`OAUTH_SCOPES`).
//!
//! A user token carries only the scopes that were requested and granted, so
//! the list must cover every API the service calls as the user; a call
//! outside it is refused with 99991679. `offline_access` is always part of
//! the request, because without it no refresh token comes back and the
//! session would end when its first access token does. Parsed once here, so
//! every flow (card device code, redirect, device login) asks for the same
//! thing and a typo fails at start-up rather than on a user's screen.

use std::fmt;

/// The scope that makes the platform hand out a refresh token.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// A scope name that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("`{0}` is not a scope name (letters, digits and `:._-` only, e.g. `aily:run:write`)")]
    Malformed(String),
}

/// The requested scopes, in the configured order, without duplicates,
/// `offline_access` always last.
#[derive(Clone, PartialEq, Eq)]
pub struct Scopes(Vec<String>);

impl Scopes {
    /// Parse a space-separated list (any whitespace, empty allowed).
    pub fn parse(list: &str) -> Result<Self, ScopeError> {
        let mut scopes: Vec<String> = Vec::new();
        for name in list.split_whitespace() {
            let allowed = |c: char| c.is_ascii_alphanumeric() || ":._-".contains(c);
            if !name.chars().all(allowed) {
                return Err(ScopeError::Malformed(name.to_owned()));
            }
            if name != OFFLINE_ACCESS && !scopes.iter().any(|s| s == name) {
                scopes.push(name.to_owned());
            }
        }
        scopes.push(OFFLINE_ACCESS.to_owned());
        Ok(Self(scopes))
    }

    /// Every scope, `offline_access` included.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.iter().any(|s| s == scope)
    }

    /// The `scope` parameter of an authorize or device-authorization
    /// request: the names joined by single spaces.
    pub fn to_param(&self) -> String {
        self.0.join(" ")
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_param())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_access_is_always_asked_for_once_and_last() {
        let s = Scopes::parse("offline_access aily:run:write").unwrap();
        assert_eq!(s.to_param(), "aily:run:write offline_access");
        assert_eq!(Scopes::parse("").unwrap().to_param(), "offline_access");
        assert_eq!(
            Scopes::parse("  a:b \n a:b\tc.d ").unwrap().to_param(),
            "a:b c.d offline_access"
        );
    }

    #[test]
    fn malformed_names_are_refused_by_name() {
        let err = Scopes::parse("aily:run:write aily,run").unwrap_err();
        assert_eq!(err, ScopeError::Malformed("aily,run".into()));
        assert!(err.to_string().contains("`aily,run`"));
        assert!(Scopes::parse("a&b=c").is_err());
    }

    #[test]
    fn contains_sees_offline_access_too() {
        let s = Scopes::parse("a:b").unwrap();
        assert!(s.contains("offline_access") && s.contains("a:b") && !s.contains("x"));
        assert_eq!(s.iter().count(), 2);
    }
}
