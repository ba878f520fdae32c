//! Network-level attacks on a real node: peers that send frames over the
//! size limit, cut short, stalled one byte short or without end, chunk
//! replies at the size cap, floods of chunk requests, and crowds of silent
//! Sybil peers.
//!
//! Each test checks that the node rejects the attack, logs it, penalises
//! only the attacker, keeps its memory bounded, and still completes an
//! honest download.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use patchmesh_protocol::wire::Hello;
use patchmesh_protocol::{limits, Hash};
use patchmesh_tests::hostile::raw::{RawChunkReply, RawFrame, RawPeer};
use patchmesh_tests::hostile::{ChunkMode, HostileConfig, HostilePeer};
use patchmesh_tests::{get_json, random_bytes, wait_until, Admin, Node, NodeOptions, Patch};
use serde_json::Value;

const MIB: u64 = 1024 * 1024;

/// Reads a `kB` field (`VmRSS`, `VmHWM`) of `/proc/PID/status`, in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples a process's `VmRSS` every 20 ms on a thread and keeps the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let stop = stop.clone();
            let peak = peak.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = proc_status_bytes(pid, "VmRSS:") {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns the largest `VmRSS` seen, in bytes.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Chunk hashes of `patch`, from its chunk folder.
fn chunk_hashes(patch: &Patch) -> Vec<Hash> {
    std::fs::read_dir(patch.dir.join("chunks"))
        .expect("chunk folder")
        .map(|entry| {
            let name = entry.expect("entry").file_name();
            name.to_string_lossy()
                .parse()
                .expect("chunk files are named by hash")
        })
        .collect()
}

fn tcp_addr(node: &Node) -> &str {
    node.addrs
        .iter()
        .find(|addr| addr.contains("/tcp/"))
        .expect("node listens on TCP")
}

fn hello(host: &str, site: &str) -> Hello {
    Hello {
        host: host.into(),
        site: site.into(),
        groups: Vec::new(),
        observer: false,
        wan: false,
        agent_version: "0.0.0-hostile".into(),
        seq: 1,
    }
}

/// Starts a raw peer and connects it to `node`.
fn raw_beside(node: &Node, host: &str, reply: RawChunkReply) -> RawPeer {
    let raw = RawPeer::start(hello(host, &node.options.site), reply).expect("raw peer starts");
    raw.dial(tcp_addr(node)).expect("dial the node");
    raw.wait_connected(node_id(node), Duration::from_secs(20))
        .expect("raw peer connects");
    raw
}

fn node_id(node: &Node) -> PeerId {
    node.peer.parse().expect("peer id")
}

/// Returns `node`'s view of `peer` from `GET /v1/peers`.
fn peer_view(node: &Node, peer: &str) -> Option<Value> {
    let peers = get_json(&format!("{}/v1/peers", node.url))?;
    peers
        .as_array()?
        .iter()
        .find(|p| p["peer"] == peer)
        .cloned()
}

/// Waits until `node` has blocked `peer` and the connection is gone.
fn wait_blocked(node: &Node, raw: &RawPeer, what: &str) {
    let id = raw.peer_id().to_base58();
    wait_until(
        &format!("{what} to be blocked"),
        Duration::from_secs(30),
        || {
            let blocked = node
                .log()
                .lines()
                .any(|l| l.contains("peer blocked") && l.contains(&id));
            let gone = !raw.connected().ok()?.contains(&node_id(node));
            (blocked && gone).then_some(())
        },
    );
}

/// Waits until `node` has logged `count` malformed sync requests from
/// `raw`, or has closed the connection to it. The node frees a frame's sync
/// stream when it logs it, even while the raw peer keeps writing junk.
fn wait_malformed_logged(node: &Node, raw: &RawPeer, count: usize) {
    let id = raw.peer_id().to_base58();
    wait_until(
        &format!("{count} malformed sync requests logged"),
        Duration::from_secs(30),
        || {
            let logged = node
                .log()
                .lines()
                .filter(|l| l.contains("malformed sync request") && l.contains(&id))
                .count();
            let disconnected = !raw.connected().ok()?.contains(&node_id(node));
            (logged >= count || disconnected).then_some(())
        },
    );
}

/// Publishes `patch` with a policy at `publisher` and waits until `node`
/// installed it.
fn publish_and_install(admin: &Admin, publisher: &Node, node: &Node, patch: &Patch) -> Duration {
    publish_and_install_within(admin, publisher, node, patch, Duration::from_secs(60))
}

/// Publishes `patch` with a policy at `publisher` and waits up to `timeout`
/// until `node` installed it.
fn publish_and_install_within(
    admin: &Admin,
    publisher: &Node,
    node: &Node,
    patch: &Patch,
    timeout: Duration,
) -> Duration {
    let policy = admin.sign_policy(
        &patch.reference.replace('@', "-"),
        &[&patch.reference],
        "admin.key",
    );
    let started = Instant::now();
    admin.publish_ok(&publisher.url, &[&patch.dir, &policy]);
    wait_until(&format!("{} installed", patch.reference), timeout, || {
        (node.installed_hash()? == patch.payload_hash).then_some(())
    });
    started.elapsed()
}

/// Junk sync frames at the size limit sent by the sync attacker.
const JUNK_SYNC_FRAMES: u64 = 32;

/// Sync streams the node accepts per connection.
const SYNC_STREAMS: u64 = limits::MAX_SYNC_STREAMS as u64;

/// Stalled sync frames opened at once on one connection: twice the 64
/// streams per connection that the node accepted before it capped them.
const STALLED_FRAMES: u64 = 128;

/// Memory beyond the stalled frames while the node keeps them: Yamux
/// buffers of the streams it refused, and allocator slack. An estimate.
const STALL_SLACK: u64 = 16 * MIB;

/// Chunk requests the node keeps in flight per peer (the default
/// `requests_per_peer`).
const REQUESTS_PER_PEER: u64 = 8;

/// Chunk serves one peer may keep in progress: `requests_per_peer` times 4.
const SERVES_PER_PEER: u64 = REQUESTS_PER_PEER * 4;

/// Chunk size of the patches in the memory test.
const CHUNK: u32 = 256 * 1024;

/// Memory beyond the frames for the honest downloads, libp2p and Yamux
/// stream buffers and allocator slack. An estimate.
const SLACK: u64 = 48 * MIB;

#[test]
fn endless_data_keeps_memory_bounded() {
    let admin = Admin::new();
    let seeder = Node::start(&admin, NodeOptions::new("seeder", "site-a").observer());
    let node = Node::start(
        &admin,
        NodeOptions::new("victim", "site-b").bootstrap(&seeder),
    );
    node.wait_for_peers(1);
    let pid = node.pid().expect("node runs");
    std::thread::sleep(Duration::from_secs(1));
    let baseline = proc_status_bytes(pid, "VmRSS:").expect("VmRSS readable");
    let sampler = RssSampler::start(pid);

    // Many sync frames at once on one connection, each one byte short of
    // the limit and left open. This runs first, so the node's allocator has
    // no freed memory from other attacks to hide the growth in.
    let victim = node_id(&node);
    let staller = raw_beside(&node, "raw-stall", RawChunkReply::Missing);
    let stall_sampler = RssSampler::start(pid);
    for _ in 0..STALLED_FRAMES {
        staller
            .send_sync(victim, RawFrame::StallAtLimit)
            .expect("send");
    }
    wait_until(
        "every stalled frame held or refused by the node",
        Duration::from_secs(20),
        || {
            let counters = staller.counters();
            let frames_held = counters.stalled_frames.load(Ordering::Relaxed);
            let ended = counters.sync_requests_ended.load(Ordering::Relaxed);
            (frames_held + ended >= STALLED_FRAMES).then_some(())
        },
    );
    // The node keeps the stalled frames until its 30 s request timeout.
    std::thread::sleep(Duration::from_secs(1));
    let frames_held = staller.counters().stalled_frames.load(Ordering::Relaxed);
    let stall_peak = stall_sampler.finish();
    let stall_allowed = SYNC_STREAMS * limits::MAX_CONTROL_FRAME_BYTES as u64 + STALL_SLACK;
    println!(
        "{frames_held} of {STALLED_FRAMES} stalled frames held; VmRSS peak {} MiB, bound {} MiB",
        stall_peak / MIB,
        (baseline + stall_allowed) / MIB
    );
    assert!(
        frames_held <= SYNC_STREAMS,
        "the node read {frames_held} stalled frames on one connection, over its cap of {SYNC_STREAMS}"
    );
    // Only the node's own requests to the staller may take the other
    // streams.
    let min_held = SYNC_STREAMS - limits::MAX_SYNC_REQUESTS_IN_FLIGHT as u64;
    assert!(
        frames_held >= min_held,
        "the node read only {frames_held} stalled frames, fewer than {min_held}, so the attack measured too little"
    );
    assert!(
        stall_peak < baseline + stall_allowed,
        "peak VmRSS {} MiB with stalled frames, over the bound of {} MiB",
        stall_peak / MIB,
        (baseline + stall_allowed) / MIB
    );
    drop(staller);

    // Sync frames over the limit, cut short, and junk at the limit followed
    // by junk without end. The junk goes out in waves that stay under the
    // node's stream cap, because the node drops streams past the cap
    // unread and so would not penalise the attacker for them.
    let syncer = raw_beside(&node, "raw-sync", RawChunkReply::Missing);
    syncer.send_sync(victim, RawFrame::OverLimit).expect("send");
    syncer
        .send_sync(
            victim,
            RawFrame::CutShort {
                claimed: 1000,
                sent: 500,
            },
        )
        .expect("send");
    wait_malformed_logged(&node, &syncer, 2);
    let wave = SYNC_STREAMS / 2;
    let mut sent = 2;
    while sent < 2 + JUNK_SYNC_FRAMES {
        for _ in 0..wave {
            syncer
                .send_sync(victim, RawFrame::JunkAtLimit)
                .expect("send");
        }
        sent += wave;
        wait_malformed_logged(&node, &syncer, sent as usize);
    }
    wait_blocked(&node, &syncer, "sync attacker");

    // Chunk replies at the size limit, followed by junk without end.
    let small = admin.add_patch("endless", &random_bytes(4 * MIB as usize), CHUNK);
    let streamer = raw_beside(&node, "raw-chunks", RawChunkReply::JunkAtLimit);
    let first = publish_and_install(&admin, &seeder, &node, &small);
    assert!(
        streamer.counters().chunk_requests.load(Ordering::Relaxed) > 0,
        "the chunk attacker was never asked for a chunk"
    );
    // A peer on probation gets one request at a time, so one junk reply
    // excludes it from the download before it can send more.
    let streamer_id = streamer.peer_id().to_base58();
    wait_until("chunk attacker penalised", Duration::from_secs(20), || {
        let view = peer_view(&node, &streamer_id)?;
        (view["penalty"].as_i64()? >= 25).then_some(())
    });

    // A flood of chunk requests whose replies are never read.
    let flooder = raw_beside(&node, "raw-flood", RawChunkReply::Missing);
    let hashes = chunk_hashes(&small);
    let flood: Vec<Hash> = hashes.iter().cycle().take(400).copied().collect();
    flooder.flood_chunk_requests(victim, flood).expect("flood");
    wait_blocked(&node, &flooder, "request flooder");

    // The node still completes an honest download.
    let after = admin.add_patch("after", &random_bytes(2 * MIB as usize), CHUNK);
    let second = publish_and_install(&admin, &seeder, &node, &after);

    let peak_sampled = sampler.finish();
    let peak = proc_status_bytes(pid, "VmHWM:")
        .expect("VmHWM readable")
        .max(peak_sampled);
    // The bound adds what the limits let each attacker make the node keep
    // in memory. The sync attackers, one after the other: frames at the
    // limit on every sync stream of one connection. The chunk attacker: its
    // replies in flight at the chunk frame limit. The flooder: the serves
    // one peer may keep in progress.
    let allowed = SYNC_STREAMS * limits::MAX_CONTROL_FRAME_BYTES as u64
        + REQUESTS_PER_PEER * limits::MAX_CHUNK_FRAME_BYTES as u64
        + SERVES_PER_PEER * u64::from(CHUNK)
        + SLACK;
    println!(
        "VmRSS before the attacks {} MiB; peak {} MiB (sampled {} MiB); bound {} MiB; \
         downloads took {first:?} and {second:?}",
        baseline / MIB,
        peak / MIB,
        peak_sampled / MIB,
        (baseline + allowed) / MIB
    );
    assert!(
        peak < baseline + allowed,
        "peak VmRSS {} MiB over the bound of {} MiB",
        peak / MIB,
        (baseline + allowed) / MIB
    );

    // The node cut every endless stream: none reached the raw peer's own
    // cap of 256 MiB past a frame.
    for (name, raw) in [("sync attacker", &syncer), ("chunk attacker", &streamer)] {
        let past = raw.counters().bytes_past_frames.load(Ordering::Relaxed);
        println!("{name}: {} KiB written past its frames", past / 1024);
        assert!(
            past < 256 * MIB,
            "{name} wrote {past} bytes past its frames"
        );
    }

    let log = node.log();
    let syncer_id = syncer.peer_id().to_base58();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("malformed sync request") && l.contains(&syncer_id))
        .collect();
    assert!(
        failures.iter().any(|l| l.contains("exceeds the limit")),
        "frame over the limit not logged: {failures:#?}"
    );
    assert!(
        failures.iter().any(|l| l.contains("cut short")),
        "frame cut short not logged: {failures:#?}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("chunk from peer rejected") && l.contains(&streamer_id)),
        "junk chunk reply not logged"
    );
    let flooder_id = flooder.peer_id().to_base58();
    assert!(
        log.lines()
            .any(|l| l.contains("too many chunk requests") && l.contains(&flooder_id)),
        "request flood not logged"
    );

    // Only the attackers were penalised.
    let seeder_view = peer_view(&node, &seeder.peer).expect("seeder still connected");
    assert_eq!(
        seeder_view["penalty"], 0,
        "honest peer penalised: {seeder_view}"
    );
}

