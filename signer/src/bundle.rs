//! `bundle create` and `bundle inspect`: air-gap bundles for sites with no
//! network path to the admin.
//!
//! `create` collects roots, signed objects and the chunks their manifests
//! list, signs an index with the `patch` role and streams everything into
//! one file through a temporary file and a rename. With `--since`, objects
//! and chunks that an earlier bundle carried are left out; roots are always
//! included because the chain is small and a node may have missed any part.
//! `inspect` lists a bundle's contents and verifies every part.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use jiff::Timestamp;
use patchmesh_protocol::bundle::{
    BundleIndex, BundleReader, BundleWriter, ChunkEntry, ObjectEntry,
};
use patchmesh_protocol::{Hash, Kind, Manifest, Root, SecretKey, Signed};
use serde_json::{json, Value};

use crate::actions::default_revision;
use crate::{expiry, files, inspect, keys, output, Context};

/// `bundle` subcommands.
#[derive(Subcommand)]
pub enum BundleCommand {
    /// Write roots, signed objects and chunks into one signed bundle file.
    Create(CreateArgs),
    /// List a bundle's contents and verify every part.
    Inspect(InspectArgs),
}

/// Arguments of `bundle create`.
#[derive(Args)]
pub struct CreateArgs {
    /// Output bundle file.
    #[arg(long)]
    out: PathBuf,
    /// Signed policy file (repeatable).
    #[arg(long = "policy", value_name = "FILE")]
    policies: Vec<PathBuf>,
    /// Patch folder written by `patch add`: its manifests and the chunks
    /// they list (repeatable).
    #[arg(long = "patch", value_name = "DIR")]
    patches: Vec<PathBuf>,
    /// Any other signed object file, such as an approval or an enrollment
    /// (repeatable).
    #[arg(long = "object", value_name = "FILE")]
    objects: Vec<PathBuf>,
    /// Root version file, every version from the one nodes were installed
    /// with to the newest (repeatable; at least one).
    #[arg(long = "root", value_name = "ROOT_FILE", required = true)]
    roots: Vec<PathBuf>,
    /// Earlier bundle whose objects and chunks this one leaves out.
    #[arg(long, value_name = "PREVIOUS_BUNDLE")]
    since: Option<PathBuf>,
    /// Secret key file of a patch role key (repeatable).
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Expiry of the bundle index: a duration from now, or an RFC 3339 time.
    #[arg(long, default_value = "30d")]
    expires: String,
    /// Index revision; defaults to the signing time in unix seconds.
    #[arg(long)]
    revision: Option<u64>,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
}

/// Arguments of `bundle inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// Bundle file.
    file: PathBuf,
    /// Root the importing nodes trust; the bundle's first root is checked on
    /// its own signatures when left out.
    #[arg(long)]
    root: Option<PathBuf>,
}

/// Runs a `bundle` subcommand.
pub fn run(context: &Context, command: BundleCommand) -> anyhow::Result<()> {
    match command {
        BundleCommand::Create(args) => create(context, args),
        BundleCommand::Inspect(args) => inspect_bundle(context, args),
    }
}

/// A chunk to copy into the bundle.
struct ChunkSource {
    entry: ChunkEntry,
    path: PathBuf,
}

