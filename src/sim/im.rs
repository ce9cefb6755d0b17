//! Simulated IM message routes (§6 of the protocol notes): send a message,
//! update a card. Both need a live tenant access token.
//!
//! Routes, by fault name:
//! - `im_send`: `POST /open-apis/im/v1/messages?receive_id_type=...`
//! - `im_update`: `PATCH /open-apis/im/v1/messages/{message_id}`
//!
//! Sources: the send and patch pages of the IM docs
//! (open.larkoffice.com `reference/im-v1/message/create.md`, `patch.md`)
//! and lark-oapi `api/im/v1/resource/message.py` (`create`, `patch`: body
//! `{"content": "<card JSON string>"}`, tenant token); see §6 of the
//! protocol notes. Tests read each accepted PATCH back from
//! [`SimMessage::updates`].
//!
//! Checks what the platform checks: `content` must be a JSON *string*
//! holding a JSON object, a `uuid` repeats the first send's answer, and a
//! card can only be updated when both the old and the new card declare
//! `"config": {"update_multi": true}` (template cards declare it in the
//! template, so they pass). Every accepted message is kept with its parsed
//! content and its later updates, for tests to read back.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::{web, HttpRequest};
use serde_json::{json, Map, Value};

use super::open_api::{
    enter, json_body, ok, optional, query_map, require_tenant_token, required, Answer, Reject,
};
use super::state::lock;
use super::SimState;
use crate::lark::codes;

/// The prefix each `receive_id_type` expects of its ids (`email` has none).
const RECEIVE_ID_TYPES: [(&str, &str); 5] = [
    ("open_id", "ou_"),
    ("union_id", "on_"),
    ("user_id", ""),
    ("email", ""),
    ("chat_id", "oc_"),
];

/// A message as the simulator accepted it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMessage {
    pub message_id: String,
    pub chat_id: String,
    pub receive_id_type: String,
    pub receive_id: String,
    pub msg_type: String,
    /// `content`, parsed from its string form.
    pub content: Value,
    pub uuid: Option<String>,
    /// Each accepted `PATCH`, oldest first, parsed.
    pub updates: Vec<Value>,
    pub create_time: String,
}

impl SimMessage {
    /// The content the user sees now: the last update, or the original.
    pub fn current(&self) -> &Value {
        self.updates.last().unwrap_or(&self.content)
    }
}

#[derive(Default)]
struct Inner {
    messages: Vec<SimMessage>,
    /// One p2p chat per receiver, as on the platform.
    chats: HashMap<String, String>,
}

/// Messages sent through the simulator.
#[derive(Default)]
pub struct ImState {
    inner: Mutex<Inner>,
}

impl ImState {
    /// Every accepted message, in the order sent.
    pub fn messages(&self) -> Vec<SimMessage> {
        lock(&self.inner).messages.clone()
    }

    /// One message by id.
    pub fn message(&self, message_id: &str) -> Option<SimMessage> {
        lock(&self.inner)
            .messages
            .iter()
            .find(|m| m.message_id == message_id)
            .cloned()
    }

    /// The latest message sent to `receive_id`.
    pub fn last_message_to(&self, receive_id: &str) -> Option<SimMessage> {
        lock(&self.inner)
            .messages
            .iter()
            .rev()
            .find(|m| m.receive_id == receive_id)
            .cloned()
    }
}

/// Register the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/open-apis/im/v1/messages", web::post().to(send))
        .route(
            "/open-apis/im/v1/messages/{message_id}",
            web::patch().to(update),
        );
}

/// `content`: a string that parses to a JSON object.
fn parse_content(body: &Map<String, Value>) -> Result<Value, Reject> {
    let invalid = |why: &str| {
        Reject::bad(
            codes::IM_INVALID_CONTENT,
            format!("invalid message content: {why}"),
        )
    };
    let text = match body.get("content") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(invalid("content must be a JSON string, not a JSON value")),
        None => return Err(Reject::field("content is required")),
    };
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(invalid("content is not a JSON object")),
    }
}

