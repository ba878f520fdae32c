//! Passphrase encryption of secret key files.
//!
//! An encrypted key file is JSON. It keeps the key id and public key in
//! clear, so keys can be identified and their public half exported without
//! the passphrase. The plain key file is sealed with XChaCha20-Poly1305
//! under a key that Argon2id derives from the passphrase.
//! The key id, public key and KDF parameters are bound as associated data,
//! so editing any of them makes decryption fail.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use patchmesh_protocol::{KeyId, PublicKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Value of the `format` field that marks an encrypted key file.
pub const FORMAT: &str = "patchmesh-encrypted-key-v1";

/// Argon2id memory cost in KiB for new files: 19 MiB with 2 passes is the
/// OWASP password storage cheat sheet's minimum for Argon2id.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

/// Largest KDF cost accepted when reading, so a crafted file cannot make the
/// signer allocate or compute without bound.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;
const MAX_ITERATIONS: u32 = 64;
const MAX_PARALLELISM: u32 = 16;

/// On-disk form of an encrypted key file.
#[derive(Serialize, Deserialize)]
pub struct EncryptedKeyFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// Key id of the sealed key.
    pub key_id: KeyId,
    /// Public half of the sealed key.
    pub public_key: PublicKey,
    /// Argon2id parameters and salt.
    pub kdf: Kdf,
    /// Hex of the 24-byte XChaCha20 nonce.
    pub nonce: String,
    /// Hex of the sealed plain key file and its 16-byte tag.
    pub ciphertext: String,
}

/// Argon2id parameters of an encrypted key file.
#[derive(Serialize, Deserialize)]
pub struct Kdf {
    /// Always "argon2id".
    pub algorithm: String,
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism.
    pub parallelism: u32,
    /// Hex of the 16-byte random salt.
    pub salt: String,
}

/// Error for an encrypted key file that cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file is not the encrypted key format.
    #[error("malformed encrypted key file: {0}")]
    Malformed(String),
    /// The stored KDF parameters are unsupported or too costly.
    #[error("unsupported key derivation parameters: {0}")]
    Kdf(String),
    /// Decryption failed: a wrong passphrase or a damaged file.
    #[error("wrong passphrase, or the key file was damaged (decryption failed)")]
    Decrypt,
}

/// Checks whether `bytes` are an encrypted key file.
pub fn is_encrypted(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        format: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes)
        .ok()
        .and_then(|probe| probe.format)
        .is_some_and(|format| format == FORMAT)
}

/// Seals the plain key file `plain` of `public` under `passphrase`.
pub fn encrypt(plain: &[u8], public: PublicKey, passphrase: &[u8]) -> Vec<u8> {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let kdf = Kdf {
        algorithm: "argon2id".into(),
        memory_kib: MEMORY_KIB,
        iterations: ITERATIONS,
        parallelism: PARALLELISM,
        salt: hex::encode(salt),
    };

    let key = derive_key(passphrase, &kdf, &salt).expect("the built-in KDF parameters are valid");
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let aad = associated_data(public, &kdf);
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .expect("XChaCha20-Poly1305 encrypts any message below 256 GiB");

    let file = EncryptedKeyFile {
        format: FORMAT.into(),
        key_id: public.id(),
        public_key: public,
        kdf,
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ciphertext),
    };
    let mut out = serde_json::to_vec_pretty(&file).expect("an encrypted key file serializes");
    out.push(b'\n');
    out
}

/// Parses the clear part of an encrypted key file.
pub fn parse(bytes: &[u8]) -> Result<EncryptedKeyFile, KeyFileError> {
    let file: EncryptedKeyFile =
        serde_json::from_slice(bytes).map_err(|e| KeyFileError::Malformed(e.to_string()))?;
    if file.format != FORMAT {
        return Err(KeyFileError::Malformed(format!(
            "format \"{}\" (expected \"{FORMAT}\")",
            file.format
        )));
    }
    if file.public_key.id() != file.key_id {
        return Err(KeyFileError::Malformed(
            "key id does not match the public key".into(),
        ));
    }
    Ok(file)
}

