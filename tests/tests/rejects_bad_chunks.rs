//! Chunk data from a hostile peer: wrong bytes are rejected and fetched
//! from an honest peer, and an oversized response frame closes that stream
//! with a logged error. Either way the node installs the right payload.

use std::collections::HashMap;
use std::time::Duration;

use patchmesh_protocol::Hash;
use patchmesh_tests::hostile::{ChunkMode, HostileConfig, HostilePeer};
use patchmesh_tests::{random_bytes, wait_installed, Admin, Node, NodeOptions, Patch};

/// Reads every chunk file of `patch`, by hash.
fn chunk_files(patch: &Patch) -> HashMap<Hash, Vec<u8>> {
    let mut chunks = HashMap::new();
    for entry in std::fs::read_dir(patch.dir.join("chunks")).expect("chunk folder") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let hash: Hash = name.parse().expect("chunk files are named by hash");
        chunks.insert(hash, std::fs::read(&path).expect("read chunk"));
    }
    chunks
}

/// Runs a fetching node next to a hostile peer of its own site that claims
/// every chunk and responds in `mode`, with the honest publisher in another
/// site. Returns the fetching node's log and the hostile peer's request count.
fn fetch_beside_hostile(mode: ChunkMode) -> (String, u32) {
    let admin = Admin::new();
    let payload = random_bytes(4 * 1024 * 1024);
    let patch = admin.add_patch("contested", &payload, 64 * 1024);
    let policy = admin.sign_policy("contested", &[&patch.reference], "admin.key");

    let mut config = HostileConfig::default();
    config.hello.site = "site-b".into();
    config.hello.host = "hostile".into();
    // A peer that does not fetch across sites is never the one its site
    // waits for, so the honest node can turn to the publisher.
    config.hello.wan = false;
    config.chunks = chunk_files(&patch);
    config.chunk_mode = mode;
    let hostile = HostilePeer::start(config).expect("hostile peer starts");

    let publisher = Node::start(&admin, NodeOptions::new("n0", "site-a").observer());
    admin.publish_ok(&publisher.url, &[&patch.dir]);
    let fetcher = Node::start(
        &admin,
        NodeOptions::new("n1", "site-b").bootstrap(&publisher),
    );
    for addr in &fetcher.addrs {
        if addr.contains("/tcp/") {
            hostile.dial(addr).expect("dial the fetcher");
        }
    }
    let fetcher_peer = fetcher.peer.parse().expect("peer id");
    hostile
        .wait_connected(fetcher_peer, Duration::from_secs(20))
        .expect("hostile peer connects");
    fetcher.wait_for_peers(2);

    admin.publish_ok(&publisher.url, &[&policy]);
    wait_installed(
        &publisher,
        &["n1"],
        &patch.reference,
        Duration::from_secs(90),
    );
    assert_eq!(
        fetcher.installed_hash().as_deref(),
        Some(patch.payload_hash.as_str())
    );
    (fetcher.log(), hostile.counters().total_chunk_requests())
}

#[test]
fn wrong_chunk_rejected_and_refetched() {
    let (log, requests) = fetch_beside_hostile(ChunkMode::Wrong);
    assert!(
        requests > 0,
        "the fetching node never asked the hostile peer"
    );
    assert!(
        log.contains("chunk from peer rejected"),
        "no rejection logged:\n{log}"
    );
    assert!(log.contains("peer penalised"), "no penalty logged:\n{log}");
}

#[test]
fn oversized_chunk_frame_closes_stream() {
    let (log, requests) = fetch_beside_hostile(ChunkMode::Oversized);
    assert!(
        requests > 0,
        "the fetching node never asked the hostile peer"
    );
    assert!(
        log.contains("chunk request failed"),
        "no failed request logged:\n{log}"
    );
    assert!(
        log.contains("exceeds the limit"),
        "the error does not name the limit:\n{log}"
    );
}