/// Can this card be updated in place?
fn is_updatable(card: &Value) -> bool {
    card["type"] == "template" || card["config"]["update_multi"] == true
}

fn message_json(m: &SimMessage, app_id: &str) -> Value {
    json!({
        "message_id": m.message_id,
        "msg_type": m.msg_type,
        "create_time": m.create_time,
        "update_time": m.create_time,
        "deleted": false,
        "updated": !m.updates.is_empty(),
        "chat_id": m.chat_id,
        "sender": {
            "id": app_id,
            "id_type": "app_id",
            "sender_type": "app",
            "tenant_key": super::oauth::SIM_TENANT_KEY,
        },
        "body": {"content": m.content.to_string()},
    })
}

/// Route `im_send`.
async fn send(req: HttpRequest, body: web::Bytes, state: web::Data<SimState>) -> Answer {
    if let Some(r) = enter(&state, "im_send", &req, &body).await {
        return Ok(r);
    }
    require_tenant_token(&state, &req)?;
    let query = query_map(&req);
    let receive_id_type = query
        .get("receive_id_type")
        .map(String::as_str)
        .unwrap_or("");
    let prefix = RECEIVE_ID_TYPES
        .iter()
        .find(|(t, _)| *t == receive_id_type)
        .map(|(_, p)| *p)
        .ok_or_else(|| Reject::field(format!("receive_id_type `{receive_id_type}` is invalid")))?;
    let body = json_body(&req, &body)?;
    let receive_id = required(&body, "receive_id")?;
    if !receive_id.starts_with(prefix) {
        return Err(Reject::field(format!(
            "receive_id `{receive_id}` is not a valid {receive_id_type}"
        )));
    }
    let msg_type = required(&body, "msg_type")?;
    let content = parse_content(&body)?;
    let uuid = optional(&body, "uuid");

    let mut inner = lock(&state.open_api.im.inner);
    if let Some(uuid) = uuid {
        if let Some(earlier) = inner
            .messages
            .iter()
            .find(|m| m.uuid.as_deref() == Some(uuid))
        {
            return Ok(ok(message_json(earlier, &state.app_id)));
        }
    }
    let chat_id = if receive_id_type == "chat_id" {
        receive_id.to_owned()
    } else {
        inner
            .chats
            .entry(receive_id.to_owned())
            .or_insert_with(|| format!("oc_{}", uuid::Uuid::new_v4().simple()))
            .clone()
    };
    let message = SimMessage {
        message_id: format!("om_{}", uuid::Uuid::new_v4().simple()),
        chat_id,
        receive_id_type: receive_id_type.to_owned(),
        receive_id: receive_id.to_owned(),
        msg_type: msg_type.to_owned(),
        content,
        uuid: uuid.map(str::to_owned),
        updates: Vec::new(),
        create_time: super::open_api::now_ms(),
    };
    let answer = message_json(&message, &state.app_id);
    inner.messages.push(message);
    Ok(ok(answer))
}

/// Route `im_update`.
async fn update(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> Answer {
    if let Some(r) = enter(&state, "im_update", &req, &body).await {
        return Ok(r);
    }
    require_tenant_token(&state, &req)?;
    let body = json_body(&req, &body)?;
    let card = parse_content(&body)?;
    let mut inner = lock(&state.open_api.im.inner);
    let message = inner
        .messages
        .iter_mut()
        .find(|m| m.message_id == *path)
        .ok_or_else(|| Reject::bad(codes::IM_MESSAGE_NOT_FOUND, "message not found"))?;
    if message.msg_type != "interactive" {
        return Err(Reject::bad(
            codes::IM_INVALID_CONTENT,
            "only interactive cards can be updated with PATCH",
        ));
    }
    if !is_updatable(message.current()) || !is_updatable(&card) {
        return Err(Reject::bad(
            codes::IM_CARD_NOT_UPDATABLE,
            "card must declare config.update_multi = true before and after the update",
        ));
    }
    message.updates.push(card);
    Ok(ok(json!({})))
}
