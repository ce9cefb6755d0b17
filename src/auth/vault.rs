//! Token vault: AES-256-GCM encryption of tokens at rest, with key rotation.
//!
//! A value is sealed as `v2:<key id>:<base64(nonce || ciphertext+tag)>`:
//! a fresh random 96-bit nonce per value, the key id being the first 4
//! bytes of SHA-256 of the key, in hex (it names the key without revealing
//! it). The associated data is the value's [`Slot`],
//! `"<table>.<column>:<row key>"`, so a ciphertext copied into another row
//! or column fails to open instead of handing one user another's token.
//!
//! `ENCRYPTION_KEY` seals; the keys of `ENCRYPTION_KEY_PREVIOUS` only open,
//! so a rotation never makes stored values unreadable, and
//! `lark-service rekey` moves them to the current key. Values written
//! before key ids (`v1:…`, no associated data) still open with any
//! configured key, read-only: they are resealed by the next store or by
//! `rekey`.
//!
//! A value that no configured key opens is [`Unreadable`]: its key is
//! unknown, or it is damaged. GCM authenticates, so it is an error, never
//! garbage plaintext; callers turn it into a session that must be
//! authorized again rather than retrying forever.

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::metrics::VAULT_UNREADABLE;

const PREFIX: &str = "v2:";
/// Values from before key ids and associated data.
const LEGACY_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_ID_LEN: usize = 4;

/// A 256-bit key, parsed from the 64 hex characters of `ENCRYPTION_KEY`.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey([u8; 32]);

/// Why a key or a ciphertext was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("must be 64 hex characters (32 bytes), e.g. from `openssl rand -hex 32`; got {0}")]
    BadKey(String),
    #[error("stored token is not in the vault's format")]
    Malformed,
    #[error("stored token is sealed with key {0}, which is neither ENCRYPTION_KEY nor one of ENCRYPTION_KEY_PREVIOUS")]
    UnknownKey(KeyId),
    #[error("stored token (written before key ids) opens with neither ENCRYPTION_KEY nor any of ENCRYPTION_KEY_PREVIOUS")]
    LegacyUnknownKey,
    #[error("stored token does not open with its key: it was altered, or copied from another row or column")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
}

/// A stored value that cannot be opened, as its session records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Sealed with a key this process was not given.
    UnknownKey,
    /// Not a vault value, altered, or moved from another slot.
    Damaged,
}

impl Unreadable {
    /// The reason a session records when it moves to `reauth_required`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::UnknownKey => "encryption key unknown",
            Self::Damaged => "stored token is damaged",
        }
    }

    /// The `reason` label of `lark_vault_unreadable_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::UnknownKey => "unknown_key",
            Self::Damaged => "damaged",
        }
    }

    /// Count one unreadable value in `lark_vault_unreadable_total{reason}`.
    pub fn record(self) {
        metrics::counter!(VAULT_UNREADABLE, "reason" => self.label()).increment(1);
    }
}

impl VaultError {
    /// Whether this is a stored value no configured key opens (as opposed
    /// to a bad key in configuration or a failure to seal).
    pub fn unreadable(&self) -> Option<Unreadable> {
        match self {
            Self::UnknownKey(_) | Self::LegacyUnknownKey => Some(Unreadable::UnknownKey),
            Self::Malformed | Self::Decrypt => Some(Unreadable::Damaged),
            Self::BadKey(_) | Self::Encrypt => None,
        }
    }

    /// What a session records: the reason, then the detail.
    pub fn session_reason(&self) -> String {
        match self.unreadable() {
            Some(u) => format!("{}: {self}", u.reason()),
            None => self.to_string(),
        }
    }
}

impl EncryptionKey {
    pub fn from_hex(hex_str: &str) -> Result<Self, VaultError> {
        let s = hex_str.trim();
        if s.len() != 64 {
            return Err(VaultError::BadKey(format!("{} characters", s.len())));
        }
        let bytes = hex::decode(s).map_err(|_| VaultError::BadKey("non-hex characters".into()))?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        Ok(Self(key))
    }

    /// The key as 64 hex characters, the form `ENCRYPTION_KEY` takes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A fresh random key, for `demo` and tests.
    pub fn generate() -> Self {
        let key = Aes256Gcm::generate_key(OsRng);
        Self(key.into())
    }

    /// The id that sealed values carry.
    pub fn id(&self) -> KeyId {
        let digest = Sha256::digest(self.0);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        KeyId(id)
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(***)")
    }
}

