//! Attacks on a node that serves as a circuit relay, and on a node reached
//! through one. The tests flood the relay with reservations past its cap,
//! push bulk data through a circuit past its byte limit, and request chunks
//! over a relayed connection.
//!
//! Every node is a real `patchmesh-node` on loopback. The attackers are
//! [`RelayClient`]s, which speak the relay client protocol and reach peers
//! only through circuits unless a test dials them directly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use patchmesh_node::config::RelayConfig;
use patchmesh_node::net::codec::ChunkReply;
use patchmesh_node::net::direct_only::is_relayed;
use patchmesh_protocol::wire::{Hello, SyncRequest, SyncResponse};
use patchmesh_protocol::{Hash, Signed};
use patchmesh_tests::attack::{count_log_lines, wait_log_line};
use patchmesh_tests::hostile::relay::{RelayClient, Reservation};
use patchmesh_tests::{patch_chunk_names, random_bytes, wait_until, Admin, Node, NodeOptions};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// How long a client waits for a reservation decision or a connection.
const WAIT: Duration = Duration::from_secs(20);

/// Builds the `Hello` a hostile client sends for `host`.
fn hostile_hello(host: &str) -> Hello {
    Hello {
        host: host.into(),
        site: "site-a".into(),
        agent_version: "0.0.0-hostile".into(),
        ..Hello::default()
    }
}

fn start_client(host: &str) -> RelayClient {
    RelayClient::start(hostile_hello(host)).expect("failed to start relay client")
}

fn tcp_addr(node: &Node) -> &str {
    node.addrs
        .iter()
        .find(|addr| addr.contains("/tcp/"))
        .expect("node has no TCP listen address")
}

fn node_id(node: &Node) -> PeerId {
    node.peer.parse().expect("invalid node peer id")
}

/// Starts a relay server with `relay`'s limits.
fn start_relay(admin: &Admin, relay: RelayConfig) -> Node {
    Node::start(
        admin,
        NodeOptions::new("relay", "site-a").relay(RelayConfig {
            server: true,
            ..relay
        }),
    )
}

/// Starts a node with `--relay` pointing at `relay`'s TCP address and waits
/// until the relay has reserved a slot for it.
fn start_behind_relay(admin: &Admin, host: &str, relay: &Node) -> Node {
    let node = Node::start(
        admin,
        NodeOptions::new(host, "site-a").relay(RelayConfig {
            addrs: vec![tcp_addr(relay).to_string()],
            ..RelayConfig::default()
        }),
    );
    wait_log_line(relay, &["relay slot reserved for peer", &node.peer]);
    node
}

/// Reads `VmRSS` of `/proc/PID/status`, in bytes.
fn read_vm_rss(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("failed to read /proc status");
    let line = text
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS line not found");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("invalid VmRSS value");
    kib * KIB
}

