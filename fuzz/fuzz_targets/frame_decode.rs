//! Bytes off the long connection, as the connection actor treats them:
//! decode a `pbbp2` frame, classify it, read its fragment headers, push it
//! through a fragment buffer, and build the ack for it. Every step may
//! refuse the input; none may panic.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use lark_service::ws::ack::{ack_frame, AckPayload, AckStatus};
use lark_service::ws::fragments::{FragmentBuffer, FragmentLimits};
use lark_service::ws::frame::Frame;

fuzz_target!(|data: &[u8]| {
    // Small limits, so eviction and the byte cap are reached quickly.
    let limits = FragmentLimits {
        max_messages: 4,
        max_fragments: 16,
        max_bytes: 4096,
    };
    let mut buffer = FragmentBuffer::new(limits, Duration::from_secs(5));
    let now = Instant::now();
    // The input is read as several frames, each prefixed by one length
    // byte, so fragments of one message can meet in the buffer.
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let take = (len as usize).min(tail.len());
        let (bytes, next) = tail.split_at(take);
        rest = next;
        let Ok(frame) = Frame::decode(bytes) else {
            continue;
        };
        let _ = frame.kind();
        if let Ok(pos) = frame.fragment_position() {
            let payload = frame.payload.clone().unwrap_or_default();
            let _ = buffer.push(pos.message_id, pos.sum, pos.seq, payload, now);
        }
        let ack = ack_frame(&frame, &AckPayload::event(AckStatus::Ok, None), Duration::ZERO);
        assert_eq!(Frame::decode(&ack.encode()).ok().as_ref(), Some(&ack));
    }
});
