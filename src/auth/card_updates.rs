//! Replacing a sent authorization card in place, so the message the user
//! clicked always shows where their authorization stands: "Authorized as
//! NAME", why an attempt failed, or that the request expired.
//!
//! `PATCH /open-apis/im/v1/messages/{message_id}` with the tenant token
//! that sent the card, body `{"content": "<card JSON string>"}`
//! (`lark-open-platform.md` §6; lark-oapi `api/im/v1/resource/message.py`
//! `patch`). Both `CardAuth` (sessions that ended) and `DeviceLogins`
//! (attempts that ended while the session stays pending) use it. A card
//! that cannot be updated is logged and counted, never an error of the
//! authorization itself: the session's state is what counts, and the card
//! is only its picture.

use actix::Addr;
use serde_json::Value;
use uuid::Uuid;

use crate::lark::client::LarkClient;
use crate::metrics::AUTH_CARD_UPDATES;
use crate::refresh::app_token_cache::{with_tenant_token, AppTokenCache};

/// Updates authorization cards; cheap to clone.
#[derive(Clone)]
pub struct CardUpdater {
    client: LarkClient,
    app_tokens: Addr<AppTokenCache>,
}

impl CardUpdater {
    pub fn new(client: LarkClient, app_tokens: Addr<AppTokenCache>) -> Self {
        Self { client, app_tokens }
    }

    /// Replace the card in `message_id` (the card of `session_id`) with
    /// `card`; answers whether the platform took it.
    pub async fn replace(&self, session_id: Uuid, message_id: &str, card: &Value) -> bool {
        let client = &self.client;
        let result = with_tenant_token(&self.app_tokens, |token| async move {
            client.update_card(&token, message_id, card).await
        })
        .await;
        match result {
            Ok(()) => {
                metrics::counter!(AUTH_CARD_UPDATES, "outcome" => "ok").increment(1);
                tracing::debug!(%session_id, message_id, "authorization card updated");
                true
            }
            Err(e) => {
                metrics::counter!(AUTH_CARD_UPDATES, "outcome" => "error").increment(1);
                tracing::warn!(%session_id, message_id, error = %e, "could not update the authorization card");
                false
            }
        }
    }
}
