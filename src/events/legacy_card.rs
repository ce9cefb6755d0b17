//! Legacy card callbacks over HTTP (the "message card request URL",
//! `card.action.trigger_v1`, §2.4 of the protocol notes).
//!
//! Their body is flat, `{"open_id","user_id","tenant_key",
//! "open_message_id","open_chat_id","token","action":{..}}`, with no
//! `schema`, no `uuid` and no event id. How the SDKs verify them:
//! - an unencrypted flat body is signed with
//!   `hex(sha1(timestamp + nonce + verification_token + body))`, checked
//!   only when a verification token is configured (node-sdk
//!   `checkIsCardEventValidated`, which hashes a re-serialisation of the
//!   parsed body; we hash the exact bytes received, as the platform signs);
//! - a body that is encrypted (`{"encrypt":..}`) or has a `schema` is
//!   checked like an event, `sha256` over the encrypt key (node-sdk, and
//!   lark-oapi `card/action_handler.py` `_verify_sign`).
//!
//! A verified legacy callback becomes a schema 2.0 `card.action.trigger`
//! envelope, so it meets the same handlers (and dedup) as a new-style click.
//! Its event id is derived from the body, which carries the click's own
//! single-use `token`, so a retry of one click is a duplicate and two clicks
//! are not. The answer is the handler's JSON, or `{}` (keep the card) when
//! it has none; lark-oapi answers the handler's result as is.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::envelope::{Envelope, EnvelopeError, CARD_ACTION_TRIGGER};

/// Prefix of the event ids made up for legacy callbacks.
pub const EVENT_ID_PREFIX: &str = "legacy-card-";

/// A plain (decrypted) body that is a legacy card callback: an object with
/// an `action` object and a message id, and neither `schema` nor `uuid`.
pub fn is_legacy_card(plain: &Value) -> bool {
    let Some(top) = plain.as_object() else {
        return false;
    };
    !top.contains_key("schema")
        && !top.contains_key("uuid")
        && !top.contains_key("encrypt")
        && top.get("action").is_some_and(Value::is_object)
        && top.contains_key("open_message_id")
}

/// The `card.action.trigger` envelope for a legacy callback whose plain
/// body is `plain` and whose exact bytes are `raw`.
pub fn to_envelope(plain: &Value, raw: &[u8]) -> Result<Envelope, EnvelopeError> {
    let empty = Map::new();
    let top = plain.as_object().unwrap_or(&empty);
    let field = |key: &str| top.get(key).cloned().unwrap_or(Value::Null);
    let digest = hex::encode(Sha256::digest(raw));
    let envelope = json!({
        "schema": "2.0",
        "header": {
            "event_id": format!("{EVENT_ID_PREFIX}{}", &digest[..32]),
            "event_type": CARD_ACTION_TRIGGER,
            "tenant_key": field("tenant_key"),
        },
        "event": {
            "operator": {
                "open_id": field("open_id"),
                "user_id": field("user_id"),
                "union_id": field("union_id"),
                "tenant_key": field("tenant_key"),
            },
            "token": top.get("token").cloned().unwrap_or_else(|| json!("")),
            "host": "im_message",
            "action": field("action"),
            "context": {
                "open_message_id": field("open_message_id"),
                "open_chat_id": field("open_chat_id"),
            },
        },
    });
    // A `json!` value always serialises.
    let bytes = serde_json::to_vec(&envelope).unwrap_or_default();
    Envelope::from_value(envelope, bytes.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat() -> Value {
        json!({"open_id": "ou_a", "user_id": "u1", "tenant_key": "t", "open_message_id": "om_1",
               "open_chat_id": "oc_1", "token": "c-123", "action": {"tag": "button", "value": {"k": "v"}}})
    }

    #[test]
    fn flat_bodies_are_told_from_events_and_challenges() {
        assert!(is_legacy_card(&flat()));
        let mut v2 = flat();
        v2["schema"] = json!("2.0");
        assert!(!is_legacy_card(&v2));
        assert!(!is_legacy_card(
            &json!({"type": "url_verification", "challenge": "c", "token": "t"})
        ));
        assert!(!is_legacy_card(
            &json!({"uuid": "u", "event": {"type": "x"}, "action": {}, "open_message_id": "om"})
        ));
        assert!(!is_legacy_card(&json!([1])));
    }

    #[test]
    fn a_legacy_callback_becomes_a_card_action_with_a_stable_id() {
        let body = serde_json::to_vec(&flat()).unwrap();
        let e = to_envelope(&flat(), &body).unwrap();
        assert_eq!(e.event_type, CARD_ACTION_TRIGGER);
        assert!(e.event_id.as_str().starts_with(EVENT_ID_PREFIX));
        assert_eq!(
            to_envelope(&flat(), &body).unwrap().event_id,
            e.event_id,
            "a retry is a duplicate"
        );
        let mut other = flat();
        other["token"] = json!("c-456");
        let other_body = serde_json::to_vec(&other).unwrap();
        assert_ne!(
            to_envelope(&other, &other_body).unwrap().event_id,
            e.event_id
        );
        let action = e.card_action().unwrap();
        assert_eq!(action.operator.open_id, "ou_a");
        assert_eq!(e.event["context"]["open_message_id"], "om_1");
        assert_eq!(e.event["action"]["value"]["k"], "v");
    }
}
