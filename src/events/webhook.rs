//! The HTTP callback mode (§3), minus HTTP: turn a request's signature
//! headers and raw body into a URL-verification challenge or an event.
//!
//! Rules, in the order [`parse_webhook`] applies them:
//! - A flat legacy card callback (see [`super::legacy_card`]) must carry
//!   `hex(sha1(timestamp + nonce + verification_token + raw_body))`, so it
//!   needs `LARK_VERIFICATION_TOKEN`.
//! - Otherwise, with an Encrypt Key, a request that carries
//!   `X-Lark-Signature` must match
//!   `hex(sha256(timestamp + nonce + encrypt_key + raw_body))` over the
//!   exact bytes received; this is checked before anything is decrypted.
//!   Unsigned requests are allowed only for the URL challenge, which the
//!   Python SDK does not verify either.
//! - A signed request's timestamp may be up to [`MAX_AGE`] old and
//!   [`MAX_AHEAD`] in the future. No SDK checks freshness at all (lark-oapi
//!   `_verify_sign`, node-sdk `checkIsEventValidated` only hash), and the
//!   platform retries a request it got no 200 for after 15 s, 5 min, 1 h
//!   and 6 h (§3.4); whether a retry keeps the original timestamp is not
//!   documented, so the window covers the whole ≈7.1 h schedule with room
//!   to spare, and a replay inside it is refused by the
//!   [`ReplayCache`](super::replay::ReplayCache) instead.
//! - `{"encrypt": b64}` bodies are AES-256-CBC with key `sha256(encrypt_key)`
//!   and the IV in the first 16 bytes of the blob.
//! - With a Verification Token, the body's token must equal it.
//!
//! Comparisons of secrets and signatures are constant-time.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::envelope::{Envelope, EnvelopeError};
use super::legacy_card;

/// How old a signed request's timestamp may be: the platform's retries of
/// one request span about 7.1 hours and may keep its original timestamp.
pub const MAX_AGE: Duration = Duration::from_secs(8 * 60 * 60);
/// How far ahead of our clock a timestamp may be (clock drift).
pub const MAX_AHEAD: Duration = Duration::from_secs(5 * 60);

pub const HEADER_TIMESTAMP: &str = "X-Lark-Request-Timestamp";
pub const HEADER_NONCE: &str = "X-Lark-Request-Nonce";
pub const HEADER_SIGNATURE: &str = "X-Lark-Signature";

const IV_LEN: usize = 16;

type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;
type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;

/// The signature headers of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookHeaders {
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub signature: Option<String>,
}

impl WebhookHeaders {
    /// Pick the three headers out of a request's, case-insensitively.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut headers = Self::default();
        for (name, value) in pairs {
            let slot = if name.eq_ignore_ascii_case(HEADER_TIMESTAMP) {
                &mut headers.timestamp
            } else if name.eq_ignore_ascii_case(HEADER_NONCE) {
                &mut headers.nonce
            } else if name.eq_ignore_ascii_case(HEADER_SIGNATURE) {
                &mut headers.signature
            } else {
                continue;
            };
            *slot = Some(value.trim().to_owned());
        }
        headers
    }
}

/// The app's callback secrets, as configured in the developer console.
#[derive(Clone, Default)]
pub struct WebhookConfig {
    pub encrypt_key: Option<String>,
    pub verification_token: Option<String>,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("encrypt_key", &self.encrypt_key.as_ref().map(|_| "***"))
            .field(
                "verification_token",
                &self.verification_token.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// What a valid callback request asks of us.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookInput {
    /// URL verification: answer `{"challenge": <this>}`.
    Challenge(String),
    Event(Envelope),
}

/// Why `{"encrypt": ..}` did not decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("not base64")]
    Base64,
    #[error("shorter than an IV plus one block, or not whole blocks")]
    Length,
    #[error("wrong key or corrupted data (bad padding)")]
    Padding,
}

