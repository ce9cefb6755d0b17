//! An echo bot: the service with one event handler of your own, which
//! answers every text message with the same text, through the IM API.
//!
//! It shows the library's shape: [`Service::builder`] with
//! `.on(event_type, handler)`, a handler being an async function of the
//! typed [`Envelope`] returning an optional callback response, and
//! [`Platform`] for calling the open platform as the app from a handler.
//!
//! Run it with the app's credentials in `.env` (`APP_ID`, `APP_SECRET`,
//! `ENCRYPTION_KEY`, `DATABASE_URL`; see the README) and the app
//! subscribed to `im.message.receive_v1`, then write to the bot:
//!
//! ```text
//! cargo run --example echo_bot
//! ```
//!
//! The integration tests run this same handler against the simulated
//! platform.

use std::sync::Arc;

use lark_service::config::Settings;
use lark_service::events::envelope::Envelope;
use lark_service::events::router::{HandlerError, HandlerResult};
use lark_service::lark::im_api::ReceiveIdType;
use lark_service::platform::Platform;
use lark_service::startup::{Service, ServiceBuilder};
use serde_json::{json, Value};

pub const MESSAGE_RECEIVED: &str = "im.message.receive_v1";

/// What the bot says to anything but text.
pub const NOT_TEXT: &str = "I can only echo text.";

/// The platform keeps a send's `uuid` to this many characters.
const MAX_UUID: usize = 50;

/// Add the echo handler to a service being built.
pub fn echo_bot(builder: ServiceBuilder) -> ServiceBuilder {
    let platform = builder.platform();
    builder.on(MESSAGE_RECEIVED, move |event: Arc<Envelope>| {
        echo(platform.clone(), event)
    })
}

/// Answer one received message in the chat it came from.
pub async fn echo(platform: Platform, event: Arc<Envelope>) -> HandlerResult {
    let message = &event.event["message"];
    // The platform does not send the app its own messages; the check keeps
    // two bots in one group from echoing each other if that ever changes.
    if event.event["sender"]["sender_type"] != "user" {
        return Ok(None);
    }
    let (Some(chat_id), Some(message_id)) =
        (message["chat_id"].as_str(), message["message_id"].as_str())
    else {
        // Delivering it again would not add the fields: ack, and say why.
        tracing::warn!(event_id = %event.event_id, "message event without chat_id or message_id; not answered");
        return Ok(None);
    };
    let reply = match message["message_type"].as_str() {
        Some("text") => text_of(message).unwrap_or_else(|| NOT_TEXT.to_owned()),
        _ => NOT_TEXT.to_owned(),
    };
    // Keyed by the message, so a redelivered event sends one reply.
    let uuid: String = format!("echo-{message_id}")
        .chars()
        .take(MAX_UUID)
        .collect();
    platform
        .send_message(
            ReceiveIdType::ChatId,
            chat_id,
            "text",
            &json!({ "text": reply }),
            Some(&uuid),
        )
        .await
        .map_err(|e| HandlerError(format!("could not send the reply: {e}")))?;
    Ok(None)
}

/// The text of a text message, without `@_user_N` mention placeholders.
fn text_of(message: &Value) -> Option<String> {
    let content: Value = serde_json::from_str(message["content"].as_str()?).ok()?;
    let text = content["text"].as_str()?;
    let words: Vec<&str> = text
        .split_whitespace()
        .filter(|w| !w.starts_with("@_user_"))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    lark_service::telemetry::init("info");
    let settings = Settings::load()?;
    let app = echo_bot(Service::builder(settings)).build().await?;
    tracing::info!(port = app.port(), "echo bot running; Ctrl-C stops it");
    app.run_until(async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot wait for Ctrl-C; stopping");
        }
    })
    .await?;
    Ok(())
}
