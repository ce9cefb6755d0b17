//! Lenient field readers for the platform's answers.
//!
//! The platform is loose with optional fields: an ungranted email comes back
//! as `""` or is missing, and timestamps are strings in one API and numbers
//! in another. These readers fold all of that into `Option<String>` so one
//! odd field does not fail a whole answer.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// `null`, missing, `""` → `None`; a string or number → `Some(text)`;
/// anything else (objects, arrays) → `None`.
pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "opt_string")]
        v: Option<String>,
    }

    fn read(json: &str) -> Option<String> {
        serde_json::from_str::<T>(json).unwrap().v
    }

    #[test]
    fn folds_odd_values() {
        assert_eq!(read(r#"{"v":"x"}"#).as_deref(), Some("x"));
        assert_eq!(read(r#"{"v":17}"#).as_deref(), Some("17"));
        assert_eq!(read(r#"{"v":""}"#), None);
        assert_eq!(read(r#"{"v":null}"#), None);
        assert_eq!(read(r#"{"v":{}}"#), None);
        assert_eq!(read(r#"{}"#), None);
    }
}