/// Why a callback request was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("signature headers are missing (X-Lark-Request-Timestamp, X-Lark-Request-Nonce, X-Lark-Signature)")]
    MissingHeaders,
    #[error("X-Lark-Request-Timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("request timestamp is more than 8 hours old or more than 5 minutes ahead")]
    StaleTimestamp,
    #[error("this signed request (timestamp and nonce) was already taken; a replay is refused")]
    Replayed,
    #[error("legacy card callbacks are signed with the verification token, but LARK_VERIFICATION_TOKEN is not set")]
    NoVerificationToken,
    #[error("X-Lark-Signature does not match; check LARK_ENCRYPT_KEY")]
    BadSignature,
    #[error("verification token does not match; check LARK_VERIFICATION_TOKEN")]
    BadToken,
    #[error("body is encrypted but no LARK_ENCRYPT_KEY is configured")]
    NoEncryptKey,
    #[error("encrypted body could not be decrypted: {0}")]
    Decrypt(#[from] DecryptError),
    #[error("body is not a JSON object")]
    BadJson,
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

impl WebhookError {
    /// A stable code for metrics labels and JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::MissingHeaders => "missing_headers",
            WebhookError::BadTimestamp => "bad_timestamp",
            WebhookError::StaleTimestamp => "stale_timestamp",
            WebhookError::Replayed => "replayed",
            WebhookError::NoVerificationToken => "no_verification_token",
            WebhookError::BadSignature => "bad_signature",
            WebhookError::BadToken => "bad_token",
            WebhookError::NoEncryptKey => "no_encrypt_key",
            WebhookError::Decrypt(_) => "decrypt_failed",
            WebhookError::BadJson => "bad_json",
            WebhookError::Envelope(_) => "bad_envelope",
        }
    }
}

/// Check, decrypt and parse one callback request.
pub fn parse_webhook(
    headers: &WebhookHeaders,
    body: &[u8],
    config: &WebhookConfig,
    now: SystemTime,
) -> Result<WebhookInput, WebhookError> {
    let signed = headers.signature.is_some();
    let outer: Value = serde_json::from_slice(body).map_err(|_| WebhookError::BadJson)?;
    if legacy_card::is_legacy_card(&outer) {
        let token = config
            .verification_token
            .as_deref()
            .ok_or(WebhookError::NoVerificationToken)?;
        verify_legacy_card_signature(headers, body, token, now)?;
        return Ok(WebhookInput::Event(legacy_card::to_envelope(&outer, body)?));
    }
    if let (Some(key), true) = (&config.encrypt_key, signed) {
        verify_signature(headers, body, key, now)?;
    }

    let (plain, raw) = match outer.get("encrypt") {
        Some(Value::String(encrypted)) => {
            let key = config
                .encrypt_key
                .as_deref()
                .ok_or(WebhookError::NoEncryptKey)?;
            let plain = decrypt(key, encrypted)?;
            let value = serde_json::from_slice(&plain).map_err(|_| WebhookError::BadJson)?;
            (value, Bytes::from(plain))
        }
        _ => (outer, Bytes::copy_from_slice(body)),
    };
    if !plain.is_object() {
        return Err(WebhookError::BadJson);
    }

    if let Some(challenge) = challenge_of(&plain) {
        check_token(
            config,
            plain.get("token").and_then(Value::as_str).unwrap_or(""),
        )?;
        return Ok(WebhookInput::Challenge(challenge.to_owned()));
    }
    if config.encrypt_key.is_some() && !signed {
        return Err(WebhookError::MissingHeaders);
    }
    if legacy_card::is_legacy_card(&plain) {
        // Encrypted, so its sha256 signature was checked above.
        return Ok(WebhookInput::Event(legacy_card::to_envelope(&plain, &raw)?));
    }
    let envelope = Envelope::from_value(plain, raw)?;
    check_token(config, &envelope.token)?;
    Ok(WebhookInput::Event(envelope))
}

fn challenge_of(plain: &Value) -> Option<&str> {
    if plain.get("type").and_then(Value::as_str) != Some("url_verification") {
        return None;
    }
    plain.get("challenge").and_then(Value::as_str)
}

fn check_token(config: &WebhookConfig, given: &str) -> Result<(), WebhookError> {
    match &config.verification_token {
        Some(expected) if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) => {
            Err(WebhookError::BadToken)
        }
        _ => Ok(()),
    }
}

