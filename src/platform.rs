//! `Platform`: the service's own open-platform client, for the embedding
//! program's event handlers.
//!
//! A handler that answers an event by calling the platform (reply to a
//! message, update a card) needs the app's tenant token. The service already
//! keeps one in its `AppTokenCache`; a handler borrowing it shares the
//! single-flight fetch and the refusal handling instead of running a second
//! cache. Handlers are registered before the service starts, so the handle
//! is taken from the builder ([`ServiceBuilder::platform`]) and bound when
//! [`ServiceBuilder::build`] has started the cache.
//!
//! [`ServiceBuilder::platform`]: crate::startup::ServiceBuilder::platform
//! [`ServiceBuilder::build`]: crate::startup::ServiceBuilder::build

use std::sync::{Arc, OnceLock};

use actix::Addr;
use serde_json::Value;

use crate::lark::client::{LarkClient, LarkError};
use crate::lark::im_api::{ReceiveIdType, SentMessage};
use crate::refresh::app_token_cache::{with_tenant_token, AppCallError, AppTokenCache};

/// Why a platform call from a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The handle belongs to a builder that was never built.
    #[error("the service is not started, so it has no platform client yet")]
    NotStarted,
    #[error(transparent)]
    Call(#[from] AppCallError),
}

struct Bound {
    lark: LarkClient,
    tokens: Addr<AppTokenCache>,
}

/// A handle to the service's platform client; cheap to clone.
#[derive(Clone, Default)]
pub struct Platform {
    bound: Arc<OnceLock<Bound>>,
}

impl Platform {
    /// Point the handle at the running service's client and token cache.
    /// Only the first call counts: one builder starts one service.
    pub(crate) fn bind(&self, lark: LarkClient, tokens: Addr<AppTokenCache>) {
        let _ = self.bound.set(Bound { lark, tokens });
    }

    /// Run `call` with the client and the tenant token; a token the platform
    /// refuses is dropped from the cache and the call made once more.
    pub async fn with_tenant_token<T, F, Fut>(&self, call: F) -> Result<T, PlatformError>
    where
        F: Fn(LarkClient, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, LarkError>>,
    {
        let bound = self.bound.get().ok_or(PlatformError::NotStarted)?;
        let lark = &bound.lark;
        Ok(with_tenant_token(&bound.tokens, |token| call(lark.clone(), token)).await?)
    }

    /// Send a message as the app (see [`LarkClient::send_message`]); `uuid`
    /// makes a repeated send, as after a redelivered event, deliver once.
    pub async fn send_message(
        &self,
        receive_id_type: ReceiveIdType,
        receive_id: &str,
        msg_type: &str,
        content: &Value,
        uuid: Option<&str>,
    ) -> Result<SentMessage, PlatformError> {
        self.with_tenant_token(|lark, token| async move {
            lark.send_message(&token, receive_id_type, receive_id, msg_type, content, uuid)
                .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn an_unbound_handle_says_the_service_is_not_started() {
        let err = Platform::default()
            .send_message(
                ReceiveIdType::ChatId,
                "oc_1",
                "text",
                &serde_json::json!({"text": "hi"}),
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, PlatformError::NotStarted), "{err}");
    }
}