fn create(context: &Context, args: CreateArgs) -> anyhow::Result<()> {
    files::check_overwrite(&args.out, args.force)?;
    let now = Timestamp::now();
    let expires = expiry::parse(&args.expires, now)?;

    // Roots: sorted by version, checked as one chain.
    let (roots, newest) = load_root_chain(&args.roots)?;

    // What an earlier bundle carried is left out.
    let (since, carried_objects, carried_chunks) = match &args.since {
        Some(path) => {
            let previous = open_bundle(path)?;
            let body = previous.body();
            let objects: BTreeSet<Hash> = body.objects.iter().map(|e| e.envelope).collect();
            let chunks: BTreeSet<Hash> = body.chunks.iter().map(|e| e.hash).collect();
            (Some(previous.index().id()), objects, chunks)
        }
        None => (None, BTreeSet::new(), BTreeSet::new()),
    };

    // Objects: manifests first, so a node holds them before the policies
    // that name them.
    let mut objects: Vec<Signed> = Vec::new();
    let mut chunks: Vec<ChunkSource> = Vec::new();
    for dir in &args.patches {
        collect_patch_dir(dir, &mut objects, &mut chunks)?;
    }
    for path in &args.policies {
        let signed = files::read_signed(path)?;
        if signed.kind != Kind::Policy {
            bail!(
                "--policy \"{}\" is a {} object (expected a signed policy)",
                path.display(),
                signed.kind
            );
        }
        objects.push(signed);
    }
    for path in &args.objects {
        let signed = files::read_signed(path)?;
        if signed.kind == Kind::Root || signed.kind == Kind::BundleIndex {
            bail!(
                "--object \"{}\" is a {} object (pass roots with --root; bundle indexes are not carried)",
                path.display(),
                signed.kind
            );
        }
        objects.push(signed);
    }
    objects.sort_by_key(|s| (s.kind != Kind::Manifest, s.kind));
    let mut seen = BTreeSet::new();
    objects.retain(|s| seen.insert(ObjectEntry::of(s).envelope));
    objects.retain(|s| !carried_objects.contains(&ObjectEntry::of(s).envelope));
    let mut seen = BTreeSet::new();
    chunks.retain(|c| seen.insert(c.entry.hash) && !carried_chunks.contains(&c.entry.hash));
    if objects.len() > patchmesh_protocol::bundle::MAX_OBJECTS {
        bail!(
            "{} objects, over the bundle limit of {} (split them over several bundles)",
            objects.len(),
            patchmesh_protocol::bundle::MAX_OBJECTS
        );
    }

    let body = BundleIndex {
        fleet: newest.fleet.clone(),
        revision: args.revision.unwrap_or_else(|| default_revision(now)),
        issued: now,
        expires,
        since,
        roots: roots.iter().map(ObjectEntry::of).collect(),
        objects: objects.iter().map(ObjectEntry::of).collect(),
        chunks: chunks.iter().map(|c| c.entry).collect(),
    };
    let signers = keys::load_secrets(context, &args.keys)?;
    let signer_refs: Vec<&SecretKey> = signers.iter().collect();
    let index = Signed::sign(&body, &signer_refs);
    if index.to_bytes().len() > patchmesh_protocol::limits::MAX_ENVELOPE_BYTES {
        bail!(
            "the index of {} chunks is over the size limit of a signed object (split the patches over several bundles)",
            chunks.len()
        );
    }
    newest
        .check_threshold(Kind::BundleIndex.role(), &index)
        .context(
            "the bundle index does not verify under the newest root (sign with patch role keys)",
        )?;

    let written = write_bundle(&args.out, &roots, &index, &objects, &chunks)?;
    context.out.say(format!(
        "bundle for fleet \"{}\" revision {}: {} root(s), {} object(s), {} chunk(s), {written} bytes, written to \"{}\"",
        body.fleet,
        body.revision,
        roots.len(),
        objects.len(),
        chunks.len(),
        args.out.display()
    ));
    context.out.finish(json!({
        "index": index.id().to_string(),
        "fleet": body.fleet,
        "revision": body.revision,
        "issued": body.issued.to_string(),
        "expires": body.expires.to_string(),
        "since": body.since.map(|h| h.to_string()),
        "roots": roots.len(),
        "objects": objects.len(),
        "chunks": chunks.len(),
        "bytes": written,
        "path": args.out,
    }));
    Ok(())
}

/// Reads root files, orders them by version and checks that each follows
/// the one before; returns them with the newest root body.
fn load_root_chain(paths: &[PathBuf]) -> anyhow::Result<(Vec<Signed>, Root)> {
    let mut roots = Vec::new();
    for path in paths {
        let signed = files::read_signed(path)?;
        let body: Root = signed
            .decode_body()
            .with_context(|| format!("--root \"{}\" is not a root", path.display()))?;
        roots.push((body.version, signed));
    }
    roots.sort_by_key(|(version, _)| *version);
    roots.dedup_by_key(|(version, _)| *version);
    let (first, rest) = roots.split_first().context("no --root given")?;
    let mut newest = Root::verify_initial(&first.1)
        .with_context(|| format!("root version {} does not verify", first.0))?;
    for (version, signed) in rest {
        newest = newest
            .verify_successor(signed)
            .with_context(|| format!("root version {version} does not extend the chain"))?;
    }
    Ok((roots.into_iter().map(|(_, s)| s).collect(), newest))
}

