//! `patch add`: cuts a payload file into chunks, stores each chunk once under
//! `DIR/chunks/<BLAKE3 hex>`, and writes the signed manifest to
//! `DIR/NAME@VERSION.manifest`.
//!
//! The payload is streamed one chunk at a time, so its size is bounded by
//! the manifest limits, not by memory. Each chunk is written to a temporary
//! file, synced and renamed; a chunk already present is kept, since its name
//! is its hash.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use jiff::Timestamp;
use patchmesh_protocol::limits::{self, DEFAULT_CHUNK_BYTES};
use patchmesh_protocol::{Duration, Hash, Installer, Manifest, SecretKey, Severity, Signed};
use serde_json::json;

use crate::{expiry, files, keys, osv, Context};

/// `patch` subcommands.
#[derive(Subcommand)]
pub enum PatchCommand {
    /// Chunk a payload file and sign its manifest.
    Add(Box<AddArgs>),
}

/// Arguments of `patch add`.
#[derive(Args)]
#[command(group = clap::ArgGroup::new("installer").required(true).args(["install", "replace", "deb"]))]
pub struct AddArgs {
    /// Payload file.
    file: PathBuf,
    /// Patch name.
    #[arg(long)]
    name: String,
    /// Patch version.
    #[arg(long)]
    version: String,
    /// Severity: low, moderate, important or critical. Taken from the CVSS
    /// score of --advisory when not given.
    #[arg(long, required_unless_present = "advisory")]
    severity: Option<Severity>,
    /// Install command; `{payload}` stands for the assembled payload's path.
    #[arg(long)]
    install: Option<String>,
    /// Rollback command (with --install).
    #[arg(long, requires = "install")]
    rollback: Option<String>,
    /// Time before the install command is killed and counted as failed.
    #[arg(long, default_value = "30m", requires = "install")]
    timeout: Duration,
    /// Absolute path of a file the payload replaces atomically.
    #[arg(long, value_name = "PATH")]
    replace: Option<String>,
    /// Permission bits of the replaced file, octal (with --replace).
    #[arg(long, default_value = "0644", requires = "replace", value_parser = parse_mode)]
    mode: u32,
    /// Debian package the payload `.deb` contains; installs it with dpkg.
    #[arg(long, value_name = "PACKAGE")]
    deb: Option<String>,
    /// OSV advisory (JSON) that fills CVE ids, CVSS score, severity and the
    /// affected package ranges; --severity, --cvss and --cve override it.
    #[arg(long, value_name = "FILE")]
    advisory: Option<PathBuf>,
    /// Chunk size in bytes.
    #[arg(long, default_value_t = DEFAULT_CHUNK_BYTES)]
    chunk_size: u32,
    /// Vendor of the patch.
    #[arg(long, default_value = "")]
    vendor: String,
    /// CVE or advisory id the patch addresses (repeatable).
    #[arg(long = "cve", value_name = "ID")]
    cves: Vec<String>,
    /// CVSS base score, 0.0 to 10.0.
    #[arg(long)]
    cvss: Option<f32>,
    /// The machine must reboot after installing.
    #[arg(long)]
    reboot: bool,
    /// Command that exits 0 when the patch is already installed.
    #[arg(long, value_name = "CMD")]
    detect: Option<String>,
    /// Expiry: a duration from now such as 90d, or an RFC 3339 time.
    #[arg(long, default_value = "90d")]
    expires: String,
    /// Manifest revision; raise it to re-sign with a new expiry.
    #[arg(long, default_value_t = 1)]
    revision: u64,
    /// Secret key file of a patch role key (repeatable).
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Patch folder; several patches may share it.
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing manifest of the same name and version.
    #[arg(long)]
    force: bool,
}

/// Result of chunking one payload.
#[derive(Debug, PartialEq)]
pub struct Chunked {
    /// Payload size in bytes.
    pub size: u64,
    /// Hash of each chunk, in order.
    pub chunks: Vec<Hash>,
    /// Hash of the whole payload.
    pub payload_hash: Hash,
    /// Chunks that were not in the folder yet.
    pub written: usize,
}

fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| {
            format!("invalid mode \"{text}\" (expected octal permission bits such as 0644)")
        })
}

/// Runs a `patch` subcommand.
pub fn run(context: &Context, command: PatchCommand) -> anyhow::Result<()> {
    let PatchCommand::Add(args) = command;
    add(context, *args)
}

