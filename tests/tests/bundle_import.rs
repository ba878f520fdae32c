//! Air-gap bundles against a real node: every kind of bad bundle is
//! rejected by `patchmesh-node bundle import` with an error that names what
//! failed, nothing from it is stored, and the node keeps running and
//! accepts the next good bundle. Also the watched import folder, `bundle
//! inspect` exit codes and a report file tampered on its way back.
//!
//! The node is given no peers, so the bundle is its only source of objects
//! and chunks, as at an air-gapped site.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use patchmesh_node::config::Config;
use patchmesh_protocol::bundle::{BundleIndex, BundleReader, BundleWriter};
use patchmesh_protocol::{SecretKey, Signed};
use patchmesh_tests::{
    binaries, get_json, import_bundle, import_bundle_ok, last_json, patch_chunk_names,
    random_bytes, wait_until, Admin, Node, NodeOptions,
};
use serde_json::Value;

/// Bundle record tags, as `protocol/src/bundle.rs` writes them.
const TAG_INDEX: u8 = 2;
const TAG_CHUNK: u8 = 4;

/// Returns the names of every chunk file in the node's store.
fn chunk_files(node: &Node) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let Ok(shards) = std::fs::read_dir(node.data_dir().join("chunks")) else {
        return names;
    };
    for shard in shards.flatten() {
        for file in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            names.insert(file.file_name().to_string_lossy().into_owned());
        }
    }
    names
}

