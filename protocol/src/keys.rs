//! Admin signing keys: generation, key ids, key files and signatures.
//!
//! A key id is the BLAKE3 hash of the ed25519 public key bytes, so it cannot
//! be chosen independently of the key it names.

use std::fmt;

use ed25519_dalek::Signer;
use serde::{Deserialize, Serialize};

use crate::hash::Hash;

/// Identifier of an admin key: BLAKE3 of its 32 public key bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub Hash);

impl KeyId {
    /// First 12 hex characters, for logs and tables.
    pub fn short(&self) -> String {
        self.0.short()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.short())
    }
}

/// An ed25519 public key of an admin.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PublicKey(pub Hash);

impl PublicKey {
    /// Key id of this public key.
    pub fn id(&self) -> KeyId {
        KeyId(Hash::of(&self.0 .0))
    }

    /// Verifies `signature` over `message`; false for a malformed key.
    pub fn verify(&self, message: &[u8], signature: &SignatureBytes) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.0 .0) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id().short())
    }
}

/// A 64-byte ed25519 signature, hex in human-readable formats.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignatureBytes(pub [u8; 64]);

impl Serialize for SignatureBytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for SignatureBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let bytes: Vec<u8> = if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            hex::decode(&text).map_err(D::Error::custom)?
        } else {
            serde_bytes_vec(deserializer)?
        };
        let array: [u8; 64] = bytes.try_into().map_err(|v: Vec<u8>| {
            D::Error::custom(format!("signature of {} bytes (expected 64)", v.len()))
        })?;
        Ok(SignatureBytes(array))
    }
}

fn serde_bytes_vec<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    struct BytesVisitor;
    impl<'de> serde::de::Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
    }
    deserializer.deserialize_bytes(BytesVisitor)
}

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..6]))
    }
}

/// An admin's secret signing key. Its `Debug` form never shows the secret.
pub struct SecretKey {
    inner: ed25519_dalek::SigningKey,
}

/// On-disk form of a secret key file (JSON).
#[derive(Serialize, Deserialize)]
struct KeyFile {
    /// Always "ed25519".
    algorithm: String,
    /// Hex of the 32 secret seed bytes.
    secret: String,
    /// Key id, so a reader can tell keys apart without loading them.
    key_id: KeyId,
}

/// Error for a secret key file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file is not the JSON key format.
    #[error("malformed key file: {0} (expected a file written by `patchmesh-signer keygen`)")]
    Malformed(String),
    /// The algorithm field names something other than ed25519.
    #[error("unsupported key algorithm {0:?} (expected \"ed25519\")")]
    Algorithm(String),
    /// The stored key id does not match the secret.
    #[error("key file names key id {stored} but its secret belongs to {actual}; the file was edited or damaged")]
    IdMismatch {
        /// Key id written in the file.
        stored: KeyId,
        /// Key id derived from the secret.
        actual: KeyId,
    },
}

impl SecretKey {
    /// Generates a fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        Self::from_seed(seed)
    }

    /// Builds a key from 32 seed bytes.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey {
            inner: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// Public half of this key.
    pub fn public(&self) -> PublicKey {
        PublicKey(Hash(self.inner.verifying_key().to_bytes()))
    }

    /// Key id of the public half.
    pub fn id(&self) -> KeyId {
        self.public().id()
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> SignatureBytes {
        SignatureBytes(self.inner.sign(message).to_bytes())
    }

    /// Serializes the key to the JSON key file format.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let file = KeyFile {
            algorithm: "ed25519".into(),
            secret: hex::encode(self.inner.to_bytes()),
            key_id: self.id(),
        };
        let mut out = serde_json::to_vec_pretty(&file).expect("a key file always serializes");
        out.push(b'\n');
        out
    }

    /// Parses a key file written by [`SecretKey::to_file_bytes`].
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Self, KeyFileError> {
        let file: KeyFile =
            serde_json::from_slice(bytes).map_err(|e| KeyFileError::Malformed(e.to_string()))?;
        if file.algorithm != "ed25519" {
            return Err(KeyFileError::Algorithm(file.algorithm));
        }
        let mut seed = [0u8; 32];
        hex::decode_to_slice(file.secret.trim(), &mut seed)
            .map_err(|_| KeyFileError::Malformed("secret is not 64 hex digits".into()))?;
        let key = Self::from_seed(seed);
        if key.id() != file.key_id {
            return Err(KeyFileError::IdMismatch {
                stored: file.key_id,
                actual: key.id(),
            });
        }
        Ok(key)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}, secret hidden)", self.id().short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip() {
        let key = SecretKey::generate();
        let loaded = SecretKey::from_file_bytes(&key.to_file_bytes()).expect("loads");
        assert_eq!(loaded.id(), key.id());
    }

    #[test]
    fn key_file_with_wrong_id_is_rejected() {
        let key = SecretKey::generate();
        let other = SecretKey::generate();
        let text = String::from_utf8(key.to_file_bytes()).unwrap();
        let edited = text.replace(&key.id().to_string(), &other.id().to_string());
        let Err(err) = SecretKey::from_file_bytes(edited.as_bytes()) else {
            panic!("a key file with another key id must be rejected");
        };
        assert!(matches!(err, KeyFileError::IdMismatch { .. }), "{err}");
    }

    #[test]
    fn debug_hides_secret() {
        let key = SecretKey::from_seed([7; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains(&hex::encode([7u8; 32])), "{shown}");
    }

    #[test]
    fn signature_verifies_only_its_message() {
        let key = SecretKey::generate();
        let signature = key.sign(b"a");
        assert!(key.public().verify(b"a", &signature));
        assert!(!key.public().verify(b"b", &signature));
    }
}