/// Check `X-Lark-Signature` and the timestamp's freshness.
pub fn verify_signature(
    headers: &WebhookHeaders,
    body: &[u8],
    encrypt_key: &str,
    now: SystemTime,
) -> Result<(), WebhookError> {
    let (timestamp, nonce, signature) = signature_headers(headers)?;
    check_fresh(timestamp, now)?;
    check_hex(&sign(timestamp, nonce, encrypt_key, body), signature)
}

/// Check a legacy card callback (`card.action.trigger_v1`), which signs
/// with SHA-1 over the verification token instead of the encrypt key.
pub fn verify_legacy_card_signature(
    headers: &WebhookHeaders,
    body: &[u8],
    verification_token: &str,
    now: SystemTime,
) -> Result<(), WebhookError> {
    let (timestamp, nonce, signature) = signature_headers(headers)?;
    check_fresh(timestamp, now)?;
    check_hex(
        &sign_legacy_card(timestamp, nonce, verification_token, body),
        signature,
    )
}

fn signature_headers(headers: &WebhookHeaders) -> Result<(&str, &str, &str), WebhookError> {
    match (&headers.timestamp, &headers.nonce, &headers.signature) {
        (Some(t), Some(n), Some(s)) => Ok((t, n, s)),
        _ => Err(WebhookError::MissingHeaders),
    }
}

fn check_fresh(timestamp: &str, now: SystemTime) -> Result<(), WebhookError> {
    let sent = parse_timestamp(timestamp)?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let too_old = now.saturating_sub(sent) > MAX_AGE.as_secs();
    let too_new = sent.saturating_sub(now) > MAX_AHEAD.as_secs();
    if too_old || too_new {
        return Err(WebhookError::StaleTimestamp);
    }
    Ok(())
}

fn parse_timestamp(timestamp: &str) -> Result<u64, WebhookError> {
    timestamp
        .parse::<u64>()
        .map_err(|_| WebhookError::BadTimestamp)
}

/// The `(timestamp, nonce)` a replay cache keys a request on, when it
/// carries both (and a timestamp that parses).
pub fn replay_key(headers: &WebhookHeaders) -> Option<(u64, &str)> {
    let timestamp = parse_timestamp(headers.timestamp.as_deref()?).ok()?;
    Some((timestamp, headers.nonce.as_deref()?))
}

