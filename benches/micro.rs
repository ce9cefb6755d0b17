//! Microbenchmarks of the per-event hot paths: the `pbbp2` frame codec,
//! fragment reassembly, envelope parsing, the token vault's AES-GCM, and a
//! webhook's signature check plus decryption.
//!
//! These bound what the long connection can do per core with nothing else
//! in the way; `benches/stream.rs` measures the whole client.
//!
//! `cargo bench --bench micro` (criterion; add a name filter to run one).

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lark_service::auth::vault::{EncryptionKey, SealedColumn, Slot, Vault};
use lark_service::events::envelope::Envelope;
use lark_service::events::webhook::{self, WebhookConfig, WebhookHeaders};
use lark_service::ws::frame::{header, Frame, Header, Method};
use lark_service::ws::FragmentBuffer;

/// An event's data frame as the platform sends it.
fn data_frame(message_id: &str, sum: usize, seq: usize, payload: Vec<u8>) -> Frame {
    Frame {
        seq_id: 7,
        log_id: 7,
        service: 11,
        method: Method::Data.as_i32(),
        headers: vec![
            Header::new(header::TYPE, "event"),
            Header::new(header::MESSAGE_ID, message_id),
            Header::new(header::SUM, sum.to_string()),
            Header::new(header::SEQ, seq.to_string()),
            Header::new(header::TRACE_ID, "0a1b2c3d4e5f"),
        ],
        payload: Some(payload),
        ..Frame::default()
    }
}

fn event_bytes() -> Vec<u8> {
    support::message_event("bench-event-0001")
        .to_string()
        .into_bytes()
}

fn frames(c: &mut Criterion) {
    let frame = data_frame("msg-1", 1, 0, event_bytes());
    let bytes = frame.encode();
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode", |b| b.iter(|| Frame::decode(black_box(&bytes))));
    group.bench_function("encode", |b| b.iter(|| black_box(&frame).encode()));
    group.finish();
}

fn fragments(c: &mut Criterion) {
    let payload = event_bytes();
    let parts: Vec<Vec<u8>> = payload
        .chunks(payload.len().div_ceil(3))
        .map(<[u8]>::to_vec)
        .collect();
    let mut group = c.benchmark_group("fragments");
    group.throughput(Throughput::Elements(1));
    // One message in three fragments, through a buffer that already holds
    // other partial messages, as under a busy connection.
    group.bench_function("reassemble_3", |b| {
        let mut buffer = FragmentBuffer::default();
        let now = Instant::now();
        for n in 0..64 {
            let _ = buffer.push(&format!("other-{n}"), 3, 0, parts[0].clone(), now);
        }
        b.iter_batched(
            || parts.clone(),
            |parts| {
                let mut whole = None;
                for (seq, part) in parts.into_iter().enumerate() {
                    whole = buffer
                        .push("msg-1", 3, seq as u32, part, now)
                        .ok()
                        .flatten();
                }
                whole
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn envelope(c: &mut Criterion) {
    let bytes = bytes::Bytes::from(event_bytes());
    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse", |b| {
        b.iter(|| Envelope::parse(black_box(bytes.clone())))
    });
    group.finish();
}

fn vault(c: &mut Criterion) {
    let key = EncryptionKey::from_hex(support::ENCRYPTION_KEY_HEX).expect("the bench key is hex");
    let vault = Vault::new(&key);
    // A user access token's size.
    let token = "u-".to_owned() + &"x".repeat(180);
    let slot = Slot::new(
        SealedColumn::UserAccessToken,
        "5f0c2d9e-1111-4222-8333-944445555666",
    );
    let sealed = vault.seal(slot, &token).expect("sealing a token");
    let mut group = c.benchmark_group("aes_gcm");
    group.throughput(Throughput::Elements(1));
    group.bench_function("seal", |b| b.iter(|| vault.seal(slot, black_box(&token))));
    group.bench_function("open", |b| b.iter(|| vault.open(slot, black_box(&sealed))));
    group.finish();
}

fn webhook(c: &mut Criterion) {
    const KEY: &str = "bench-encrypt-key";
    let body = serde_json::json!({"encrypt": webhook::encrypt(KEY, &event_bytes())})
        .to_string()
        .into_bytes();
    let now = SystemTime::now();
    let timestamp = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
        .to_string();
    let nonce = "1628095200";
    let headers = WebhookHeaders {
        signature: Some(webhook::sign(&timestamp, nonce, KEY, &body)),
        timestamp: Some(timestamp),
        nonce: Some(nonce.to_owned()),
    };
    let config = WebhookConfig {
        encrypt_key: Some(KEY.to_owned()),
        verification_token: None,
    };
    assert!(matches!(
        webhook::parse_webhook(&headers, &body, &config, now),
        Ok(webhook::WebhookInput::Event(_))
    ));
    let mut group = c.benchmark_group("webhook");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_decrypt_parse", |b| {
        b.iter(|| webhook::parse_webhook(&headers, black_box(&body), &config, now))
    });
    group.finish();
}

criterion_group!(benches, frames, fragments, envelope, vault, webhook);
criterion_main!(benches);
