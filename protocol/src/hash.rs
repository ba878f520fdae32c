//! BLAKE3 digests used as content addresses for chunks, payloads and signed
//! objects.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 32-byte BLAKE3 digest.
///
/// It serializes as lowercase hex in human-readable formats (JSON, TOML) and
/// as 32 raw bytes in binary ones (postcard).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// Hashes `bytes` with BLAKE3.
    pub fn of(bytes: &[u8]) -> Self {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    /// Full lowercase hex form, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// First 12 hex characters, for logs and tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl From<blake3::Hash> for Hash {
    fn from(hash: blake3::Hash) -> Self {
        Hash(*hash.as_bytes())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.short())
    }
}

/// Error for a hash written as text that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("invalid BLAKE3 hash {value:?} (expected 64 hex digits)")]
pub struct ParseHashError {
    /// The rejected text.
    pub value: String,
}

impl FromStr for Hash {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseHashError {
            value: s.to_string(),
        })?;
        Ok(Hash(out))
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Hash)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let hash = Hash::of(b"patch");
        let parsed: Hash = hash.to_hex().parse().expect("own hex parses");
        assert_eq!(parsed, hash);
    }

    #[test]
    fn rejects_short_hex() {
        let err = "abcd".parse::<Hash>().unwrap_err();
        assert!(err.to_string().contains("\"abcd\""), "{err}");
    }

    #[test]
    fn binary_form_is_raw_bytes() {
        let hash = Hash::of(b"x");
        let bytes = postcard::to_allocvec(&hash).expect("encodes");
        assert_eq!(bytes.len(), 32);
    }
}