/// Waits until `counter` has not changed for 300 ms and returns it.
fn wait_until_settled(counter: &AtomicU64) -> u64 {
    let mut last = counter.load(Ordering::Relaxed);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = counter.load(Ordering::Relaxed);
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Maximum reservations of the relay in the flood test, the honest one included.
const RESERVATION_CAP: usize = 4;

/// Number of hostile identities that request a reservation after the honest node.
const FLOOD_IDENTITIES: usize = 8;

#[test]
fn reservation_flood_keeps_honest_reservation() {
    let admin = Admin::new();
    let relay = start_relay(
        &admin,
        RelayConfig {
            max_reservations: RESERVATION_CAP,
            ..RelayConfig::default()
        },
    );
    let honest = start_behind_relay(&admin, "behind-nat", &relay);
    let patch = admin.add_patch("relayed", &random_bytes(50_000), 64 * 1024);
    let policy_path = admin.sign_policy("relayed", &[&patch.reference], "admin.key");
    admin.publish_ok(&honest.url, &[&patch.dir, &policy_path]);

    // Each identity requests once, one after the other, so the first ones fill
    // the slots the honest node left and every later one is denied.
    let flood: Vec<RelayClient> = (0..FLOOD_IDENTITIES)
        .map(|i| start_client(&format!("flood-{i}")))
        .collect();
    let mut accepted = Vec::new();
    let mut denied = Vec::new();
    for hostile in &flood {
        match hostile
            .reserve(tcp_addr(&relay), WAIT)
            .expect("relay sent no reservation decision")
        {
            Reservation::Accepted => accepted.push(hostile.peer_id()),
            Reservation::Denied(error) => denied.push((hostile.peer_id(), error)),
        }
    }

    assert_eq!(
        accepted,
        flood
            .iter()
            .take(RESERVATION_CAP - 1)
            .map(RelayClient::peer_id)
            .collect::<Vec<_>>(),
        "the identities before the cap get the free slots"
    );
    assert_eq!(denied.len(), FLOOD_IDENTITIES - (RESERVATION_CAP - 1));
    for (peer, error) in &denied {
        assert!(
            error.contains("ResourceLimitExceeded"),
            "{peer} denied for another reason: {error}"
        );
        wait_log_line(&relay, &["relay slot request denied", &peer.to_string()]);
    }
    assert_eq!(
        count_log_lines(&relay, &["relay slot request denied"]),
        denied.len(),
        "the relay logs one denial per denied identity"
    );

    // A peer that can reach the honest node only through the relay still
    // gets its policy there, with every slot taken by the flood.
    let reader = start_client("reader");
    reader
        .connect_via(tcp_addr(&relay), node_id(&honest), WAIT)
        .expect("failed to open a circuit to the honest node");
    let connections = reader
        .connections(node_id(&honest))
        .expect("failed to list connections");
    assert!(
        !connections.is_empty(),
        "the reader has no connection to the honest node"
    );
    assert!(
        connections.iter().all(is_relayed),
        "the reader reaches the honest node only through the relay: {connections:?}"
    );

    let policy = std::fs::read(&policy_path).expect("failed to read policy");
    let policy_id = Signed::from_bytes(&policy)
        .expect("invalid signed policy")
        .id();
    let summary = reader
        .sync(node_id(&honest), SyncRequest::Summary)
        .expect("summary request through the circuit failed");
    let SyncResponse::Summary(entries) = summary else {
        panic!("expected a summary, got {summary:?}");
    };
    assert!(
        entries.iter().any(|entry| entry.id == policy_id),
        "the honest node's summary lists its policy"
    );
    let objects = reader
        .sync(node_id(&honest), SyncRequest::Get(vec![policy_id]))
        .expect("policy request through the circuit failed");
    assert!(
        matches!(&objects, SyncResponse::Objects(list) if list == &vec![policy.clone()]),
        "the honest node sends its policy through the circuit: {objects:?}"
    );
    assert_eq!(
        count_log_lines(&honest, &["relay reservation lost"]),
        0,
        "the honest node keeps its reservation"
    );
}

/// Byte limit per circuit, both directions together, in the bulk test.
const CIRCUIT_BYTES: u64 = 256 * KIB;

/// Bytes each hostile sender tries to push through its circuit.
const PUSH_BYTES: u64 = 32 * MIB;

/// Number of hostile sender and receiver pairs pushing at once.
const PAIRS: usize = 3;

/// Maximum growth of the relay's `VmRSS` across the pushes. It covers the
/// Yamux and Noise buffers of the circuits and allocator slack, and is an
/// estimate. Without the byte limit the relay would carry `PAIRS` x
/// `PUSH_BYTES`.
const RSS_SLACK: u64 = 24 * MIB;

#[test]
fn bulk_push_is_cut_at_circuit_limit() {
    let admin = Admin::new();
    let relay = start_relay(
        &admin,
        RelayConfig {
            max_circuit_bytes: CIRCUIT_BYTES,
            ..RelayConfig::default()
        },
    );
    let relay_pid = relay.pid().expect("relay process is not running");

    let mut pairs = Vec::new();
    for i in 0..PAIRS {
        let receiver = start_client(&format!("sink-{i}"));
        let reservation = receiver
            .reserve(tcp_addr(&relay), WAIT)
            .expect("relay sent no reservation decision");
        assert_eq!(reservation, Reservation::Accepted);
        let sender = start_client(&format!("source-{i}"));
        sender
            .connect_via(tcp_addr(&relay), receiver.peer_id(), WAIT)
            .expect("failed to open a circuit to the receiver");
        pairs.push((sender, receiver));
    }
    let rss_before = read_vm_rss(relay_pid);

    let started = Instant::now();
    let pushes: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|(sender, receiver)| {
                scope.spawn(|| {
                    sender
                        .push(receiver.peer_id(), PUSH_BYTES)
                        .expect("push did not end")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("push thread panicked"))
            .collect()
    });
    let elapsed = started.elapsed();
    let rss_after = read_vm_rss(relay_pid);
    eprintln!(
        "{PAIRS} pushes of {PUSH_BYTES} bytes ended after {elapsed:?}, relay VmRSS {rss_before} -> {rss_after} bytes"
    );

    for ((sender, receiver), push) in pairs.iter().zip(&pushes) {
        let received = wait_until_settled(&receiver.bulk().received);
        let sent = sender.bulk().sent.load(Ordering::Relaxed);
        eprintln!(
            "pair {}: sent {sent}, received {received}, push {push:?}",
            sender.peer_id()
        );
        assert!(push.is_err(), "the push was not cut: {push:?}");
        assert!(sent < PUSH_BYTES, "the sender wrote the whole push");

        // The limit counts the circuit's Noise and Yamux framing too, and
        // the receiver loses what it had not read when the relay cut the
        // circuit, so a varying amount below the limit arrives.
        assert!(
            received <= CIRCUIT_BYTES,
            "{received} bytes got through a circuit limited to {CIRCUIT_BYTES}"
        );
        assert!(received > 0, "no byte got through the circuit");

        // The relay logs this error only once it has forwarded more than
        // the limit, so the cut came at the limit and not earlier.
        wait_log_line(
            &relay,
            &[
                "relay circuit closed",
                &sender.peer_id().to_string(),
                "Max circuit bytes reached",
            ],
        );
    }

    assert!(
        rss_after <= rss_before + RSS_SLACK,
        "relay VmRSS grew from {rss_before} to {rss_after} bytes"
    );
}

#[test]
fn chunks_not_served_over_relayed_connection() {
    let admin = Admin::new();
    let relay = start_relay(&admin, RelayConfig::default());
    let target = start_behind_relay(&admin, "target", &relay);
    let payload = random_bytes(40_000);
    let patch = admin.add_patch("held", &payload, 64 * 1024);
    admin.publish_ok(&target.url, &[&patch.dir]);

    // The payload fits in one chunk, so that chunk is the payload.
    let names = patch_chunk_names(&patch);
    assert_eq!(names.len(), 1, "one chunk: {names:?}");
    let hash: Hash = names
        .first()
        .and_then(|name| name.parse().ok())
        .expect("chunk file name is not a valid hash");

    let hostile = start_client("chunk-thief");
    hostile
        .connect_via(tcp_addr(&relay), node_id(&target), WAIT)
        .expect("failed to open a circuit to the target");
    let reply = hostile
        .request_chunk(node_id(&target), hash)
        .expect("chunk request did not end");
    match &reply {
        Err(error) => assert!(
            error.contains("UnsupportedProtocols"),
            "the chunk request failed for another reason: {error}"
        ),
        Ok(reply) => panic!("the target served a chunk request over a circuit: {reply:?}"),
    }

    // Sync requests are still served on the circuit, so the circuit itself works.
    let summary = hostile
        .sync(node_id(&target), SyncRequest::Summary)
        .expect("summary request through the circuit failed");
    assert!(matches!(summary, SyncResponse::Summary(_)), "{summary:?}");

    // The same request over a direct connection is served, so the rejection
    // above comes from the circuit and not from the request.
    hostile
        .connect_direct(tcp_addr(&target), node_id(&target), WAIT)
        .expect("failed to connect directly to the target");
    wait_until("the target to close the redundant circuit", WAIT, || {
        let connections = hostile.connections(node_id(&target)).ok()?;
        connections
            .iter()
            .all(|addr| !is_relayed(addr))
            .then_some(())
    });
    let direct = hostile
        .request_chunk(node_id(&target), hash)
        .expect("chunk request did not end");
    match direct {
        Ok(ChunkReply::Data(bytes)) => assert_eq!(bytes, payload),
        other => panic!("the target did not serve the chunk directly: {other:?}"),
    }
}