/// Silent Sybil peers around the node.
const SYBILS: usize = 40;

/// Starts `count` silent Sybil peers of `node`'s site, connects each to
/// `node` and waits until the node lists them all. With `claim_chunks` they
/// claim every chunk in their chunk maps and never reply to a request.
fn surround(node: &Node, count: usize, claim_chunks: bool) -> Vec<HostilePeer> {
    let started = Instant::now();
    let sybils: Vec<HostilePeer> = (0..count)
        .map(|i| {
            let mut config = HostileConfig::default();
            config.hello.site = node.options.site.clone();
            config.hello.host = format!("sybil-{i}");
            config.claim_all_chunks = claim_chunks;
            config.chunk_mode = ChunkMode::Silent;
            let sybil = HostilePeer::start(config).expect("sybil starts");
            sybil.dial(tcp_addr(node)).expect("dial");
            sybil
        })
        .collect();
    for sybil in &sybils {
        sybil
            .wait_connected(node_id(node), Duration::from_secs(30))
            .expect("sybil connects");
    }
    node.wait_for_peers(count);
    println!("{count} sybils connected in {:?}", started.elapsed());
    sybils
}

#[test]
fn silent_sybils_do_not_starve_honest_peer() {
    let admin = Admin::new();
    let node = Node::start(&admin, NodeOptions::new("surrounded", "site-a"));

    // Sybils connect first, all from 127.0.0.1. They claim no chunk, never
    // reply to a chunk request, offer nothing by anti-entropy and never
    // forward gossip (they never report a validation result).
    let sybils = surround(&node, SYBILS, false);

    // The one honest peer arrives last, and the admin publishes there.
    let honest = Node::start(
        &admin,
        NodeOptions::new("honest", "site-a").bootstrap(&node),
    );
    node.wait_for_peers(SYBILS + 1);
    let patch = admin.add_patch("sybil-proof", &random_bytes(2 * MIB as usize), 256 * 1024);
    let took = publish_and_install(&admin, &honest, &node, &patch);
    println!("installed among {SYBILS} sybils {took:?} after publishing");
    assert!(
        took < Duration::from_secs(30),
        "install took {took:?} among sybils"
    );

    // The honest peer earned gossip score by delivering the objects first;
    // no sybil did, and none was penalised for staying silent.
    let peers = get_json(&format!("{}/v1/peers", node.url)).expect("peers");
    let peers = peers.as_array().expect("peer list");
    let sybil_ids: HashSet<String> = sybils.iter().map(|s| s.peer_id().to_base58()).collect();
    let honest_view = peers
        .iter()
        .find(|p| p["peer"] == honest.peer.as_str())
        .expect("honest peer listed");
    let honest_score = honest_view["gossip_score"].as_f64().unwrap_or(0.0);
    let best_sybil = peers
        .iter()
        .filter(|p| sybil_ids.contains(p["peer"].as_str().unwrap_or_default()))
        .filter_map(|p| p["gossip_score"].as_f64())
        .fold(f64::MIN, f64::max);
    println!("gossip score: honest {honest_score}, best sybil {best_sybil}");
    assert!(
        honest_score > 0.0,
        "honest peer has no positive gossip score: {honest_view}"
    );
    assert!(
        honest_score > best_sybil,
        "a sybil scores at least the honest peer: {best_sybil} >= {honest_score}"
    );
    assert_eq!(honest_view["penalty"], 0, "honest peer penalised");
    for sybil in &sybils {
        assert_eq!(
            sybil.counters().total_chunk_requests(),
            0,
            "a sybil that claimed no chunk was asked for one"
        );
    }
}

