//! Token vault: AES-256-GCM encryption of tokens at rest.
//!
//! Each value gets a fresh random 96-bit nonce, stored in front of the
//! ciphertext and base64-encoded as `v1:<base64(nonce || ciphertext+tag)>`.
//! The version prefix leaves room for key rotation. GCM authenticates, so a
//! wrong key or a flipped bit is an error, never garbage plaintext.

use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

/// A 256-bit key, parsed from the 64 hex characters of `ENCRYPTION_KEY`.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey([u8; 32]);

/// Why a key or a ciphertext was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("must be 64 hex characters (32 bytes), e.g. from `openssl rand -hex 32`; got {0}")]
    BadKey(String),
    #[error("stored token is not in the vault's format")]
    Malformed,
    #[error("stored token does not decrypt with this ENCRYPTION_KEY (wrong key or tampered data)")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
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
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(***)")
    }
}

/// Encrypts and decrypts token strings. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    cipher: Aes256Gcm,
}

impl Vault {
    pub fn new(key: &EncryptionKey) -> Self {
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key.0)),
        }
    }

    /// Encrypt `plaintext` under a fresh nonce.
    pub fn seal(&self, plaintext: &str) -> Result<String, VaultError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self
            .cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .map_err(|_| VaultError::Encrypt)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ct.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        Ok(format!("{PREFIX}{}", B64.encode(blob)))
    }

    /// Decrypt a value produced by [`Vault::seal`].
    pub fn open(&self, sealed: &str) -> Result<String, VaultError> {
        let b64 = sealed.strip_prefix(PREFIX).ok_or(VaultError::Malformed)?;
        let blob = B64.decode(b64).map_err(|_| VaultError::Malformed)?;
        if blob.len() < NONCE_LEN + 16 {
            return Err(VaultError::Malformed);
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let pt = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| VaultError::Decrypt)?;
        String::from_utf8(pt).map_err(|_| VaultError::Decrypt)
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vault")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vault() -> Vault {
        Vault::new(&EncryptionKey::generate())
    }

    #[test]
    fn round_trips() {
        let v = vault();
        let sealed = v.seal("u-7dCz4Tabcdefghijklmnop").unwrap();
        assert!(!sealed.contains("u-7dCz4T"));
        assert_eq!(v.open(&sealed).unwrap(), "u-7dCz4Tabcdefghijklmnop");
    }

    #[test]
    fn nonces_are_fresh_per_value() {
        let v = vault();
        assert_ne!(v.seal("same").unwrap(), v.seal("same").unwrap());
    }

    #[test]
    fn wrong_key_is_an_error() {
        let sealed = vault().seal("secret").unwrap();
        assert_eq!(vault().open(&sealed), Err(VaultError::Decrypt));
    }

    #[test]
    fn tampering_is_an_error() {
        let v = vault();
        let sealed = v.seal("secret-token-value").unwrap();
        let mut blob = B64.decode(&sealed[PREFIX.len()..]).unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 0x01;
        let tampered = format!("{PREFIX}{}", B64.encode(&blob));
        assert_eq!(v.open(&tampered), Err(VaultError::Decrypt));
        assert_eq!(v.open("v1:short"), Err(VaultError::Malformed));
        assert_eq!(v.open("plaintext"), Err(VaultError::Malformed));
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

    proptest! {
        #[test]
        fn any_string_round_trips(s in ".*") {
            let v = vault();
            prop_assert_eq!(v.open(&v.seal(&s).unwrap()).unwrap(), s);
        }

        #[test]
        fn any_input_to_open_is_handled(s in ".*") {
            let _ = vault().open(&s);
        }
    }
}