/// Opens an encrypted key file and returns the plain key file bytes.
pub fn decrypt(bytes: &[u8], passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let file = parse(bytes)?;
    let kdf = &file.kdf;
    if kdf.algorithm != "argon2id" {
        return Err(KeyFileError::Kdf(format!(
            "algorithm \"{}\" (expected \"argon2id\")",
            kdf.algorithm
        )));
    }
    if kdf.memory_kib > MAX_MEMORY_KIB
        || kdf.iterations > MAX_ITERATIONS
        || kdf.parallelism > MAX_PARALLELISM
    {
        return Err(KeyFileError::Kdf(format!(
            "memory {} KiB, {} passes, parallelism {} (at most {MAX_MEMORY_KIB} KiB, \
             {MAX_ITERATIONS} passes, parallelism {MAX_PARALLELISM})",
            kdf.memory_kib, kdf.iterations, kdf.parallelism
        )));
    }
    let salt =
        hex::decode(&kdf.salt).map_err(|_| KeyFileError::Malformed("salt is not hex".into()))?;
    let nonce: [u8; 24] = hex::decode(&file.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| KeyFileError::Malformed("nonce is not 48 hex digits".into()))?;
    let ciphertext = hex::decode(&file.ciphertext)
        .map_err(|_| KeyFileError::Malformed("ciphertext is not hex".into()))?;

    let key = derive_key(passphrase, kdf, &salt)?;
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let aad = associated_data(file.public_key, kdf);
    let plain = cipher
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| KeyFileError::Decrypt)?;
    Ok(Zeroizing::new(plain))
}

fn derive_key(
    passphrase: &[u8],
    kdf: &Kdf,
    salt: &[u8],
) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    let params = Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| KeyFileError::Kdf(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, salt, key.as_mut())
        .map_err(|e| KeyFileError::Kdf(e.to_string()))?;
    Ok(key)
}

/// Bytes bound to the ciphertext: format, public key and KDF parameters.
fn associated_data(public: PublicKey, kdf: &Kdf) -> Vec<u8> {
    format!(
        "{FORMAT}\0{}\0{}\0{}\0{}\0{}\0{}",
        public.0, kdf.algorithm, kdf.memory_kib, kdf.iterations, kdf.parallelism, kdf.salt
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchmesh_protocol::SecretKey;

    #[test]
    fn round_trip_with_right_passphrase() {
        let key = SecretKey::generate();
        let plain = key.to_file_bytes();
        let sealed = encrypt(&plain, key.public(), b"correct horse");
        assert!(is_encrypted(&sealed));
        let opened = decrypt(&sealed, b"correct horse").expect("opens");
        assert_eq!(opened.as_slice(), plain.as_slice());
    }

    #[test]
    fn wrong_passphrase_fails() {
        let key = SecretKey::generate();
        let sealed = encrypt(&key.to_file_bytes(), key.public(), b"right");
        assert!(matches!(
            decrypt(&sealed, b"wrong"),
            Err(KeyFileError::Decrypt)
        ));
    }

    #[test]
    fn sealed_file_hides_secret() {
        let key = SecretKey::from_seed([9; 32]);
        let sealed = encrypt(&key.to_file_bytes(), key.public(), b"pass");
        let text = String::from_utf8(sealed).expect("json");
        assert!(!text.contains(&hex::encode([9u8; 32])));
    }

    #[test]
    fn oversized_kdf_cost_is_rejected() {
        let key = SecretKey::generate();
        let sealed = encrypt(&key.to_file_bytes(), key.public(), b"pass");
        let mut file = parse(&sealed).expect("parses");
        file.kdf.memory_kib = MAX_MEMORY_KIB + 1;
        let edited = serde_json::to_vec(&file).expect("serializes");
        assert!(matches!(
            decrypt(&edited, b"pass"),
            Err(KeyFileError::Kdf(_))
        ));
    }

    #[test]
    fn plain_key_file_is_not_encrypted() {
        let key = SecretKey::generate();
        assert!(!is_encrypted(&key.to_file_bytes()));
    }
}