/// Names a key in sealed values: the first 4 bytes of SHA-256 of the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    fn parse(s: &str) -> Option<Self> {
        let bytes = hex::decode(s).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Every column that holds a sealed value. A new sealed column is a new
/// variant here (its name is part of the associated data, so it must never
/// change once values are stored) and, for `rekey`, a line in
/// `db::models::sealed_value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealedColumn {
    UserAccessToken,
    UserRefreshToken,
    DeviceAccessToken,
    DeviceRefreshToken,
    /// A pending redirect session's PKCE code verifier.
    PkceVerifier,
}

impl SealedColumn {
    pub const ALL: [Self; 5] = [
        Self::UserAccessToken,
        Self::UserRefreshToken,
        Self::DeviceAccessToken,
        Self::DeviceRefreshToken,
        Self::PkceVerifier,
    ];

    /// `<table>.<column>`, as in the schema.
    pub fn name(self) -> &'static str {
        match self {
            Self::UserAccessToken => "user_auth_sessions.access_token_enc",
            Self::UserRefreshToken => "user_auth_sessions.refresh_token_enc",
            Self::DeviceAccessToken => "device_tokens.access_token_enc",
            Self::DeviceRefreshToken => "device_tokens.refresh_token_enc",
            Self::PkceVerifier => "user_auth_sessions.pkce_verifier_enc",
        }
    }

    /// The table part of [`SealedColumn::name`].
    pub fn table(self) -> &'static str {
        let name = self.name();
        name.split_once('.').map_or(name, |(table, _)| table)
    }
}

impl fmt::Display for SealedColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a sealed value lives: its column and its row's stable key (a
/// session's `session_id`, a device token's `profile`). Bound into the
/// ciphertext as associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot<'a> {
    column: SealedColumn,
    row: &'a str,
}

impl<'a> Slot<'a> {
    pub fn new(column: SealedColumn, row: &'a str) -> Self {
        Self { column, row }
    }

    fn associated_data(&self) -> Vec<u8> {
        format!("{}:{}", self.column.name(), self.row).into_bytes()
    }
}

impl fmt::Display for Slot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.column.name(), self.row)
    }
}

struct KeyedCipher {
    id: KeyId,
    cipher: Aes256Gcm,
}

impl KeyedCipher {
    fn new(key: &EncryptionKey) -> Self {
        Self {
            id: key.id(),
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key.0)),
        }
    }

    fn decrypt(&self, blob: &[u8], aad: &[u8]) -> Option<String> {
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let pt = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .ok()?;
        String::from_utf8(pt).ok()
    }
}

/// Encrypts and decrypts token strings. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    /// Seals, and opens its own values.
    current: Arc<KeyedCipher>,
    /// Only open (`ENCRYPTION_KEY_PREVIOUS`).
    previous: Arc<[KeyedCipher]>,
}

impl Vault {
    /// A vault that seals and opens with `key` alone.
    pub fn new(key: &EncryptionKey) -> Self {
        Self::with_previous(key, &[])
    }

    /// A vault that seals with `current` and also opens values sealed with
    /// any of `previous`.
    pub fn with_previous(current: &EncryptionKey, previous: &[EncryptionKey]) -> Self {
        Self {
            current: Arc::new(KeyedCipher::new(current)),
            previous: previous
                .iter()
                .filter(|k| *k != current)
                .map(KeyedCipher::new)
                .collect(),
        }
    }

    /// The id of the key that seals.
    pub fn current_key(&self) -> KeyId {
        self.current.id
    }

    fn keys(&self) -> impl Iterator<Item = &KeyedCipher> {
        std::iter::once(&*self.current).chain(self.previous.iter())
    }