fn check_hex(expected: &str, given: &str) -> Result<(), WebhookError> {
    let given = given.to_ascii_lowercase();
    if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// `hex(sha256(timestamp + nonce + encrypt_key + body))`, lowercase.
pub fn sign(timestamp: &str, nonce: &str, encrypt_key: &str, body: &[u8]) -> String {
    digest_hex::<Sha256>(&[
        timestamp.as_bytes(),
        nonce.as_bytes(),
        encrypt_key.as_bytes(),
        body,
    ])
}

/// `hex(sha1(timestamp + nonce + verification_token + body))`, lowercase.
pub fn sign_legacy_card(
    timestamp: &str,
    nonce: &str,
    verification_token: &str,
    body: &[u8],
) -> String {
    digest_hex::<sha1::Sha1>(&[
        timestamp.as_bytes(),
        nonce.as_bytes(),
        verification_token.as_bytes(),
        body,
    ])
}

fn digest_hex<D: Digest>(parts: &[&[u8]]) -> String {
    let mut hasher = D::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// Decrypt the `encrypt` member of a callback body.
pub fn decrypt(encrypt_key: &str, encrypted: &str) -> Result<Vec<u8>, DecryptError> {
    let blob = BASE64
        .decode(encrypted.trim())
        .map_err(|_| DecryptError::Base64)?;
    if blob.len() < 2 * IV_LEN || blob.len() % IV_LEN != 0 {
        return Err(DecryptError::Length);
    }
    let (iv, ciphertext) = blob.split_at(IV_LEN);
    let key = Sha256::digest(encrypt_key.as_bytes());
    Aes256CbcDec::new_from_slices(&key, iv)
        .map_err(|_| DecryptError::Length)?
        .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
        .map_err(|_| DecryptError::Padding)
}

/// Encrypt a body the way the platform does, with a fresh random IV.
pub fn encrypt(encrypt_key: &str, plaintext: &[u8]) -> String {
    let mut iv = [0u8; IV_LEN];
    rand::thread_rng().fill_bytes(&mut iv);
    encrypt_with_iv(encrypt_key, iv, plaintext)
}

/// [`encrypt`] with a chosen IV, for reproducible test vectors.
pub fn encrypt_with_iv(encrypt_key: &str, iv: [u8; IV_LEN], plaintext: &[u8]) -> String {
    let key = Sha256::digest(encrypt_key.as_bytes());
    let ciphertext = Aes256CbcEnc::new(&key, &iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    let mut blob = iv.to_vec();
    blob.extend_from_slice(&ciphertext);
    BASE64.encode(blob)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const KEY: &str = "test key";
    const VECTOR: &str = "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=";
    const TS: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn signed(body: &[u8], key: &str) -> WebhookHeaders {
        WebhookHeaders {
            timestamp: Some(TS.to_string()),
            nonce: Some("abc".into()),
            signature: Some(sign(&TS.to_string(), "abc", key, body)),
        }
    }

    fn config(key: Option<&str>, token: Option<&str>) -> WebhookConfig {
        WebhookConfig {
            encrypt_key: key.map(str::to_owned),
            verification_token: token.map(str::to_owned),
        }
    }

    fn event(token: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"schema":"2.0","header":{"event_id":"e1","event_type":"im.message.receive_v1","token":token},"event":{}}))
            .unwrap()
    }

    #[test]
    fn official_decrypt_vector() {
        assert_eq!(decrypt(KEY, VECTOR).unwrap(), b"hello world");
        assert_eq!(decrypt("other key", VECTOR), Err(DecryptError::Padding));
        assert_eq!(decrypt(KEY, "!!!"), Err(DecryptError::Base64));
        assert_eq!(decrypt(KEY, "AAAA"), Err(DecryptError::Length));
    }

    #[test]
    fn encrypt_reproduces_the_vector_and_round_trips() {
        let blob = BASE64.decode(VECTOR).unwrap();
        let iv: [u8; 16] = blob[..16].try_into().unwrap();
        assert_eq!(encrypt_with_iv(KEY, iv, b"hello world"), VECTOR);
        let secret = encrypt(KEY, b"{\"a\":1}");
        assert_ne!(secret, encrypt(KEY, b"{\"a\":1}"), "IVs must differ");
        assert_eq!(decrypt(KEY, &secret).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn official_signature_vector() {
        let body = format!(r#"{{"encrypt":"{VECTOR}"}}"#);
        assert_eq!(
            sign("1700000000", "abc", KEY, body.as_bytes()),
            "0c09d96c2aef2ad08179b3967ea410bbc91dab24ce3aec05af962cf1935844af"
        );
    }

    #[test]
    fn legacy_card_signature_is_sha1() {
        let sig = sign_legacy_card("1", "n", "tok", b"{}");
        assert_eq!(sig, hex::encode(sha1::Sha1::digest(b"1ntok{}")));
        let headers = WebhookHeaders {
            timestamp: Some(TS.to_string()),
            nonce: Some("n".into()),
            signature: Some(sign_legacy_card(&TS.to_string(), "n", "tok", b"{}")),
        };
        assert!(verify_legacy_card_signature(&headers, b"{}", "tok", at(TS)).is_ok());
        assert!(matches!(
            verify_legacy_card_signature(&headers, b"{ }", "tok", at(TS)),
            Err(WebhookError::BadSignature)
        ));
    }

    fn legacy_card_body() -> Vec<u8> {
        serde_json::to_vec(&json!({"open_id": "ou_a", "tenant_key": "t", "open_message_id": "om_1",
            "open_chat_id": "oc_1", "token": "c-1", "action": {"tag": "button", "value": {"k": 1}}}))
        .unwrap()
    }

    #[test]
    fn a_flat_legacy_card_is_verified_with_sha1_over_the_verification_token() {
        let body = legacy_card_body();
        let headers = WebhookHeaders {
            timestamp: Some(TS.to_string()),
            nonce: Some("n".into()),
            signature: Some(sign_legacy_card(&TS.to_string(), "n", "vt", &body)),
        };
        // The encrypt key plays no part in a flat legacy body's signature.
        for cfg in [config(None, Some("vt")), config(Some(KEY), Some("vt"))] {
            let WebhookInput::Event(e) = parse_webhook(&headers, &body, &cfg, at(TS)).unwrap()
            else {
                panic!("not an event")
            };
            assert!(e.is_card_action());
        }
        let err = parse_webhook(&headers, &body, &config(None, Some("other")), at(TS)).unwrap_err();
        assert_eq!(err.code(), "bad_signature");
        let err = parse_webhook(&headers, &body, &config(Some(KEY), None), at(TS)).unwrap_err();
        assert_eq!(err.code(), "no_verification_token");
        let err = parse_webhook(
            &WebhookHeaders::default(),
            &body,
            &config(None, Some("vt")),
            at(TS),
        )
        .unwrap_err();
        assert_eq!(err.code(), "missing_headers");
    }

    #[test]
    fn an_encrypted_legacy_card_is_verified_like_an_event() {
        let body =
            serde_json::to_vec(&json!({"encrypt": encrypt(KEY, &legacy_card_body())})).unwrap();
        let WebhookInput::Event(e) =
            parse_webhook(&signed(&body, KEY), &body, &config(Some(KEY), None), at(TS)).unwrap()
        else {
            panic!("not an event")
        };
        assert!(e.is_card_action());
        assert_eq!(e.event["context"]["open_message_id"], "om_1");
        let mut forged = signed(&body, KEY);
        forged.signature = Some("0".repeat(64));
        let err = parse_webhook(&forged, &body, &config(Some(KEY), None), at(TS)).unwrap_err();
        assert_eq!(err.code(), "bad_signature");
    }

    #[test]
    fn the_replay_key_is_the_timestamp_and_nonce() {
        let h = signed(b"{}", KEY);
        assert_eq!(replay_key(&h), Some((TS, "abc")));
        assert_eq!(replay_key(&WebhookHeaders::default()), None);
        let mut bad = h.clone();
        bad.timestamp = Some("soon".into());
        assert_eq!(replay_key(&bad), None);
    }

    #[test]
    fn encrypted_signed_event_is_accepted() {
        let body = serde_json::to_vec(&json!({"encrypt": encrypt(KEY, &event("vt"))})).unwrap();
        let input = parse_webhook(
            &signed(&body, KEY),
            &body,
            &config(Some(KEY), Some("vt")),
            at(TS + 10),
        )
        .unwrap();
        let WebhookInput::Event(e) = input else {
            panic!("{input:?}")
        };
        assert_eq!(e.event_id.as_str(), "e1");
        assert_eq!(&e.raw[..], &event("vt")[..]);
    }

    #[test]
    fn signature_and_clock_are_enforced() {
        let body = serde_json::to_vec(&json!({"encrypt": encrypt(KEY, &event("vt"))})).unwrap();
        let cfg = config(Some(KEY), None);
        let mut tampered = signed(&body, KEY);
        tampered.signature = Some(sign(&TS.to_string(), "abd", KEY, &body));
        let err = parse_webhook(&tampered, &body, &cfg, at(TS)).unwrap_err();
        assert_eq!(err.code(), "bad_signature");
        // Upper-case hex is the same signature.
        let mut upper = signed(&body, KEY);
        upper.signature = upper.signature.map(|s| s.to_uppercase());
        assert!(parse_webhook(&upper, &body, &cfg, at(TS)).is_ok());
        // Up to 8 hours old (the platform's retries), up to 5 minutes ahead.
        let eight_hours = 8 * 3600;
        assert!(parse_webhook(&signed(&body, KEY), &body, &cfg, at(TS + eight_hours)).is_ok());
        let err =
            parse_webhook(&signed(&body, KEY), &body, &cfg, at(TS + eight_hours + 1)).unwrap_err();
        assert_eq!(err.code(), "stale_timestamp");
        let err = parse_webhook(&signed(&body, KEY), &body, &cfg, at(TS - 301)).unwrap_err();
        assert_eq!(err.code(), "stale_timestamp");
        assert!(parse_webhook(&signed(&body, KEY), &body, &cfg, at(TS - 300)).is_ok());
        let mut bad_ts = signed(&body, KEY);
        bad_ts.timestamp = Some("yesterday".into());
        assert_eq!(
            parse_webhook(&bad_ts, &body, &cfg, at(TS))
                .unwrap_err()
                .code(),
            "bad_timestamp"
        );
        let mut no_nonce = signed(&body, KEY);
        no_nonce.nonce = None;
        assert_eq!(
            parse_webhook(&no_nonce, &body, &cfg, at(TS))
                .unwrap_err()
                .code(),
            "missing_headers"
        );
        // An unsigned event is refused once a key is configured.
        let err = parse_webhook(&WebhookHeaders::default(), &body, &cfg, at(TS)).unwrap_err();
        assert_eq!(err.code(), "missing_headers");
    }

    #[test]
    fn challenge_plain_and_encrypted() {
        let plain = br#"{"challenge":"ajls384kdjx98XX","token":"vt","type":"url_verification"}"#;
        let none = WebhookHeaders::default();
        let got = parse_webhook(&none, plain, &config(None, Some("vt")), at(TS)).unwrap();
        assert_eq!(got, WebhookInput::Challenge("ajls384kdjx98XX".into()));
        let err = parse_webhook(&none, plain, &config(None, Some("other")), at(TS)).unwrap_err();
        assert_eq!(err.code(), "bad_token");

        let wrapped = serde_json::to_vec(&json!({"encrypt": encrypt(KEY, plain)})).unwrap();
        let got = parse_webhook(&none, &wrapped, &config(Some(KEY), Some("vt")), at(TS)).unwrap();
        assert_eq!(got, WebhookInput::Challenge("ajls384kdjx98XX".into()));
        let err = parse_webhook(&none, &wrapped, &config(None, None), at(TS)).unwrap_err();
        assert_eq!(err.code(), "no_encrypt_key");
        let err = parse_webhook(&none, &wrapped, &config(Some("wrong"), None), at(TS)).unwrap_err();
        assert_eq!(err.code(), "decrypt_failed");
    }

    #[test]
    fn plain_event_token_is_checked() {
        let none = WebhookHeaders::default();
        let body = event("vt");
        assert!(parse_webhook(&none, &body, &config(None, Some("vt")), at(TS)).is_ok());
        let err = parse_webhook(&none, &body, &config(None, Some("vx")), at(TS)).unwrap_err();
        assert_eq!(err.code(), "bad_token");
        let err = parse_webhook(&none, b"[]", &config(None, None), at(TS)).unwrap_err();
        assert_eq!(err.code(), "bad_json");
        let err = parse_webhook(&none, br#"{"hello":1}"#, &config(None, None), at(TS)).unwrap_err();
        assert_eq!(err.code(), "bad_envelope");
    }

    #[test]
    fn headers_are_read_case_insensitively() {
        let h = WebhookHeaders::from_pairs([
            ("x-lark-request-timestamp", "1"),
            ("X-LARK-REQUEST-NONCE", "n"),
            ("X-Lark-Signature", " s "),
            ("content-type", "application/json"),
        ]);
        assert_eq!(
            h,
            WebhookHeaders {
                timestamp: Some("1".into()),
                nonce: Some("n".into()),
                signature: Some("s".into())
            }
        );
        assert!(!format!("{:?}", config(Some(KEY), Some("vt"))).contains("test key"));
    }

    proptest! {
        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300), ts in any::<u64>()) {
            let headers = WebhookHeaders { timestamp: Some(ts.to_string()), nonce: Some("n".into()), signature: Some("00".into()) };
            let _ = parse_webhook(&headers, &body, &config(Some(KEY), Some("t")), at(TS));
            let _ = parse_webhook(&WebhookHeaders::default(), &body, &config(None, None), at(TS));
        }

        #[test]
        fn random_encrypt_strings_never_panic(s in ".{0,120}", b64 in "[A-Za-z0-9+/]{0,120}={0,2}") {
            for encrypted in [s, b64] {
                let _ = decrypt(KEY, &encrypted);
                let body = serde_json::to_vec(&json!({"encrypt": encrypted})).unwrap();
                let _ = parse_webhook(&WebhookHeaders::default(), &body, &config(Some(KEY), None), at(TS));
            }
        }

        #[test]
        fn encrypt_decrypt_round_trips(key in ".{0,20}", plain in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(decrypt(&key, &encrypt(&key, &plain)).unwrap(), plain);
        }
    }
}
