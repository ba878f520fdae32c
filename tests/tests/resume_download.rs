//! A node killed in the middle of a download resumes from the chunks it had
//! verified and stored, and fetches only the rest.

use std::path::Path;
use std::time::Duration;

use patchmesh_tests::{random_bytes, wait_installed, wait_until, Admin, Node, NodeOptions};

const CHUNK: usize = 16 * 1024;
const CHUNKS: usize = 1024;

/// Counts chunk files under a node's `chunks/` folder.
fn stored_chunks(data_dir: &Path) -> usize {
    let Ok(shards) = std::fs::read_dir(data_dir.join("chunks")) else {
        return 0;
    };
    shards
        .filter_map(Result::ok)
        .filter_map(|shard| std::fs::read_dir(shard.path()).ok())
        .map(|files| files.count())
        .sum()
}

/// Returns the `resumed=N` value of the last "download started" log line.
fn last_resumed(log: &str) -> Option<usize> {
    let line = log.lines().rev().find(|l| l.contains("download started"))?;
    let value = line.split("resumed=").nth(1)?;
    value.split_whitespace().next()?.parse().ok()
}

#[test]
fn restarted_node_skips_verified_chunks() {
    let admin = Admin::new();
    let payload = random_bytes(CHUNK * CHUNKS);
    let patch = admin.add_patch("big", &payload, CHUNK as u32);
    let policy = admin.sign_policy("big", &[&patch.reference], "admin.key");

    let publisher = Node::start(&admin, NodeOptions::new("n0", "site-a").observer());
    let mut options = NodeOptions::new("n1", "site-a").bootstrap(&publisher);
    // One request in flight keeps the download slow enough to interrupt.
    options.requests_per_peer = Some(1);
    let mut fetcher = Node::start(&admin, options);
    publisher.wait_for_peers(1);
    admin.publish_ok(&publisher.url, &[&patch.dir, &policy]);

    wait_until(
        "the fetcher to store 150 chunks",
        Duration::from_secs(60),
        || (stored_chunks(fetcher.data_dir()) >= 150).then_some(()),
    );
    fetcher.kill();
    let before = stored_chunks(fetcher.data_dir());
    assert!(
        before < CHUNKS,
        "the download finished before the kill; make it larger"
    );

    fetcher.restart();
    wait_installed(
        &publisher,
        &["n1"],
        &patch.reference,
        Duration::from_secs(120),
    );
    assert_eq!(
        fetcher.installed_hash().as_deref(),
        Some(patch.payload_hash.as_str())
    );

    let log = fetcher.log();
    let resumed = last_resumed(&log).expect("a download started line after the restart");
    assert!(
        resumed >= before,
        "resumed {resumed} chunks but {before} were stored"
    );

    // Bytes are counted per run, so after the restart only missing chunks count.
    let status = publisher.status().expect("status");
    let entry = patchmesh_tests::patch_status(&status, "n1", &patch.reference).expect("reported");
    let fetched = entry["bytes_same_site"].as_u64().unwrap_or(0)
        + entry["bytes_cross_site"].as_u64().unwrap_or(0);
    assert_eq!(
        fetched,
        ((CHUNKS - resumed) * CHUNK) as u64,
        "bytes fetched after the restart"
    );
}