/// Sybils that claim every chunk and never reply to a request. They
/// outnumber the patch's 8 chunks, so they could hold all of them at once.
const CLAIMING_SYBILS: usize = 20;

#[test]
fn chunk_claiming_sybils_only_delay_download() {
    let admin = Admin::new();
    let node = Node::start(&admin, NodeOptions::new("claimed", "site-a"));
    let _sybils = surround(&node, CLAIMING_SYBILS, true);
    let honest = Node::start(
        &admin,
        NodeOptions::new("honest", "site-a").bootstrap(&node),
    );
    node.wait_for_peers(CLAIMING_SYBILS + 1);
    let patch = admin.add_patch("claimed", &random_bytes(2 * MIB as usize), 256 * 1024);
    // Without probation each claimer held every chunk until the 60 s
    // request timeout, one claimer after another.
    let took = publish_and_install_within(&admin, &honest, &node, &patch, Duration::from_secs(120));
    println!("installed among {CLAIMING_SYBILS} chunk-claiming sybils {took:?} after publishing");
    assert!(
        took < Duration::from_secs(30),
        "install took {took:?} among chunk-claiming sybils"
    );
}

/// Inbound connections the target accepts in the connection-cap test.
const TEST_MAX_INBOUND: u32 = 6;

/// Sybils dialing the target in that test, twice its inbound cap.
const FLOODING_SYBILS: usize = 12;

