//! A download surrounded by hostile peers: one serves wrong bytes, one
//! claims every chunk and then replies `Missing`, one never replies. They
//! are in the fetching node's own site, so it asks them first. The node
//! must penalise the liar and only the liar, drop the silent peer once it
//! falls below the throughput floor, and finish from the one honest peer
//! long before a request timeout would have freed the silent peer's chunks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use patchmesh_protocol::Hash;
use patchmesh_tests::attack::{connect_hostile, peer_view};
use patchmesh_tests::hostile::{ChunkMode, HostileConfig, HostilePeer};
use patchmesh_tests::{random_bytes, wait_until, Admin, Node, NodeOptions, Patch};

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

/// Starts a hostile peer of `site` in `mode` and connects it to `node`.
fn hostile_beside(node: &Node, site: &str, patch: &Patch, mode: ChunkMode) -> HostilePeer {
    let mut config = HostileConfig::default();
    config.hello.site = site.into();
    config.hello.host = format!("hostile-{mode:?}").to_lowercase();
    config.hello.wan = false;
    config.chunks = chunk_files(patch);
    config.chunk_mode = mode;
    connect_hostile(node, config)
}

fn penalty(node: &Node, peer: &str) -> i64 {
    peer_view(node, peer)
        .and_then(|view| view["penalty"].as_i64())
        .unwrap_or(0)
}

#[test]
fn download_completes_with_three_hostile_peers() {
    let admin = Admin::new();
    let patch = admin.add_patch("besieged", &random_bytes(1024 * 1024), 64 * 1024);
    let policy = admin.sign_policy("besieged", &[&patch.reference], "admin.key");

    let publisher = Node::start(&admin, NodeOptions::new("honest", "site-a").observer());
    admin.publish_ok(&publisher.url, &[&patch.dir]);
    let fetcher = Node::start(
        &admin,
        NodeOptions::new("fetcher", "site-b").bootstrap(&publisher),
    );
    let liar = hostile_beside(&fetcher, "site-b", &patch, ChunkMode::Wrong);
    let claimer = hostile_beside(&fetcher, "site-b", &patch, ChunkMode::Missing);
    let silent = hostile_beside(&fetcher, "site-b", &patch, ChunkMode::Silent);
    fetcher.wait_for_peers(4);

    let started = Instant::now();
    admin.publish_ok(&publisher.url, &[&policy]);
    // Without the throughput floor the silent peer's chunks wait for the
    // 60 s request timeout at least once.
    wait_until("fetcher to install", Duration::from_secs(55), || {
        fetcher.installed_hash()
    });
    let took = started.elapsed();
    assert_eq!(
        fetcher.installed_hash().as_deref(),
        Some(patch.payload_hash.as_str()),
        "installed payload differs from the signed one"
    );

    // Every hostile peer was asked, so each defence was exercised.
    for (name, peer) in [("liar", &liar), ("claimer", &claimer), ("silent", &silent)] {
        let asked = peer.counters().total_chunk_requests();
        assert!(asked > 0, "{name} was never asked for a chunk");
    }

    let log = fetcher.log();
    let liar_id = liar.peer_id().to_base58();
    let silent_id = silent.peer_id().to_base58();
    assert!(
        log.lines()
            .any(|l| l.contains("peer penalised") && l.contains(&liar_id)),
        "liar not penalised in the log"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("below the throughput floor") && l.contains(&silent_id)),
        "silent peer not dropped for slowness"
    );
    // The liar is penalised per bad chunk and blocked past 100 points, so
    // it may no longer be listed at all.
    if let Some(view) = peer_view(&fetcher, &liar_id) {
        assert!(
            view["penalty"].as_i64().unwrap_or(0) >= 25,
            "liar's penalty too low: {view}"
        );
    }
    assert_eq!(
        penalty(&fetcher, &publisher.peer),
        0,
        "honest peer penalised"
    );
    eprintln!("download with three hostile peers took {took:?}");
}
