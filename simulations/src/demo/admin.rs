//! The admin's side of the demo, done with `patchmesh-signer` as an admin
//! would: a key, a trust root, a signed patch, a signed policy, publish.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use serde_json::Value;

/// Name and version of the demo's patch.
pub const PATCH_NAME: &str = "demo-payload";
pub const PATCH_VERSION: &str = "1";

/// File the install command writes, relative to the node's data folder
/// (the node runs install commands in its working folder).
pub const INSTALLED_FILE: &str = "installed.bin";

/// Signed files the admin hands to a node.
pub struct Signed {
    pub root: PathBuf,
    pub patch_dir: PathBuf,
    pub policy: PathBuf,
}

/// Runs the signer in `dir` and returns its last stdout line as JSON.
fn signer(binary: &Path, dir: &Path, args: &[&str]) -> anyhow::Result<Value> {
    let output = Command::new(binary)
        .args(args)
        .arg("--json")
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot run \"{}\"", binary.display()))?;
    if !output.status.success() {
        bail!(
            "patchmesh-signer {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .with_context(|| format!("patchmesh-signer {} printed no JSON", args.join(" ")))
}

/// Creates a key and root, signs `payload` as a patch installed by copying
/// it to [`INSTALLED_FILE`], and signs a policy that targets every node.
pub fn prepare(binary: &Path, dir: &Path, payload: &Path) -> anyhow::Result<Signed> {
    signer(binary, dir, &["keygen", "--out", "admin.key"])?;
    signer(
        binary,
        dir,
        &["root", "init", "--key", "admin.key", "--out", "root.bin"],
    )?;

    let payload = payload.to_string_lossy();
    let install = format!("cp {{payload}} {INSTALLED_FILE}");
    signer(
        binary,
        dir,
        &[
            "patch",
            "add",
            &payload,
            "--name",
            PATCH_NAME,
            "--version",
            PATCH_VERSION,
            "--severity",
            "important",
            "--install",
            &install,
            "--key",
            "admin.key",
            "--out",
            "patch",
        ],
    )?;

    // Empty targets select every node.
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let policy = format!(
        "id = \"demo\"\nversion = 1\nexpires = \"{expires}\"\n\n[content]\npatches = [\"{PATCH_NAME}@{PATCH_VERSION}\"]\n"
    );
    std::fs::write(dir.join("policy.toml"), policy).context("cannot write policy.toml")?;
    signer(
        binary,
        dir,
        &[
            "policy",
            "sign",
            "policy.toml",
            "--key",
            "admin.key",
            "--out",
            "policy.bin",
        ],
    )?;

    Ok(Signed {
        root: dir.join("root.bin"),
        patch_dir: dir.join("patch"),
        policy: dir.join("policy.bin"),
    })
}

/// Hands the patch folder and the policy to the node at `url`.
pub fn publish(binary: &Path, dir: &Path, url: &str, signed: &Signed) -> anyhow::Result<()> {
    let patch_dir = signed.patch_dir.to_string_lossy();
    let policy = signed.policy.to_string_lossy();
    signer(
        binary,
        dir,
        &["publish", "--node", url, &patch_dir, &policy],
    )?;
    Ok(())
}