/// Adds the manifests of a patch folder and the chunks they list.
fn collect_patch_dir(
    dir: &Path,
    objects: &mut Vec<Signed>,
    chunks: &mut Vec<ChunkSource>,
) -> anyhow::Result<()> {
    let entries = files::list_patch_folder(dir)?;
    let mut found = 0;
    for path in entries {
        if path.extension().is_none_or(|e| e != "manifest") {
            continue;
        }
        let signed = files::read_signed(&path)?;
        let manifest: Manifest = signed
            .decode_body()
            .with_context(|| format!("\"{}\" is not a manifest", path.display()))?;
        for (position, hash) in manifest.chunks.iter().enumerate() {
            let chunk_path = dir.join("chunks").join(hash.to_hex());
            let size = u32::try_from(manifest.chunk_len(position)).unwrap_or(u32::MAX);
            if !chunk_path.is_file() {
                bail!(
                    "chunk {} of {}@{} is missing from \"{}\" (run `patch add` again)",
                    hash.short(),
                    manifest.name,
                    manifest.version,
                    dir.join("chunks").display()
                );
            }
            chunks.push(ChunkSource {
                entry: ChunkEntry { hash: *hash, size },
                path: chunk_path,
            });
        }
        objects.push(signed);
        found += 1;
    }
    if found == 0 {
        bail!(
            "patch folder \"{}\" holds no *.manifest file (expected a folder written by `patch add`)",
            dir.display()
        );
    }
    Ok(())
}

