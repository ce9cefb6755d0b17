//! A simulated user clicking a button on a card the app sent.
//!
//! The platform turns a click on a `callback` button into a
//! `card.action.trigger` event carrying the button's own `value`, exactly
//! as the card's author set it, the clicking operator, the delayed-update
//! token and the message context (lark-oapi
//! `event/callback/model/p2_card_action_trigger.py`: `operator`, `token`,
//! `action{value, tag, ...}`, `host`, `context{open_message_id,
//! open_chat_id}`). Nothing else: no authorization code ever arrives with a
//! click. The event is returned as envelope JSON (schema 2.0, `header`
//! as in §2.1 of the protocol notes), for the caller to deliver over the
//! long connection (as a `type=event` frame, the SDKs' path, or a
//! `type=card` one) or the webhook.

use serde_json::{json, Value};
use uuid::Uuid;

use super::SimState;

/// Why a click could not be simulated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClickError {
    #[error("no message `{0}` was sent")]
    NoMessage(String),
    #[error("message `{0}` has no callback button")]
    NoCallbackButton(String),
}

/// The `card.action.trigger` envelope for `open_id` clicking the first
/// callback button of message `message_id` as the user sees it now (the
/// original card, or its latest update).
pub fn click(state: &SimState, message_id: &str, open_id: &str) -> Result<Value, ClickError> {
    let message = state
        .open_api
        .im
        .message(message_id)
        .ok_or_else(|| ClickError::NoMessage(message_id.to_owned()))?;
    let value = callback_value(message.current())
        .ok_or_else(|| ClickError::NoCallbackButton(message_id.to_owned()))?;
    Ok(envelope(
        state,
        open_id,
        value,
        message_id,
        &message.chat_id,
    ))
}

/// A click on someone else's card: same shape, a value we did not make.
pub fn click_value(state: &SimState, open_id: &str, value: Value) -> Value {
    envelope(state, open_id, value, "om_foreign", "oc_foreign")
}

fn envelope(
    state: &SimState,
    open_id: &str,
    value: Value,
    message_id: &str,
    chat_id: &str,
) -> Value {
    let user = state.open_api.oauth.user(open_id);
    json!({
        "schema": "2.0",
        "header": {
            "event_id": Uuid::new_v4().simple().to_string(),
            "event_type": "card.action.trigger",
            "create_time": chrono::Utc::now().timestamp_millis().to_string(),
            "token": "sim-verification-token",
            "app_id": state.app_id,
            "tenant_key": "sim-tenant",
        },
        "event": {
            "operator": {
                "tenant_key": "sim-tenant",
                "open_id": open_id,
                "user_id": user.as_ref().map(|u| u.user_id.clone()),
                "union_id": user.as_ref().map(|u| u.union_id.clone()),
            },
            "token": format!("c-{}", Uuid::new_v4().simple()),
            "host": "im_message",
            "action": {"tag": "button", "value": value},
            "context": {"open_message_id": message_id, "open_chat_id": chat_id},
        }
    })
}

/// The value of the first `callback` behaviour in a schema 2.0 card.
fn callback_value(card: &Value) -> Option<Value> {
    match card {
        Value::Object(map) => {
            if let Some(Value::Array(behaviors)) = map.get("behaviors") {
                if let Some(b) = behaviors.iter().find(|b| b["type"] == "callback") {
                    return Some(b["value"].clone());
                }
            }
            map.values().find_map(callback_value)
        }
        Value::Array(items) => items.iter().find_map(callback_value),
        _ => None,
    }
}
