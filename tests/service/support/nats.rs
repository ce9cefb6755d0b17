//! NATS JetStream for the forwarding tests: the broker on this machine
//! (`TEST_NATS_URL`, default `nats://127.0.0.1:4222`; `.ci/run` starts it),
//! a fresh stream and subject prefix per test so tests running at once never
//! see each other's events, and a reader that drains a stream.
//!
//! An unreachable broker fails the test: passing without it would claim a
//! JetStream guarantee nobody checked.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, consumer::pull::OrderedConfig};
use futures_util::StreamExt;

/// A connected client, and the stream one test uses.
pub struct TestStream {
    pub url: String,
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    /// The stream's name; the service creates it.
    pub name: String,
    /// Subjects are `<prefix>.<event_type>`.
    pub prefix: String,
}

impl TestStream {
    /// Connect, or panic saying the broker is needed.
    pub async fn fresh() -> Self {
        let url = std::env::var("TEST_NATS_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
        let connect = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(3))
            .connect(&url);
        let client = match connect.await {
            Ok(c) => c,
            Err(e) => panic!(
                "NATS JetStream is not reachable at {url} ({e}); these tests need it \
                 (.ci/run starts it: nats-server -js)"
            ),
        };
        let tag = uuid::Uuid::new_v4().simple().to_string();
        Self {
            url,
            jetstream: jetstream::new(client.clone()),
            client,
            name: format!("LARK_TEST_{tag}"),
            prefix: format!("lark.test{tag}.events"),
        }
    }

    /// One `FORWARD_SINKS` entry for this stream.
    pub fn sink(&self, name: &str, events: &str) -> serde_json::Value {
        serde_json::json!({
            "name": name, "type": "nats", "events": [events], "url": self.url,
            "stream": self.name, "subject_prefix": self.prefix,
            "timeout_ms": 2000, "concurrency": 64, "max_attempts": 10000,
            "backoff_base_ms": 10, "backoff_max_ms": 200
        })
    }

    /// Messages in the stream now (0 while it does not exist yet).
    pub async fn count(&self) -> u64 {
        match self.jetstream.get_stream(&self.name).await {
            Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
            Err(_) => 0,
        }
    }

    /// Every message in the stream: `Nats-Msg-Id` → how many messages
    /// carry it, after checking each one's id matches its envelope's
    /// `header.event_id`.
    pub async fn read_all(&self) -> HashMap<String, usize> {
        let total = self.count().await as usize;
        let stream = self
            .jetstream
            .get_stream(&self.name)
            .await
            .expect("the service created the stream");
        let consumer = stream
            .create_consumer(OrderedConfig::default())
            .await
            .expect("ordered consumer");
        let mut messages = consumer.messages().await.expect("messages").take(total);
        let mut ids = HashMap::new();
        while let Some(message) = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .ok()
            .flatten()
        {
            let message = message.expect("stream message");
            let id = message
                .headers
                .as_ref()
                .and_then(|h| h.get(NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned())
                .expect("every message carries Nats-Msg-Id");
            let envelope: serde_json::Value =
                serde_json::from_slice(&message.payload).expect("the payload is the envelope");
            assert_eq!(envelope["header"]["event_id"], id.as_str());
            *ids.entry(id).or_insert(0) += 1;
        }
        assert_eq!(ids.values().sum::<usize>(), total, "read the whole stream");
        ids
    }

    /// Remove the stream, so the broker's store does not grow test by test.
    pub async fn delete(&self) {
        let _ = self.jetstream.delete_stream(&self.name).await;
    }
}
