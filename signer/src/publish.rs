//! `publish`: hands signed objects and chunks to one node's control API.
//!
//! Directories are walked: files below a `chunks/` folder are chunks named
//! by their BLAKE3 hash, other files are read as signed objects and skipped
//! when they are not. Uploads go in the order a node can accept them: roots
//! (by version), manifests, chunks (a node takes only chunks that a held
//! manifest lists), then everything else. The first rejected upload stops
//! the run with the node's error message.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Args;
use patchmesh_protocol::{Hash, Kind, Root};
use serde_json::{json, Value};

use crate::client::Client;
use crate::{files, output, Context};

/// Arguments of `publish`.
#[derive(Args)]
pub struct PublishArgs {
    /// Control API URL of the node, such as http://127.0.0.1:7300.
    #[arg(long)]
    node: String,
    /// Signed object files and patch folders.
    #[arg(required = true, value_name = "FILE_OR_DIR")]
    paths: Vec<PathBuf>,
}

/// One upload, in publishing order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    /// A root, by version.
    Root { version: u64, path: PathBuf },
    /// A manifest.
    Manifest { path: PathBuf },
    /// A chunk named by its hash.
    Chunk { hash: Hash, path: PathBuf },
    /// Any other signed object.
    Other { kind: Kind, path: PathBuf },
}

/// Files found under the given paths, classified.
#[derive(Default)]
struct Found {
    items: Vec<Item>,
    /// Files skipped in folders, with the reason.
    skipped: Vec<(PathBuf, String)>,
}

/// Runs `publish`.
pub fn run(context: &Context, args: PublishArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.node)?;
    let mut found = Found::default();
    for path in &args.paths {
        collect(path, true, false, &mut found)?;
    }
    found.items.sort();
    found.items.dedup();
    for (path, reason) in &found.skipped {
        context
            .out
            .note(format!("skipped \"{}\": {reason}", path.display()));
    }
    if found.items.is_empty() {
        bail!(
            "nothing to publish under the given paths (expected signed objects or a patch folder)"
        );
    }

    let progress = output::progress_bar(found.items.len() as u64, "publishing");
    let mut counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for item in &found.items {
        let (what, reply) = upload(&client, item)?;
        let outcome = reply
            .get("outcome")
            .and_then(Value::as_str)
            .unwrap_or("stored")
            .to_string();
        *counts.entry(what).or_default().entry(outcome).or_default() += 1;
        progress.inc(1);
    }
    progress.finish_and_clear();

    for (what, outcomes) in &counts {
        let parts: Vec<String> = outcomes.iter().map(|(o, n)| format!("{n} {o}")).collect();
        context.out.say(format!("{what}: {}", parts.join(", ")));
    }
    context.out.say(format!(
        "published {} item(s) to {}, skipped {}",
        found.items.len(),
        client.base(),
        found.skipped.len()
    ));
    context.out.finish(json!({
        "node": client.base(),
        "published": found.items.len(),
        "skipped": found.skipped.len(),
        "counts": counts,
    }));
    Ok(())
}

/// Uploads one item; returns its kind name and the node's reply.
fn upload(client: &Client, item: &Item) -> anyhow::Result<(String, Value)> {
    match item {
        Item::Chunk { hash, path } => {
            let bytes = files::read(path)?;
            if Hash::of(&bytes) != *hash {
                bail!(
                    "chunk file \"{}\" does not hash to its name (the file is damaged; run \
                     `patch add` again)",
                    path.display()
                );
            }
            let reply = client
                .put_bytes(&format!("/v1/chunks/{hash}"), &bytes)
                .with_context(|| format!("cannot publish chunk \"{}\"", path.display()))?;
            Ok(("chunk".into(), reply))
        }
        Item::Root { path, .. } | Item::Manifest { path } | Item::Other { path, .. } => {
            let bytes = files::read(path)?;
            let reply = client
                .post_bytes("/v1/objects", &bytes)
                .with_context(|| format!("cannot publish \"{}\"", path.display()))?;
            let kind = reply
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("object")
                .to_string();
            Ok((kind, reply))
        }
    }
}

/// Classifies `path`, walking folders. `explicit` marks a path the admin
/// named, which must be publishable; `in_chunks` marks a walk below a
/// `chunks/` folder.
fn collect(path: &Path, explicit: bool, in_chunks: bool, found: &mut Found) -> anyhow::Result<()> {
    let metadata =
        fs::metadata(path).with_context(|| format!("cannot read \"{}\"", path.display()))?;
    if metadata.is_dir() {
        let below_chunks = in_chunks || path.file_name().is_some_and(|n| n == "chunks");
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .with_context(|| format!("cannot read folder \"{}\"", path.display()))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot read folder \"{}\"", path.display()))?;
        entries.sort();
        for entry in entries {
            collect(&entry, false, below_chunks, found)?;
        }
        return Ok(());
    }

    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent_is_chunks = path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "chunks");
    if in_chunks || parent_is_chunks {
        match name.parse::<Hash>() {
            Ok(hash) => found.items.push(Item::Chunk {
                hash,
                path: path.to_path_buf(),
            }),
            Err(_) if explicit => bail!(
                "\"{}\" is in a chunks folder but its name is not a BLAKE3 hash",
                path.display()
            ),
            Err(_) => found
                .skipped
                .push((path.to_path_buf(), "not named by a BLAKE3 hash".into())),
        }
        return Ok(());
    }

    let signed = match files::read_signed(path) {
        Ok(signed) => signed,
        Err(_) if !explicit => {
            found
                .skipped
                .push((path.to_path_buf(), "not a signed object".into()));
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    let path = path.to_path_buf();
    found.items.push(match signed.kind {
        Kind::Root => {
            let root: Root = signed
                .decode_body()
                .with_context(|| format!("\"{}\" holds a malformed root", path.display()))?;
            Item::Root {
                version: root.version,
                path,
            }
        }
        Kind::Manifest => Item::Manifest { path },
        kind => Item::Other { kind, path },
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_puts_roots_manifests_chunks_then_others() {
        let mut items = [
            Item::Other {
                kind: Kind::Policy,
                path: "p".into(),
            },
            Item::Chunk {
                hash: Hash([0; 32]),
                path: "c".into(),
            },
            Item::Manifest { path: "m".into() },
            Item::Root {
                version: 2,
                path: "r2".into(),
            },
            Item::Root {
                version: 1,
                path: "r1".into(),
            },
        ];
        items.sort();
        let names: Vec<&str> = items
            .iter()
            .map(|item| match item {
                Item::Root { path, .. }
                | Item::Manifest { path }
                | Item::Chunk { path, .. }
                | Item::Other { path, .. } => path.to_str().expect("utf-8"),
            })
            .collect();
        assert_eq!(names, ["r1", "r2", "m", "c", "p"]);
    }

    #[test]
    fn folder_walk_skips_non_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("notes.txt"), b"hello").expect("write");
        fs::create_dir(dir.path().join("chunks")).expect("mkdir");
        let hash = Hash::of(b"data");
        fs::write(dir.path().join("chunks").join(hash.to_hex()), b"data").expect("write");
        let mut found = Found::default();
        collect(dir.path(), true, false, &mut found).expect("walks");
        assert_eq!(found.skipped.len(), 1);
        assert!(matches!(found.items.as_slice(), [Item::Chunk { hash: h, .. }] if *h == hash));
    }
}