fn add(context: &Context, args: AddArgs) -> anyhow::Result<()> {
    let manifest_path = args
        .out
        .join(format!("{}@{}.manifest", args.name, args.version));
    if !patchmesh_protocol::manifest::is_safe_name(&args.name)
        || !patchmesh_protocol::manifest::is_safe_name(&args.version)
    {
        bail!(
            "invalid patch name or version \"{}@{}\" (letters, digits, '.', '-', '_', '+', '~', \
             ':' only, at most {} characters each)",
            args.name,
            args.version,
            limits::MAX_NAME_LEN
        );
    }
    files::check_overwrite(&manifest_path, args.force)?;
    let advisory = match &args.advisory {
        Some(path) => Some(osv::read(path)?),
        None => None,
    };
    if let Some(score) = args.cvss {
        if !(0.0..=10.0).contains(&score) {
            bail!("invalid --cvss {score} (expected 0.0 to 10.0)");
        }
    }
    let now = Timestamp::now();
    let expires = expiry::parse(&args.expires, now)?;
    let signers = keys::load_secrets(context, &args.keys)?;
    if !(limits::MIN_CHUNK_BYTES..=limits::MAX_CHUNK_BYTES).contains(&args.chunk_size) {
        bail!(
            "invalid --chunk-size {} (expected {} to {} bytes)",
            args.chunk_size,
            limits::MIN_CHUNK_BYTES,
            limits::MAX_CHUNK_BYTES
        );
    }

    // Refuse an oversized payload before reading any of it.
    let size = fs::metadata(&args.file)
        .with_context(|| format!("cannot read \"{}\"", args.file.display()))?
        .len();
    if size > limits::MAX_PATCH_BYTES {
        bail!(
            "payload \"{}\" is {size} bytes, over the limit of {} bytes",
            args.file.display(),
            limits::MAX_PATCH_BYTES
        );
    }

    let chunk_dir = args.out.join("chunks");
    fs::create_dir_all(&chunk_dir)
        .with_context(|| format!("cannot create \"{}\"", chunk_dir.display()))?;
    let file = File::open(&args.file)
        .with_context(|| format!("cannot read \"{}\"", args.file.display()))?;
    let progress = crate::output::progress_bar(size, "chunking");
    let chunked = store_chunks(
        progress.wrap_read(BufReader::new(file)),
        args.chunk_size,
        &chunk_dir,
    )
    .with_context(|| format!("cannot chunk \"{}\"", args.file.display()))?;
    progress.finish_and_clear();

    let installer = match (args.install, args.replace, args.deb) {
        (Some(install), _, _) => Installer::Command {
            install,
            rollback: args.rollback,
            timeout_secs: args.timeout.as_secs(),
        },
        (None, Some(path), _) => Installer::File {
            path,
            mode: args.mode,
        },
        (None, None, Some(package)) => {
            if !patchmesh_protocol::manifest::is_safe_name(&package) {
                bail!(
                    "invalid --deb \"{package}\" (expected a Debian package name such as openssl)"
                );
            }
            Installer::Deb { package }
        }
        (None, None, None) => bail!("give --install CMD, --replace PATH or --deb PACKAGE"),
    };
    let from_advisory =
        osv::manifest_fields(advisory.as_ref(), args.severity, args.cvss, args.cves)?;
    for skipped in advisory.iter().flat_map(|a| &a.skipped) {
        context
            .out
            .note(format!("advisory range left out: {skipped}"));
    }
    let manifest = Manifest {
        name: args.name,
        version: args.version,
        revision: args.revision,
        issued: now,
        expires,
        vendor: args.vendor,
        severity: from_advisory.severity,
        cvss: from_advisory.cvss,
        cves: from_advisory.cves,
        released: from_advisory.released,
        size: chunked.size,
        chunk_size: args.chunk_size,
        chunks: chunked.chunks.clone(),
        payload_hash: chunked.payload_hash,
        installer,
        detect: args.detect,
        reboot_required: args.reboot,
        applies_to: from_advisory.applies_to,
    };
    manifest.validate().context("the manifest is invalid")?;

    let signer_refs: Vec<&SecretKey> = signers.iter().collect();
    let signed = Signed::sign(&manifest, &signer_refs);
    files::write_output(&manifest_path, &signed.to_bytes(), args.force)?;

    context.out.say(format!(
        "manifest {} for {}@{} written to \"{}\"",
        signed.id(),
        manifest.name,
        manifest.version,
        manifest_path.display()
    ));
    context.out.say(format!(
        "payload {} ({} bytes) in {} chunks, {} new",
        chunked.payload_hash,
        chunked.size,
        chunked.chunks.len(),
        chunked.written
    ));
    context.out.finish(json!({
        "manifest_id": signed.id().to_string(),
        "patch": manifest.patch_ref().to_string(),
        "payload_hash": chunked.payload_hash.to_string(),
        "size": chunked.size,
        "chunk_size": manifest.chunk_size,
        "chunks": chunked.chunks.len(),
        "chunks_written": chunked.written,
        "manifest": manifest_path,
    }));
    Ok(())
}