/// Streams the bundle into a temporary file beside `out`, syncs it and
/// renames it into place; returns the bytes written.
fn write_bundle(
    out: &Path,
    roots: &[Signed],
    index: &Signed,
    objects: &[Signed],
    chunks: &[ChunkSource],
) -> anyhow::Result<u64> {
    let temp = files::temp_path(out);
    let result = (|| -> anyhow::Result<u64> {
        let file = File::create(&temp)?;
        let mut writer = BundleWriter::new(BufWriter::new(file), roots, index)?;
        for object in objects {
            writer.write_object(object)?;
        }
        let progress = output::progress_bar(chunks.len() as u64, "writing chunks");
        for chunk in chunks {
            let bytes = files::read(&chunk.path)?;
            writer.write_chunk(&bytes).with_context(|| {
                format!(
                    "chunk file \"{}\" does not match its name (the file is damaged; run `patch add` again)",
                    chunk.path.display()
                )
            })?;
            progress.inc(1);
        }
        progress.finish_and_clear();
        let (buffered, written) = writer.finish()?;
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&temp, out)?;
        files::sync_parent(out)?;
        Ok(written)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.with_context(|| format!("cannot write bundle \"{}\"", out.display()))
}

fn open_bundle(path: &Path) -> anyhow::Result<BundleReader<BufReader<File>>> {
    let file = File::open(path).with_context(|| format!("cannot read \"{}\"", path.display()))?;
    BundleReader::open(BufReader::new(file))
        .with_context(|| format!("\"{}\" is not a valid bundle", path.display()))
}

fn inspect_bundle(context: &Context, args: InspectArgs) -> anyhow::Result<()> {
    let trusted = match &args.root {
        Some(path) => Some(inspect::load_trusted_root(path)?),
        None => None,
    };
    let now = Timestamp::now();
    let mut reader = open_bundle(&args.file)?;
    let mut failures: Vec<String> = Vec::new();

    // Walk the root chain from the trusted root, or from the bundle's first.
    let mut root = trusted.clone();
    let mut root_rows = Vec::new();
    for signed in reader.roots() {
        let verification = inspect::verify(signed, root.as_ref(), now);
        let candidate: Option<Root> = signed.decode_body().ok();
        let (ok, detail) = match (&verification, &candidate, &root) {
            (_, Some(c), Some(r)) if c.version < r.version => (
                true,
                format!("root version {} is older than the trusted one", c.version),
            ),
            (Some(v), _, _) => (v.ok, v.detail.clone()),
            (None, _, _) => (false, "not checked".into()),
        };
        if ok {
            if let Some(c) =
                candidate.filter(|c| root.as_ref().is_none_or(|r| c.version > r.version))
            {
                root = Some(c);
            }
        } else {
            failures.push(detail.clone());
        }
        root_rows.push(json!({ "id": signed.id().to_string(), "ok": ok, "detail": detail }));
    }

    // The index under the newest root.
    let body = reader.body().clone();
    let index_check = match &root {
        Some(root) if root.fleet != body.fleet => Err(format!(
            "bundle is for fleet {:?}, the root is for fleet {:?}",
            body.fleet, root.fleet
        )),
        Some(root) => reader
            .index()
            .verify::<BundleIndex>(root, now, "system")
            .map(|_| format!("index verified under root version {}", root.version))
            .map_err(|e| e.to_string()),
        None => Err("no trusted root to verify the index under".into()),
    };
    if let Err(detail) = &index_check {
        failures.push(format!("index: {detail}"));
    }

    let mut object_rows = Vec::new();
    while let Some(signed) = reader.next_object()? {
        let mut row = inspect::describe(&signed);
        let verification = inspect::verify(&signed, root.as_ref(), now);
        let (ok, detail) = match verification {
            Some(v) => (v.ok, v.detail),
            None => (false, "no trusted root".into()),
        };
        if !ok {
            failures.push(format!("{} {}: {detail}", signed.kind, signed.id().short()));
        }
        row["verification"] = json!({ "ok": ok, "detail": detail });
        if let Value::Object(map) = &mut row {
            map.remove("body");
        }
        object_rows.push(row);
    }
    let mut chunk_bytes = 0u64;
    while let Some((entry, _)) = reader.next_chunk()? {
        chunk_bytes += u64::from(entry.size);
    }
    reader.finish()?;

    context.out.say(format!(
        "bundle \"{}\": fleet \"{}\", revision {}, signed {}, expires {}{}",
        args.file.display(),
        body.fleet,
        body.revision,
        body.issued,
        body.expires,
        body.since
            .map(|h| format!(", since bundle {}", h.short()))
            .unwrap_or_default()
    ));
    for row in root_rows.iter().chain(&object_rows) {
        context.out.say(format!(
            "  {} {}  {}",
            row["kind"].as_str().unwrap_or("root"),
            row["id"].as_str().unwrap_or(""),
            row["verification"]["detail"]
                .as_str()
                .or(row["detail"].as_str())
                .unwrap_or("")
        ));
    }
    context.out.say(format!(
        "  {} chunk(s), {chunk_bytes} bytes, every hash matches the index",
        body.chunks.len()
    ));
    context.out.say(match &index_check {
        Ok(detail) => detail.clone(),
        Err(detail) => format!("index does not verify: {detail}"),
    });
    context.out.finish(json!({
        "ok": failures.is_empty(),
        "index": reader_index_json(&body),
        "index_verification": match &index_check {
            Ok(detail) => json!({ "ok": true, "detail": detail }),
            Err(detail) => json!({ "ok": false, "detail": detail }),
        },
        "roots": root_rows,
        "objects": object_rows,
        "chunks": body.chunks.len(),
        "chunk_bytes": chunk_bytes,
        "failures": failures,
    }));
    if !failures.is_empty() {
        bail!(
            "bundle \"{}\" does not verify: {}",
            args.file.display(),
            failures.join("; ")
        );
    }
    Ok(())
}

fn reader_index_json(body: &BundleIndex) -> Value {
    json!({
        "fleet": body.fleet,
        "revision": body.revision,
        "issued": body.issued.to_string(),
        "expires": body.expires.to_string(),
        "since": body.since.map(|h| h.to_string()),
    })
}
