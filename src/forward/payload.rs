//! What a sink receives of an event: the envelope as the platform sent it,
//! less the verification token.
//!
//! The platform puts the app's verification token in every envelope
//! (`header.token` in schema 2.0, `token` at the top in 1.0: lark-oapi
//! `event/context.py`, `EventHeader.token` and the "p1 only" `token`), and
//! without an encrypt key that token is all a webhook call is checked
//! against (protocol notes §3.4). Whoever holds it can forge webhook calls
//! to this service, so it stays here: sinks get everything else. The card's own `event.token` (the delayed-update
//! credential of `card.action.trigger`) is the app's to use and is kept.

use serde_json::Value;

use crate::events::envelope::{Envelope, Schema};

/// The envelope JSON to hand on, or `None` if it no longer parses (it
/// parsed once into `envelope`, so this means a bug, never bad input that
/// could be forwarded token and all).
pub fn for_sinks(envelope: &Envelope) -> Option<String> {
    let mut value: Value = serde_json::from_slice(&envelope.raw).ok()?;
    let holder = match envelope.schema {
        Schema::V2 => value.get_mut("header")?,
        Schema::V1 => &mut value,
    };
    if let Some(fields) = holder.as_object_mut() {
        fields.remove("token");
    }
    serde_json::to_string(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verification_token_is_removed_in_both_schemas() {
        let v2 = Envelope::parse(
            r#"{"schema":"2.0","header":{"event_id":"e1","event_type":"card.action.trigger","token":"vt-secret"},
                "event":{"token":"c-update","action":{"value":{}}}}"#
                .as_bytes()
                .to_vec(),
        )
        .unwrap();
        let out: Value = serde_json::from_str(&for_sinks(&v2).unwrap()).unwrap();
        assert!(out["header"].get("token").is_none(), "{out}");
        assert_eq!(out["header"]["event_id"], "e1");
        assert_eq!(
            out["event"]["token"], "c-update",
            "the card's own token stays"
        );

        let v1 = Envelope::parse(
            r#"{"uuid":"u1","token":"vt-secret","ts":"1","type":"event_callback","event":{"type":"message"}}"#
                .as_bytes()
                .to_vec(),
        )
        .unwrap();
        let out = for_sinks(&v1).unwrap();
        assert!(!out.contains("vt-secret"), "{out}");
        assert!(out.contains("\"uuid\":\"u1\""), "{out}");
    }
}
