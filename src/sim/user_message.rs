//! A simulated user sending the app a message.
//!
//! The platform tells the app about a message it received with an
//! `im.message.receive_v1` event: who sent it (`sender.sender_id`), in which
//! chat, and the content as a JSON *string* (`{"text":"..."}` for text),
//! the same double encoding the app uses to send. The envelope is returned
//! for the caller to push over the long connection or post to the webhook.

use serde_json::{json, Value};
use uuid::Uuid;

use super::SimState;

pub const EVENT_TYPE: &str = "im.message.receive_v1";

/// The envelope for `open_id` writing `text` to the app in `chat_id` (a
/// one-to-one chat).
pub fn text(state: &SimState, open_id: &str, chat_id: &str, text: &str) -> Value {
    let user = state.open_api.oauth.user(open_id);
    let now = chrono::Utc::now().timestamp_millis().to_string();
    json!({
        "schema": "2.0",
        "header": {
            "event_id": Uuid::new_v4().simple().to_string(),
            "event_type": EVENT_TYPE,
            "create_time": now,
            "token": "sim-verification-token",
            "app_id": state.app_id,
            "tenant_key": "sim-tenant",
        },
        "event": {
            "sender": {
                "sender_id": {
                    "open_id": open_id,
                    "user_id": user.as_ref().map(|u| u.user_id.clone()),
                    "union_id": user.as_ref().map(|u| u.union_id.clone()),
                },
                "sender_type": "user",
                "tenant_key": "sim-tenant",
            },
            "message": {
                "message_id": format!("om_{}", Uuid::new_v4().simple()),
                "root_id": "",
                "parent_id": "",
                "create_time": now,
                "update_time": now,
                "chat_id": chat_id,
                "chat_type": "p2p",
                "message_type": "text",
                "content": json!({"text": text}).to_string(),
                "mentions": [],
            },
        }
    })
}
