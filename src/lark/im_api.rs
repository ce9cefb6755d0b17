//! IM messages (§6 of the protocol notes): sending an interactive card and
//! updating it in place, both with the tenant access token.
//!
//! The platform wants the card as a JSON **string** inside the JSON body
//! (`"content": "{\"schema\":\"2.0\",...}"`); callers hand in the card as a
//! `serde_json::Value` and this module does the double encoding, so no
//! caller can forget it.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};

use super::client::{encode_component, ApiRequest, LarkClient, LarkError};
use super::de::opt_string;

const MESSAGES_PATH: &str = "/open-apis/im/v1/messages";

/// `msg_type` of a card message.
pub const MSG_TYPE_INTERACTIVE: &str = "interactive";

/// What `receive_id` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveIdType {
    OpenId,
    UnionId,
    UserId,
    Email,
    ChatId,
}

impl ReceiveIdType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenId => "open_id",
            Self::UnionId => "union_id",
            Self::UserId => "user_id",
            Self::Email => "email",
            Self::ChatId => "chat_id",
        }
    }
}

/// The platform's record of a sent message (the fields the service uses;
/// the rest of the answer is ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SentMessage {
    pub message_id: String,
    #[serde(default, deserialize_with = "opt_string")]
    pub chat_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub msg_type: Option<String>,
    /// Epoch milliseconds, as the platform's string.
    #[serde(default, deserialize_with = "opt_string")]
    pub create_time: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub update_time: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub root_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub thread_id: Option<String>,
}

impl LarkClient {
    /// `POST /open-apis/im/v1/messages`: send `content` (serialised into a
    /// string here) as a `msg_type` message. `uuid` (at most 50 characters)
    /// makes a retry of the same send deliver only once.
    pub async fn send_message(
        &self,
        tenant_token: &str,
        receive_id_type: ReceiveIdType,
        receive_id: &str,
        msg_type: &str,
        content: &Value,
        uuid: Option<&str>,
    ) -> Result<SentMessage, LarkError> {
        let mut body = json!({
            "receive_id": receive_id,
            "msg_type": msg_type,
            "content": content.to_string(),
        });
        if let Some(uuid) = uuid {
            body["uuid"] = json!(uuid);
        }
        let req = ApiRequest::post(MESSAGES_PATH)
            .bearer(tenant_token)
            .query("receive_id_type", receive_id_type.as_str())
            .json(body);
        self.envelope(req).await
    }

    /// Send an interactive card: the card JSON itself, or a
    /// `{"type":"template",...}` reference.
    pub async fn send_card(
        &self,
        tenant_token: &str,
        receive_id_type: ReceiveIdType,
        receive_id: &str,
        card: &Value,
        uuid: Option<&str>,
    ) -> Result<SentMessage, LarkError> {
        self.send_message(
            tenant_token,
            receive_id_type,
            receive_id,
            MSG_TYPE_INTERACTIVE,
            card,
            uuid,
        )
        .await
    }

    /// `PATCH /open-apis/im/v1/messages/:message_id`: replace a sent card
    /// (lark-oapi `api/im/v1/resource/message.py` `patch`; body
    /// `{"content": "<card JSON string>"}`, answer `data: {}`). Both the old
    /// and the new card must declare `"config": {"update_multi": true}`,
    /// and the token must be of the kind that sent it (the tenant token).
    pub async fn update_card(
        &self,
        tenant_token: &str,
        message_id: &str,
        card: &Value,
    ) -> Result<(), LarkError> {
        let req = ApiRequest::patch(format!("{MESSAGES_PATH}/{}", encode_component(message_id)))
            .bearer(tenant_token)
            .json(json!({"content": card.to_string()}));
        let _: IgnoredAny = self.envelope(req).await?;
        Ok(())
    }
}
