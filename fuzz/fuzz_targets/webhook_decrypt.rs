//! Bodies of `POST /webhook/event`: the decryptor on its own, then the
//! whole check-decrypt-parse path, signed and unsigned. Refusals are
//! expected; a panic is the bug.

#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use lark_service::events::webhook::{
    decrypt, encrypt_with_iv, parse_webhook, sign, WebhookConfig, WebhookHeaders,
};

const KEY: &str = "fuzz encrypt key";
const TS: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = decrypt(KEY, &text);
    // A well-formed ciphertext of arbitrary plaintext reaches the JSON and
    // envelope parsers behind the decryptor.
    let wrapped = format!(
        r#"{{"encrypt":"{}"}}"#,
        encrypt_with_iv(KEY, [7; 16], data)
    );
    let config = WebhookConfig {
        encrypt_key: Some(KEY.to_owned()),
        verification_token: Some("vtok".to_owned()),
    };
    let now = UNIX_EPOCH + Duration::from_secs(TS);
    for body in [data, wrapped.as_bytes()] {
        let signed = WebhookHeaders {
            timestamp: Some(TS.to_string()),
            nonce: Some("n".into()),
            signature: Some(sign(&TS.to_string(), "n", KEY, body)),
        };
        let _ = parse_webhook(&signed, body, &config, now);
        let _ = parse_webhook(&WebhookHeaders::default(), body, &config, now);
        let plain = WebhookConfig::default();
        let _ = parse_webhook(&WebhookHeaders::default(), body, &plain, SystemTime::now());
    }
});