    /// Encrypt `plaintext` for `slot` under the current key and a fresh nonce.
    pub fn seal(&self, slot: Slot<'_>, plaintext: &str) -> Result<String, VaultError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = slot.associated_data();
        let ct = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Encrypt)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ct.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        Ok(format!("{PREFIX}{}:{}", self.current.id, B64.encode(blob)))
    }

    /// Decrypt a value stored in `slot`, whichever configured key sealed it.
    pub fn open(&self, slot: Slot<'_>, sealed: &str) -> Result<String, VaultError> {
        match parse(sealed)? {
            Parsed::Keyed { key_id, blob } => {
                let aad = slot.associated_data();
                let mut known = false;
                // Two configured keys may share an id (4 bytes): try each.
                for key in self.keys().filter(|k| k.id == key_id) {
                    known = true;
                    if let Some(pt) = key.decrypt(&blob, &aad) {
                        return Ok(pt);
                    }
                }
                Err(if known {
                    VaultError::Decrypt
                } else {
                    VaultError::UnknownKey(key_id)
                })
            }
            // No key id to tell a wrong key from damage: any configured key
            // may have sealed it, and a miss most likely means the key changed.
            Parsed::Legacy { blob } => self
                .keys()
                .find_map(|k| k.decrypt(&blob, &[]))
                .ok_or(VaultError::LegacyUnknownKey),
        }
    }

    /// Whether `sealed` is under the current key in today's format; a value
    /// that is not wants resealing (`rekey`). Looks at the prefix only.
    pub fn is_current(&self, sealed: &str) -> bool {
        matches!(parse(sealed), Ok(Parsed::Keyed { key_id, .. }) if key_id == self.current.id)
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

enum Parsed {
    Keyed { key_id: KeyId, blob: Vec<u8> },
    Legacy { blob: Vec<u8> },
}

fn parse(sealed: &str) -> Result<Parsed, VaultError> {
    let decode = |b64: &str| {
        let blob = B64.decode(b64).map_err(|_| VaultError::Malformed)?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(VaultError::Malformed);
        }
        Ok(blob)
    };
    if let Some(rest) = sealed.strip_prefix(PREFIX) {
        let (id, b64) = rest.split_once(':').ok_or(VaultError::Malformed)?;
        let key_id = KeyId::parse(id).ok_or(VaultError::Malformed)?;
        return Ok(Parsed::Keyed {
            key_id,
            blob: decode(b64)?,
        });
    }
    let b64 = sealed
        .strip_prefix(LEGACY_PREFIX)
        .ok_or(VaultError::Malformed)?;
    Ok(Parsed::Legacy { blob: decode(b64)? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SESSION: &str = "5f0c2d9e-1111-4222-8333-944445555666";

    fn slot() -> Slot<'static> {
        Slot::new(SealedColumn::UserAccessToken, SESSION)
    }

    fn vault() -> Vault {
        Vault::new(&EncryptionKey::generate())
    }

    /// A value in the format written before key ids, as that code sealed it.
    fn legacy_seal(key: &EncryptionKey, plaintext: &str) -> String {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key.0));
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = cipher.encrypt(&nonce, plaintext.as_bytes()).unwrap();
        format!(
            "{LEGACY_PREFIX}{}",
            B64.encode([nonce.as_slice(), &ct].concat())
        )
    }

    #[test]
    fn round_trips_with_the_key_id_in_front() {
        let key = EncryptionKey::generate();
        let v = Vault::new(&key);
        let sealed = v.seal(slot(), "u-7dCz4Tabcdefghijklmnop").unwrap();
        assert!(!sealed.contains("u-7dCz4T"));
        assert!(sealed.starts_with(&format!("v2:{}:", key.id())), "{sealed}");
        assert_eq!(key.id().to_string().len(), 8);
        assert_eq!(v.open(slot(), &sealed).unwrap(), "u-7dCz4Tabcdefghijklmnop");
        assert!(v.is_current(&sealed));
    }

    #[test]
    fn key_id_is_the_start_of_the_keys_sha256() {
        let key = EncryptionKey::from_hex(&"00".repeat(32)).unwrap();
        // SHA-256 of 32 zero bytes begins 66687aad.
        assert_eq!(key.id().to_string(), "66687aad");
    }

    #[test]
    fn nonces_are_fresh_per_value() {
        let v = vault();
        assert_ne!(
            v.seal(slot(), "same").unwrap(),
            v.seal(slot(), "same").unwrap()
        );
    }

    #[test]
    fn a_swapped_ciphertext_fails_to_open() {
        let v = vault();
        let other_row = "0c7f7d38-aaaa-4bbb-8ccc-9ddddeeeefff";
        let sealed = v.seal(slot(), "alice-token").unwrap();
        // Another user's row, same column.
        let swapped_row = Slot::new(SealedColumn::UserAccessToken, other_row);
        assert_eq!(v.open(swapped_row, &sealed), Err(VaultError::Decrypt));
        // The same row, the other column.
        let swapped_col = Slot::new(SealedColumn::UserRefreshToken, SESSION);
        assert_eq!(v.open(swapped_col, &sealed), Err(VaultError::Decrypt));
        // Another table whose row key happens to match.
        let swapped_table = Slot::new(SealedColumn::DeviceAccessToken, SESSION);
        assert_eq!(v.open(swapped_table, &sealed), Err(VaultError::Decrypt));
        assert_eq!(VaultError::Decrypt.unreadable(), Some(Unreadable::Damaged));
    }

    #[test]
    fn previous_keys_open_but_never_seal() {
        let (old, new) = (EncryptionKey::generate(), EncryptionKey::generate());
        let sealed_old = Vault::new(&old).seal(slot(), "tok").unwrap();
        let rotating = Vault::with_previous(&new, std::slice::from_ref(&old));
        assert_eq!(rotating.open(slot(), &sealed_old).unwrap(), "tok");
        assert!(!rotating.is_current(&sealed_old));
        let resealed = rotating.seal(slot(), "tok").unwrap();
        assert!(resealed.starts_with(&format!("v2:{}:", new.id())));
        assert!(rotating.is_current(&resealed));
        // The new key alone opens the resealed value, not the old one.
        let new_only = Vault::new(&new);
        assert_eq!(new_only.open(slot(), &resealed).unwrap(), "tok");
        assert_eq!(
            new_only.open(slot(), &sealed_old),
            Err(VaultError::UnknownKey(old.id()))
        );
    }

    #[test]
    fn an_unknown_key_is_its_own_outcome() {
        let sealed = vault().seal(slot(), "secret").unwrap();
        let err = vault().open(slot(), &sealed).unwrap_err();
        assert!(matches!(err, VaultError::UnknownKey(_)), "{err:?}");
        assert_eq!(err.unreadable(), Some(Unreadable::UnknownKey));
        assert!(err.session_reason().starts_with("encryption key unknown: "));
    }

    #[test]
    fn legacy_values_open_with_any_configured_key() {
        let (old, new) = (EncryptionKey::generate(), EncryptionKey::generate());
        let legacy = legacy_seal(&old, "legacy-token");
        assert_eq!(
            Vault::new(&old).open(slot(), &legacy).unwrap(),
            "legacy-token"
        );
        let rotating = Vault::with_previous(&new, std::slice::from_ref(&old));
        assert_eq!(rotating.open(slot(), &legacy).unwrap(), "legacy-token");
        assert!(!rotating.is_current(&legacy));
        assert_eq!(
            Vault::new(&new).open(slot(), &legacy),
            Err(VaultError::LegacyUnknownKey)
        );
        assert_eq!(
            VaultError::LegacyUnknownKey.unreadable(),
            Some(Unreadable::UnknownKey)
        );
    }

    #[test]
    fn tampering_is_an_error() {
        let v = vault();
        let sealed = v.seal(slot(), "secret-token-value").unwrap();
        let (head, b64) = sealed.rsplit_once(':').unwrap();
        let mut blob = B64.decode(b64).unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 0x01;
        let tampered = format!("{head}:{}", B64.encode(&blob));
        assert_eq!(v.open(slot(), &tampered), Err(VaultError::Decrypt));
        for bad in ["v2:short", "v2:zzzzzzzz:AAAA", "v1:short", "plaintext", ""] {
            assert_eq!(v.open(slot(), bad), Err(VaultError::Malformed), "{bad}");
        }
        assert_eq!(
            VaultError::Malformed.session_reason(),
            "stored token is damaged: stored token is not in the vault's format"
        );
    }

    #[test]
    fn keys_must_be_64_hex_chars() {
        assert!(EncryptionKey::from_hex(&"ab".repeat(32)).is_ok());
        assert!(matches!(
            EncryptionKey::from_hex("abcd"),
            Err(VaultError::BadKey(_))
        ));
        assert!(matches!(
            EncryptionKey::from_hex(&"zz".repeat(32)),
            Err(VaultError::BadKey(_))
        ));
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let key = EncryptionKey::from_hex(&"00".repeat(32)).unwrap();
        let shown = format!("{:?}", Vault::new(&key));
        assert_eq!(shown, "Vault { current: KeyId(66687aad), previous: [] }");
    }

    proptest! {
        #[test]
        fn any_string_round_trips(s in ".*", row in "[a-z0-9-]{0,40}") {
            let v = vault();
            let slot = Slot::new(SealedColumn::DeviceRefreshToken, &row);
            prop_assert_eq!(v.open(slot, &v.seal(slot, &s).unwrap()).unwrap(), s);
        }

        #[test]
        fn any_input_to_open_is_handled(s in ".*") {
            let _ = vault().open(slot(), &s);
        }
    }
}