/// Returns the files left in the node's bundle staging folder.
fn staged_files(node: &Node) -> usize {
    std::fs::read_dir(node.data_dir().join("bundle-staging"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// Signs policy `fix-all` at `version`, naming `fix@1`, with `key`.
fn policy(admin: &Admin, version: u64, key: &str) -> PathBuf {
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let text = format!(
        "id = \"fix-all\"\nversion = {version}\nexpires = \"{expires}\"\n\n\
         [content]\npatches = [\"fix@1\"]\n"
    );
    let toml = format!("fix-all-{version}.toml");
    std::fs::write(admin.path(&toml), text).expect("write policy");
    let out = format!("fix-all-{version}-{}.policy", key.trim_end_matches(".key"));
    admin.signer_json(&["policy", "sign", &toml, "--key", key, "--out", &out]);
    admin.path(&out)
}

/// Writes a bundle `out` with `bundle create`, from the roots, objects and
/// patch folders given, signed with `key`.
fn create_bundle(
    admin: &Admin,
    out: &str,
    roots: &[&str],
    policies: &[&Path],
    patches: &[&Path],
    key: &str,
) -> PathBuf {
    let mut args: Vec<String> = vec!["bundle".into(), "create".into(), "--out".into(), out.into()];
    for root in roots {
        args.extend(["--root".into(), root.to_string()]);
    }
    for policy in policies {
        args.extend(["--policy".into(), policy.display().to_string()]);
    }
    for patch in patches {
        args.extend(["--patch".into(), patch.display().to_string()]);
    }
    args.extend(["--key".into(), key.into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    admin.signer_json(&args);
    admin.path(out)
}

/// Returns the offset and length of the body of every record with `tag`.
fn records(bytes: &[u8], tag: u8) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    // Magic (8 bytes) and format version (4 bytes), then records of a tag
    // byte, a little-endian u32 length and the body.
    let mut offset = 12;
    while offset + 5 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[offset + 1..offset + 5].try_into().unwrap()) as usize;
        if bytes[offset] == tag {
            found.push((offset + 5, len));
        }
        if len == 0 {
            break;
        }
        offset += 5 + len;
    }
    found
}

/// Writes a copy of `good` with one byte flipped at `position`.
fn flip_byte(good: &Path, position: usize, out: &Path) -> PathBuf {
    let mut bytes = std::fs::read(good).expect("read bundle");
    bytes[position] ^= 0x55;
    std::fs::write(out, bytes).expect("write damaged bundle");
    out.to_path_buf()
}

/// Writes a copy of `good` whose index is signed by `key` instead.
fn resign_index(good: &Path, key: &SecretKey, out: &Path) -> PathBuf {
    let file = File::open(good).expect("open bundle");
    let mut reader = BundleReader::open(BufReader::new(file)).expect("good bundle opens");
    let body: BundleIndex = reader.body().clone();
    let index = Signed::sign(&body, &[key]);
    let roots = reader.roots().to_vec();
    let mut writer =
        BundleWriter::new(Vec::new(), &roots, &index).expect("bundle header is written");
    while let Some(object) = reader.next_object().expect("good bundle object") {
        writer.write_object(&object).expect("object is written");
    }
    while let Some((_, chunk)) = reader.next_chunk().expect("good bundle chunk") {
        writer.write_chunk(&chunk).expect("chunk is written");
    }
    let (bytes, _) = writer.finish().expect("bundle is finished");
    std::fs::write(out, bytes).expect("write re-signed bundle");
    out.to_path_buf()
}

/// Imports `file`, expects a rejection whose message contains every one of
/// `words`, and checks that the node stored nothing and still serves its
/// control API.
fn assert_rejected(
    node: &Node,
    case: &str,
    file: &Path,
    words: &[&str],
    chunks: &BTreeSet<String>,
) {
    let output = import_bundle(&node.url, file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "{case}: the bad bundle was accepted: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    for word in words {
        assert!(
            stderr.contains(word),
            "{case}: the error does not contain {word:?}: {stderr}"
        );
    }
    assert!(
        stderr.contains("stores nothing from a rejected bundle"),
        "{case}: the error does not say that nothing was stored: {stderr}"
    );
    assert_eq!(&chunk_files(node), chunks, "{case}: chunk store changed");
    assert_eq!(staged_files(node), 0, "{case}: staging files left behind");
    assert!(
        get_json(&format!("{}/v1/node", node.url)).is_some(),
        "{case}: the node stopped serving its control API"
    );
    println!("{case}: {}", stderr.trim());
}

#[test]
fn bad_bundles_are_rejected_and_store_nothing() {
    let admin = Admin::new();
    // Two keys in every role, so a later root can revoke one of them.
    let second = admin.signer_json(&["keygen", "--out", "second.key"]);
    let second_id = second["key_id"].as_str().expect("key_id").to_string();
    admin.signer_json(&[
        "root",
        "init",
        "--key",
        "admin.key",
        "--key",
        "second.key",
        "--out",
        "root.bin",
        "--force",
    ]);
    let node = Node::start(&admin, NodeOptions::new("ship-0", "ship").observer());
    let work = tempfile::tempdir().expect("temporary folder");

    let payload = random_bytes(300_000);
    let patch = admin.add_patch("fix", &payload, 64 * 1024);
    let policy_1 = policy(&admin, 1, "admin.key");
    let policy_2 = policy(&admin, 2, "admin.key");
    let good_1 = create_bundle(
        &admin,
        "good-1.bundle",
        &["root.bin"],
        &[&policy_1],
        &[&patch.dir],
        "admin.key",
    );
    let good_bytes = std::fs::read(&good_1).expect("read bundle");
    let empty = chunk_files(&node);
    assert!(empty.is_empty(), "a new node holds chunks: {empty:?}");

    // A copy cut short.
    let truncated = work.path().join("truncated.bundle");
    std::fs::write(&truncated, &good_bytes[..good_bytes.len() / 2]).expect("write");
    assert_rejected(
        &node,
        "truncated",
        &truncated,
        &["truncated at byte"],
        &empty,
    );

    // One flipped byte in a chunk.
    let (chunk_at, chunk_len) = *records(&good_bytes, TAG_CHUNK).last().expect("a chunk");
    let flipped_chunk = flip_byte(
        &good_1,
        chunk_at + chunk_len / 2,
        &work.path().join("flipped-chunk.bundle"),
    );
    assert_rejected(
        &node,
        "flipped chunk byte",
        &flipped_chunk,
        &["chunk", "does not match the index", "its bytes hash to"],
        &empty,
    );

    // One flipped byte in the signed index.
    let (index_at, index_len) = records(&good_bytes, TAG_INDEX)[0];
    let flipped_index = flip_byte(
        &good_1,
        index_at + index_len / 2,
        &work.path().join("flipped-index.bundle"),
    );
    assert_rejected(
        &node,
        "flipped index byte",
        &flipped_index,
        &["bundle index", "rejected", "valid signature"],
        &empty,
    );

    // An index signed by a key the root does not list.
    let stranger = SecretKey::generate();
    let unknown = resign_index(&good_1, &stranger, &work.path().join("unknown-key.bundle"));
    assert_rejected(
        &node,
        "unknown key",
        &unknown,
        &[
            "bundle index",
            "0 valid signature(s)",
            &stranger.id().short(),
            "unknown, revoked",
        ],
        &empty,
    );

    // Another fleet's root and keys, with the same objects.
    let other = Admin::new();
    other.signer_json(&[
        "root",
        "init",
        "--key",
        "admin.key",
        "--fleet",
        "other",
        "--out",
        "other-fleet.bin",
    ]);
    let other_fleet = create_bundle(
        &other,
        "other-fleet.bundle",
        &["other-fleet.bin"],
        &[&policy_1],
        &[&patch.dir],
        "admin.key",
    );
    assert_rejected(
        &node,
        "other fleet",
        &other_fleet,
        &["fleet \"other\"", "another trust root"],
        &empty,
    );

    // Another trust root that uses the same fleet name.
    let other_root = create_bundle(
        &other,
        "other-root.bundle",
        &["root.bin"],
        &[&policy_1],
        &[&patch.dir],
        "admin.key",
    );
    assert_rejected(
        &node,
        "other root, same fleet name",
        &other_root,
        &["root version 1", "another trust root"],
        &empty,
    );

    // The good bundle after all of them: everything in it is new, so none
    // of the rejected bundles left an object behind.
    let summary = import_bundle_ok(&node, &good_1);
    assert_eq!(summary["objects_stored"], 2, "{summary}");
    assert_eq!(summary["objects_held"], 0, "{summary}");
    assert_eq!(summary["chunks_stored"], patch.chunks, "{summary}");
    let with_patch = chunk_files(&node);
    assert_eq!(with_patch, patch_chunk_names(&patch));
    wait_until("ship-0 to install fix@1", Duration::from_secs(60), || {
        (node.installed_hash().as_deref() == Some(patchmesh_tests::blake3_hex(&payload).as_str()))
            .then_some(())
    });

    // A newer policy revision, then the older bundle again.
    let good_2 = create_bundle(
        &admin,
        "good-2.bundle",
        &["root.bin"],
        &[&policy_2],
        &[],
        "admin.key",
    );
    let summary = import_bundle_ok(&node, &good_2);
    assert_eq!(summary["objects_stored"], 1, "{summary}");
    assert_rejected(
        &node,
        "older bundle",
        &good_1,
        &[
            "older than what this node holds",
            "\"fix-all\" revision 1 is not above revision 2",
        ],
        &with_patch,
    );
    let summary = import_bundle_ok(&node, &good_2);
    assert_eq!(
        summary["objects_held"], 1,
        "revision 2 is no longer held after the older bundle: {summary}"
    );
    assert_eq!(summary["objects_stored"], 0, "{summary}");

    // Root version 2 revokes second.key; the node gets it in a bundle.
    admin.signer_json(&[
        "root",
        "rotate",
        "--root",
        "root.bin",
        "--remove-key",
        &second_id,
        "--key",
        "admin.key",
        "--out",
        "root-2.bin",
    ]);
    let policy_3 = policy(&admin, 3, "admin.key");
    let rotated = create_bundle(
        &admin,
        "rotated.bundle",
        &["root.bin", "root-2.bin"],
        &[&policy_3],
        &[],
        "admin.key",
    );
    let summary = import_bundle_ok(&node, &rotated);
    assert_eq!(summary["roots"], 1, "{summary}");
    assert_eq!(summary["objects_stored"], 1, "{summary}");

    // A bundle signed by the revoked key, carrying only root version 1,
    // under which that key was valid.
    let policy_4_revoked = policy(&admin, 4, "second.key");
    let revoked = create_bundle(
        &admin,
        "revoked.bundle",
        &["root.bin"],
        &[&policy_4_revoked],
        &[],
        "second.key",
    );
    assert_rejected(
        &node,
        "revoked key",
        &revoked,
        &[
            "bundle index",
            &second_id[..8],
            "which root version 2 removed from role \"patch\"",
            "Re-sign it with a current patch key",
            "under root version 2",
        ],
        &with_patch,
    );

    // The node still accepts a good bundle, and the revoked key's policy
    // revision 4 left no floor behind.
    let policy_4 = policy(&admin, 4, "admin.key");
    let good_4 = create_bundle(
        &admin,
        "good-4.bundle",
        &["root.bin", "root-2.bin"],
        &[&policy_4],
        &[],
        "admin.key",
    );
    let summary = import_bundle_ok(&node, &good_4);
    assert_eq!(summary["objects_stored"], 1, "{summary}");
    assert!(
        node.log().contains("bundle rejected"),
        "the node does not log its rejections"
    );
}

/// Runs `patchmesh-signer bundle inspect FILE --root ROOT --json`.
fn inspect(admin: &Admin, file: &Path, root: &str) -> Output {
    admin.signer(&[
        "bundle",
        "inspect",
        &file.display().to_string(),
        "--root",
        root,
        "--json",
    ])
}

#[test]
fn bundle_inspect_exit_codes() {
    let admin = Admin::new();
    let work = tempfile::tempdir().expect("temporary folder");
    let patch = admin.add_patch("fix", &random_bytes(200_000), 64 * 1024);
    let policy_1 = policy(&admin, 1, "admin.key");
    let good = create_bundle(
        &admin,
        "good.bundle",
        &["root.bin"],
        &[&policy_1],
        &[&patch.dir],
        "admin.key",
    );

    let output = inspect(&admin, &good, "root.bin");
    assert_eq!(
        output.status.code(),
        Some(0),
        "good bundle: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(last_json(&output)["ok"], true);

    let bytes = std::fs::read(&good).expect("read bundle");
    let truncated = work.path().join("truncated.bundle");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).expect("write");
    let (chunk_at, _) = records(&bytes, TAG_CHUNK)[0];
    let flipped = flip_byte(&good, chunk_at + 10, &work.path().join("flipped.bundle"));
    let other = Admin::new();
    let other_fleet = create_bundle(
        &other,
        "other.bundle",
        &["root.bin"],
        &[&policy_1],
        &[],
        "admin.key",
    );
    let cases = [
        ("truncated", truncated.as_path(), "truncated"),
        (
            "flipped chunk byte",
            flipped.as_path(),
            "does not match the index",
        ),
        ("other root", other_fleet.as_path(), "does not verify"),
    ];
    for (case, file, word) in cases {
        let output = inspect(&admin, file, "root.bin");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{case}: {stderr}");
        assert!(stderr.contains(word), "{case}: no {word:?} in {stderr}");
    }
}

#[test]
fn tampered_report_file_is_rejected() {
    let admin = Admin::new();
    let site = Node::start(&admin, NodeOptions::new("ship-0", "ship").observer());
    let hq = Node::start(&admin, NodeOptions::new("hq-0", "hq").observer());
    let work = tempfile::tempdir().expect("temporary folder");
    let has_report = |node: &Node, host: &str| {
        node.status().is_some_and(|status| {
            status["reports"]
                .as_array()
                .is_some_and(|reports| reports.iter().any(|r| r["host"] == host))
        })
    };
    wait_until(
        "ship-0 to report to itself",
        Duration::from_secs(30),
        || has_report(&site, "ship-0").then_some(()),
    );

    let file = work.path().join("ship.reports");
    let output = Command::new(&binaries().node)
        .args(["reports", "export", "--out"])
        .arg(&file)
        .args(["--node", &site.url])
        .output()
        .expect("patchmesh-node reports export runs");
    assert!(
        output.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // One byte flipped near the end, inside the last signed report.
    let mut bytes = std::fs::read(&file).expect("read report file");
    let position = bytes.len() - 80;
    bytes[position] ^= 0x55;
    let tampered = work.path().join("tampered.reports");
    std::fs::write(&tampered, &bytes).expect("write tampered file");

    let output = admin.signer(&[
        "reports",
        "import",
        &tampered.display().to_string(),
        "--node",
        &hq.url,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "tampered file: {stderr}");
    assert!(stderr.contains("is rejected"), "{stderr}");
    assert!(stderr.contains("report 0"), "{stderr}");

    // The observer checks the file itself too, without the signer's check.
    let response = ureq::post(&format!("{}/v1/reports/import", hq.url)).send_bytes(&bytes);
    match response {
        Err(ureq::Error::Status(code, response)) => {
            let body: Value = response.into_json().unwrap_or_default();
            assert_eq!(code, 422, "{body}");
            assert!(
                body["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("rejected")),
                "{body}"
            );
        }
        other => panic!("the observer accepted a tampered report file: {other:?}"),
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !has_report(&hq, "ship-0"),
        "a report from the tampered file was stored"
    );

    // The untouched file is accepted.
    admin.signer_json(&[
        "reports",
        "import",
        &file.display().to_string(),
        "--node",
        &hq.url,
    ]);
    wait_until("hq-0 to show ship-0", Duration::from_secs(10), || {
        has_report(&hq, "ship-0").then_some(())
    });
}

#[test]
fn watched_folder_waits_for_whole_copy() {
    let admin = Admin::new();
    let mut node = Node::start(&admin, NodeOptions::new("ship-0", "ship"));
    let usb = tempfile::tempdir().expect("temporary folder");
    let mut config = Config::load(node.data_dir()).expect("node config");
    config.import_dir = Some(usb.path().to_path_buf());
    std::fs::write(node.data_dir().join("config.toml"), config.to_toml()).expect("write config");
    node.restart();

    let patch = admin.add_patch("fix", &random_bytes(300_000), 64 * 1024);
    let policy_1 = policy(&admin, 1, "admin.key");
    let good = create_bundle(
        &admin,
        "good.bundle",
        &["root.bin"],
        &[&policy_1],
        &[&patch.dir],
        "admin.key",
    );
    let bytes = std::fs::read(&good).expect("read bundle");

    // A truncated copy, whole on the stick, and a good bundle copied slowly
    // enough that several scans of the folder see it incomplete.
    std::fs::write(usb.path().join("cut.bundle"), &bytes[..bytes.len() / 2]).expect("write");
    let copying = usb.path().join("july.bundle");
    let mut file = File::create(&copying).expect("create the copy");
    for piece in bytes.chunks(bytes.len().div_ceil(12)) {
        file.write_all(piece).expect("copy a piece");
        file.flush().expect("flush the copy");
        std::thread::sleep(Duration::from_millis(900));
    }
    drop(file);

    let imported = usb.path().join("imported").join("july.bundle");
    let rejected = usb.path().join("rejected");
    wait_until("july.bundle to be moved", Duration::from_secs(60), || {
        (imported.exists() || rejected.join("july.bundle").exists()).then_some(())
    });
    assert!(
        imported.exists(),
        "the bundle was rejected while it was being copied"
    );
    wait_until("cut.bundle to be rejected", Duration::from_secs(30), || {
        rejected.join("cut.bundle").exists().then_some(())
    });
    assert_eq!(chunk_files(&node), patch_chunk_names(&patch));
    let log = node.log();
    assert!(
        log.lines()
            .any(|line| line.contains("bundle rejected") && line.contains("truncated")),
        "the node does not log why cut.bundle was rejected"
    );
}
