//! `sign`: adds signatures to an existing signed object, for threshold
//! signing across machines. Each admin runs it with their own key; an
//! object's id stays the same because signatures do not cover each other.

use std::path::PathBuf;

use clap::Args;
use jiff::Timestamp;
use serde_json::json;

use crate::{files, inspect, keys, Context};

/// Arguments of `sign`.
#[derive(Args)]
pub struct SignArgs {
    /// Signed object to add a signature to.
    file: PathBuf,
    /// Secret key file to sign with (repeatable).
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Output file; FILE is replaced in place when left out.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace an existing output file other than FILE.
    #[arg(long)]
    force: bool,
    /// Trusted root, to report whether the object now verifies.
    #[arg(long)]
    root: Option<PathBuf>,
}

/// Runs `sign`.
pub fn run(context: &Context, args: SignArgs) -> anyhow::Result<()> {
    let mut signed = files::read_signed(&args.file)?;
    let trusted = match &args.root {
        Some(path) => Some(inspect::load_trusted_root(path)?),
        None => None,
    };
    let signers = keys::load_secrets(context, &args.keys)?;
    for key in &signers {
        signed.add_signature(key);
    }

    let out = args.out.clone().unwrap_or_else(|| args.file.clone());
    let in_place = args.out.is_none() || out == args.file;
    files::write_output(&out, &signed.to_bytes(), args.force || in_place)?;

    let added: Vec<String> = signers.iter().map(|k| k.id().to_string()).collect();
    context.out.say(format!(
        "{} {} now has {} signature(s); added {}; written to \"{}\"",
        signed.kind,
        signed.id().short(),
        signed.signatures.len(),
        signers
            .iter()
            .map(|k| k.id().short())
            .collect::<Vec<_>>()
            .join(", "),
        out.display()
    ));

    // A root is judged on its own signatures even without --root.
    let verification = inspect::verify(&signed, trusted.as_ref(), Timestamp::now());
    if let Some(v) = &verification {
        let state = if v.ok {
            "verifies"
        } else {
            "does not verify yet"
        };
        context.out.say(format!("{state}: {}", v.detail));
    }
    context.out.finish(json!({
        "id": signed.id().to_string(),
        "kind": signed.kind.name(),
        "added": added,
        "signatures": signed.signatures.iter().map(|s| s.key_id.to_string()).collect::<Vec<_>>(),
        "verification": verification.map(|v| json!({ "ok": v.ok, "detail": v.detail })),
        "path": out,
    }));
    Ok(())
}
