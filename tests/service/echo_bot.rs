//! `examples/echo_bot.rs` against the simulated platform: a user's text
//! comes back in their chat through the IM API, once per message even when
//! the platform redelivers, and anything but text gets the bot's fixed line.

use std::time::Duration;

use lark_service::sim::user_message;
use serde_json::json;

use crate::support::{backends, spawn, wait_for};

#[path = "../../examples/echo_bot.rs"]
#[allow(dead_code)] // its `main` is the example's own
mod example;

#[actix_rt::test]
async fn the_echo_bot_replies_through_the_im_api() {
    for db in backends() {
        let backend = db.backend();
        let app = spawn(db, &[], |_| {}, example::echo_bot).await;
        let sim = &app.sim;
        let chat = "oc_echo_test";
        let hello = user_message::text(sim.state(), "ou_alice", chat, "@_user_1 hello,  bot");
        sim.ws().push_event(&hello);
        let reply = wait_for("the echo", Duration::from_secs(10), || async {
            sim.state().open_api.im.last_message_to(chat)
        })
        .await;
        assert_eq!(reply.receive_id_type, "chat_id", "{backend}");
        assert_eq!(reply.msg_type, "text", "{backend}");
        assert_eq!(reply.content, json!({"text": "hello, bot"}), "{backend}");

        // The platform sends the same event again: one reply all the same.
        sim.ws().push_event(&hello);
        assert!(sim.ws().wait_all_acked(Duration::from_secs(10)).await);
        let to_chat = |chat: &str| {
            sim.state()
                .open_api
                .im
                .messages()
                .into_iter()
                .filter(|m| m.receive_id == chat)
                .count()
        };
        assert_eq!(to_chat(chat), 1, "{backend}: one reply per message");

        let mut image = user_message::text(sim.state(), "ou_alice", chat, "");
        image["event"]["message"]["message_type"] = json!("image");
        image["event"]["message"]["content"] = json!("{\"image_key\":\"img_1\"}");
        sim.ws().push_event(&image);
        let reply = wait_for(
            "the answer to an image",
            Duration::from_secs(10),
            || async {
                sim.state()
                    .open_api
                    .im
                    .last_message_to(chat)
                    .filter(|m| m.message_id != reply.message_id)
            },
        )
        .await;
        assert_eq!(
            reply.content,
            json!({"text": example::NOT_TEXT}),
            "{backend}"
        );
        app.stop().await;
    }
}
