//! Admin keys: `keygen`, `key public`, `key id`, and the loaders every
//! command uses to read secret and public keys.
//!
//! Secret keys are never printed or logged; only key ids and public keys
//! leave this module. A public key may be given as a public key file, a
//! secret key file (its public half is used) or 64 hex digits.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use patchmesh_protocol::{Hash, KeyId, PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use crate::{files, keyfile, Context};

/// Arguments of `keygen`.
#[derive(Args)]
pub struct KeygenArgs {
    /// Path of the new key file, created with mode 0600; never overwritten.
    #[arg(long)]
    out: PathBuf,
}

/// `key` subcommands.
#[derive(Subcommand)]
pub enum KeyCommand {
    /// Write the public half of a key, to share with other admins.
    Public {
        /// Secret or public key file.
        #[arg(long)]
        key: PathBuf,
        /// Public key file to write; standard output when left out.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
    },
    /// Print the key id of a key file.
    Id {
        /// Secret or public key file.
        #[arg(long)]
        key: PathBuf,
    },
}

/// On-disk form of a public key file (JSON).
#[derive(Serialize, Deserialize)]
struct PublicKeyFile {
    /// Always "ed25519".
    algorithm: String,
    /// The public key, hex.
    public_key: PublicKey,
    /// Its key id, checked on reading.
    key_id: KeyId,
}

/// Runs `keygen`.
pub fn keygen(context: &Context, args: KeygenArgs) -> anyhow::Result<()> {
    let key = SecretKey::generate();
    let plain = Zeroizing::new(key.to_file_bytes());
    let encrypted = context.passphrase_env.is_some();
    let bytes = match &context.passphrase_env {
        Some(var) => {
            let passphrase = read_passphrase(var)?;
            Zeroizing::new(keyfile::encrypt(&plain, key.public(), &passphrase))
        }
        None => plain,
    };
    files::write_secret(&args.out, &bytes)?;

    context.out.say(format!(
        "key {} written to \"{}\"{}",
        key.id(),
        args.out.display(),
        if encrypted { " (encrypted)" } else { "" }
    ));
    context.out.finish(json!({
        "key_id": key.id().to_string(),
        "public_key": key.public(),
        "path": args.out,
        "encrypted": encrypted,
    }));
    Ok(())
}

/// Runs a `key` subcommand.
pub fn run(context: &Context, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Public { key, out, force } => {
            let public = load_public_file(&key)?;
            let file = PublicKeyFile {
                algorithm: "ed25519".into(),
                public_key: public,
                key_id: public.id(),
            };
            let mut bytes = serde_json::to_vec_pretty(&file)?;
            bytes.push(b'\n');
            match &out {
                Some(path) => {
                    files::write_output(path, &bytes, force)?;
                    context.out.say(format!(
                        "public key {} written to \"{}\"",
                        public.id(),
                        path.display()
                    ));
                }
                None if !context.out.is_json() => print!("{}", String::from_utf8_lossy(&bytes)),
                None => {}
            }
            context.out.finish(json!({
                "key_id": public.id().to_string(),
                "public_key": public,
                "path": out,
            }));
        }
        KeyCommand::Id { key } => {
            let public = load_public_file(&key)?;
            context.out.say(public.id());
            context.out.finish(json!({
                "key_id": public.id().to_string(),
                "public_key": public,
            }));
        }
    }
    Ok(())
}

/// Loads a secret key file, decrypting it with the passphrase from the
/// `--passphrase-env` variable when it is encrypted.
pub fn load_secret(context: &Context, path: &Path) -> anyhow::Result<SecretKey> {
    let bytes = Zeroizing::new(files::read(path)?);
    let plain = if keyfile::is_encrypted(&bytes) {
        let Some(var) = &context.passphrase_env else {
            bail!(
                "key file \"{}\" is encrypted (pass --passphrase-env VAR naming an environment \
                 variable that holds its passphrase)",
                path.display()
            );
        };
        let passphrase = read_passphrase(var)?;
        keyfile::decrypt(&bytes, &passphrase)
            .with_context(|| format!("cannot open key file \"{}\"", path.display()))?
    } else {
        bytes
    };
    if is_public_key_file(&plain) {
        bail!(
            "\"{}\" is a public key file, but signing needs the secret key file",
            path.display()
        );
    }
    SecretKey::from_file_bytes(&plain)
        .with_context(|| format!("cannot load key file \"{}\"", path.display()))
}

/// Loads every secret key in `paths`, rejecting the same key given twice.
pub fn load_secrets(context: &Context, paths: &[PathBuf]) -> anyhow::Result<Vec<SecretKey>> {
    let mut keys: Vec<SecretKey> = Vec::new();
    for path in paths {
        let key = load_secret(context, path)?;
        if keys.iter().any(|k| k.id() == key.id()) {
            bail!(
                "key {} is given twice (\"{}\" repeats an earlier --key)",
                key.id().short(),
                path.display()
            );
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Resolves a public key given as 64 hex digits or as a key file.
pub fn load_public(spec: &str) -> anyhow::Result<PublicKey> {
    let path = Path::new(spec);
    if !path.exists() {
        if let Ok(hash) = spec.parse::<Hash>() {
            return Ok(PublicKey(hash));
        }
    }
    load_public_file(path)
}

/// Reads the public key from a public, plain secret or encrypted key file;
/// no passphrase is needed.
pub fn load_public_file(path: &Path) -> anyhow::Result<PublicKey> {
    let bytes = Zeroizing::new(files::read(path)?);
    if keyfile::is_encrypted(&bytes) {
        let file = keyfile::parse(&bytes)
            .with_context(|| format!("cannot load key file \"{}\"", path.display()))?;
        return Ok(file.public_key);
    }
    if let Ok(file) = serde_json::from_slice::<PublicKeyFile>(&bytes) {
        if file.public_key.id() != file.key_id {
            bail!(
                "public key file \"{}\" names key id {} but holds the key of {} (the file was \
                 edited or damaged)",
                path.display(),
                file.key_id,
                file.public_key.id()
            );
        }
        return Ok(file.public_key);
    }
    let secret = SecretKey::from_file_bytes(&bytes).with_context(|| {
        format!(
            "\"{}\" is not a key file (expected a file written by `keygen` or `key public`, or \
             64 hex digits of a public key)",
            path.display()
        )
    })?;
    Ok(secret.public())
}

fn is_public_key_file(bytes: &[u8]) -> bool {
    serde_json::from_slice::<PublicKeyFile>(bytes).is_ok()
}

fn read_passphrase(var: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let value = std::env::var_os(var).with_context(|| {
        format!("environment variable \"{var}\" named by --passphrase-env is not set")
    })?;
    if value.is_empty() {
        bail!(
            "environment variable \"{var}\" named by --passphrase-env is empty (set a passphrase)"
        );
    }
    Ok(Zeroizing::new(value.into_encoded_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_parses_from_hex() {
        let key = SecretKey::generate();
        let public = load_public(&key.public().0.to_hex()).expect("hex");
        assert_eq!(public, key.public());
    }

    #[test]
    fn public_key_reads_from_secret_key_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.key");
        let key = SecretKey::generate();
        std::fs::write(&path, key.to_file_bytes()).expect("write");
        let public = load_public(path.to_str().expect("utf-8")).expect("loads");
        assert_eq!(public, key.public());
    }

    #[test]
    fn missing_key_file_error_names_path() {
        let err = load_public("/nonexistent/b.pub").unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/b.pub"), "{err:#}");
    }
}