/// Reads `reader` to its end in `chunk_size` pieces, storing each piece in
/// `chunk_dir` under its hash, and hashes the whole stream.
pub fn store_chunks(
    mut reader: impl Read,
    chunk_size: u32,
    chunk_dir: &Path,
) -> anyhow::Result<Chunked> {
    let mut buffer = vec![0u8; chunk_size as usize];
    let mut whole = blake3::Hasher::new();
    let mut chunked = Chunked {
        size: 0,
        chunks: Vec::new(),
        payload_hash: Hash([0; 32]),
        written: 0,
    };
    loop {
        let filled = read_full(&mut reader, &mut buffer)?;
        if filled == 0 {
            break;
        }
        let piece = &buffer[..filled];
        whole.update(piece);
        let hash = Hash::of(piece);
        if store_chunk(chunk_dir, hash, piece)? {
            chunked.written += 1;
        }
        chunked.chunks.push(hash);
        chunked.size += filled as u64;
        if chunked.chunks.len() > limits::MAX_CHUNKS {
            bail!(
                "the payload needs more than {} chunks (raise --chunk-size)",
                limits::MAX_CHUNKS
            );
        }
        if filled < buffer.len() {
            break;
        }
    }
    chunked.payload_hash = whole.finalize().into();
    Ok(chunked)
}

/// Fills `buffer` from `reader` unless the stream ends first; returns the
/// number of bytes read.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Writes one chunk unless a file of that hash exists; returns whether it
/// wrote one.
fn store_chunk(chunk_dir: &Path, hash: Hash, bytes: &[u8]) -> anyhow::Result<bool> {
    let path = chunk_dir.join(hash.to_hex());
    if path.exists() {
        return Ok(false);
    }
    files::write_atomic(&path, bytes, 0o644)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u32 = limits::MIN_CHUNK_BYTES;

    fn chunk(data: &[u8]) -> (tempfile::TempDir, Chunked) {
        let dir = tempfile::tempdir().expect("tempdir");
        let chunked = store_chunks(data, SIZE, dir.path()).expect("chunks");
        (dir, chunked)
    }

    #[test]
    fn empty_payload_has_no_chunks() {
        let (_dir, chunked) = chunk(b"");
        assert_eq!(chunked.chunks.len(), 0);
        assert_eq!(chunked.payload_hash, Hash::of(b""));
    }

    #[test]
    fn exact_multiple_has_no_short_chunk() {
        let data = vec![7u8; 2 * SIZE as usize];
        let (_dir, chunked) = chunk(&data);
        assert_eq!(chunked.chunks.len(), 2);
        assert_eq!(chunked.size, data.len() as u64);
        assert_eq!(chunked.written, 1, "equal chunks are stored once");
    }

    #[test]
    fn chunk_files_are_named_by_hash() {
        let data: Vec<u8> = (0..SIZE + 5).map(|i| i as u8).collect();
        let (dir, chunked) = chunk(&data);
        assert_eq!(chunked.chunks.len(), 2);
        for hash in &chunked.chunks {
            let bytes = fs::read(dir.path().join(hash.to_hex())).expect("chunk file");
            assert_eq!(Hash::of(&bytes), *hash);
        }
        assert_eq!(chunked.payload_hash, Hash::of(&data));
    }

    #[test]
    fn mode_parses_octal() {
        assert_eq!(parse_mode("0755"), Ok(0o755));
        assert!(parse_mode("0999").is_err());
    }
}