#[test]
fn inbound_cap_keeps_chosen_peers() {
    let admin = Admin::new();
    let honest = Node::start(&admin, NodeOptions::new("honest", "site-a"));
    let mut node = Node::start(
        &admin,
        NodeOptions::new("capped", "site-a").bootstrap(&honest),
    );
    node.kill();
    let mut config = patchmesh_node::config::Config::load(node.data_dir()).expect("node config");
    config.max_inbound_connections = TEST_MAX_INBOUND;
    std::fs::write(node.data_dir().join("config.toml"), config.to_toml()).expect("write config");
    node.restart();
    node.wait_for_peers(1);

    // Twice as many Sybils as inbound slots dial the node. The node dialed
    // the honest peer itself, so that connection does not take a slot.
    let sybils: Vec<HostilePeer> = (0..FLOODING_SYBILS)
        .map(|i| {
            let mut config = HostileConfig::default();
            config.hello.site = node.options.site.clone();
            config.hello.host = format!("flooder-{i}");
            config.chunk_mode = ChunkMode::Silent;
            let sybil = HostilePeer::start(config).expect("sybil starts");
            sybil.dial(tcp_addr(&node)).expect("dial");
            sybil
        })
        .collect();
    wait_until(
        "the node to deny the inbound connections over its cap",
        Duration::from_secs(30),
        || {
            node.log()
                .contains("inbound connections denied")
                .then_some(())
        },
    );
    // Counted from the node's side: a denied connection completes its
    // handshake before the limit closes it, so a sybil may see it open.
    let sybil_ids: HashSet<String> = sybils.iter().map(|s| s.peer_id().to_base58()).collect();
    let peers = get_json(&format!("{}/v1/peers", node.url)).expect("peers");
    let connected = peers
        .as_array()
        .expect("peer list")
        .iter()
        .filter(|p| sybil_ids.contains(p["peer"].as_str().unwrap_or_default()))
        .count();
    println!("{connected} of {FLOODING_SYBILS} sybils connected");
    assert!(
        connected <= TEST_MAX_INBOUND as usize,
        "{connected} sybils connected past the cap of {TEST_MAX_INBOUND}"
    );
    assert!(
        node.peer_count() <= TEST_MAX_INBOUND as usize + 1,
        "the node lists {} peers",
        node.peer_count()
    );

    // The honest peer the node chose still delivers the admin's patch.
    let patch = admin.add_patch("capped", &random_bytes(MIB as usize), 256 * 1024);
    let took = publish_and_install(&admin, &honest, &node, &patch);
    println!("installed behind a full inbound cap {took:?} after publishing");
    drop(sybils);
}
