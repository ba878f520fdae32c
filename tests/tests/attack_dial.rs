//! Tests dial steering against a running node. A hostile peer replies to
//! peer exchange with records that point at hosts outside the fleet, and
//! the node must send nothing to them.
//!
//! The proof is a packet count, not a log line. The outer test builds a
//! network namespace with loopback, a default route into a veth pair and
//! an iptables rule that drops (and counts) every IPv4 packet leaving by any
//! interface but loopback. It then runs the inner test inside that
//! namespace, where the node, a second honest node and the hostile peer
//! all live on loopback. Whatever the node tried to send off loopback over
//! IPv4 shows in the counter and never leaves the namespace. IPv6 has no
//! route there, so a dial to the IPv6 record fails before any packet is sent.

use std::process::Command;
use std::time::Duration;

use patchmesh_protocol::wire::PeerRecord;
use patchmesh_tests::attack::{connect_hostile, peer_view};
use patchmesh_tests::hostile::HostileConfig;
use patchmesh_tests::{binaries, can_build_namespaces, wait_until, Admin, Node, NodeOptions};

/// Environment variable set for the inner test, so it runs only inside the
/// namespace that the outer test built.
const INSIDE_NAMESPACE: &str = "PATCHMESH_DIAL_STEERING_NAMESPACE";

/// Addresses outside the fleet, from the documentation ranges (RFC 5737,
/// RFC 3849) and a DNS name. None of them may be dialed.
const STEERED: [&str; 4] = [
    "/ip4/192.0.2.1/udp/4001/quic-v1",
    "/ip4/198.51.100.7/tcp/4001",
    "/ip6/2001:db8::1/udp/4001/quic-v1",
    "/dns4/updates.example.com/tcp/443",
];

/// Time the node has to act on the records before the packet count is read.
const SETTLE: Duration = Duration::from_secs(5);

/// A network namespace removed on drop.
struct Namespace {
    name: String,
}

impl Namespace {
    /// Builds the namespace with loopback up, a veth pair that carries the
    /// default route, and the counting drop rule.
    fn create(name: &str) -> Namespace {
        run("ip", &["netns", "add", name]);
        let namespace = Namespace { name: name.into() };

        let inner = format!("{name}-a");
        let outer = format!("{name}-b");
        namespace.exec(&["ip", "link", "set", "lo", "up"]);
        namespace.exec(&[
            "ip", "link", "add", &inner, "type", "veth", "peer", "name", &outer,
        ]);
        namespace.exec(&["ip", "addr", "add", "10.79.0.1/30", "dev", &inner]);
        namespace.exec(&["ip", "link", "set", &inner, "up"]);
        namespace.exec(&["ip", "link", "set", &outer, "up"]);
        namespace.exec(&["ip", "route", "add", "default", "dev", &inner]);
        namespace.exec(&["iptables", "-A", "OUTPUT", "!", "-o", "lo", "-j", "DROP"]);
        namespace
    }

    /// Runs a command inside the namespace and fails the test if it fails.
    fn exec(&self, command: &[&str]) {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(command);
        run("ip", &args);
    }

    /// Reads the number of packets the drop rule counted.
    fn dropped_packets(&self) -> u64 {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(["iptables", "-L", "OUTPUT", "-v", "-n", "-x"])
            .output()
            .expect("failed to run iptables");
        assert!(output.status.success(), "iptables -L failed: {output:?}");

        let text = String::from_utf8_lossy(&output.stdout);
        let rule = text
            .lines()
            .find(|line| line.contains("DROP"))
            .unwrap_or_else(|| panic!("drop rule not found in iptables output:\n{text}"));
        rule.split_whitespace()
            .next()
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("packet count missing in drop rule {rule:?}"))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `program` with `args` and fails the test if it fails.
fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|error| panic!("failed to start {program}: {error}"));
    assert!(status.success(), "{program} {args:?} failed: {status}");
}

#[test]
fn steered_peer_exchange_sends_nothing() {
    if !can_build_namespaces(&["ip", "iptables"]) {
        eprintln!("skipped: needs root, ip and iptables to build a network namespace");
        return;
    }

    // Build the node binaries here, outside the namespace, so the inner test
    // finds them.
    binaries();
    let namespace = Namespace::create(&format!("pmdt-{}", std::process::id()));
    let exe = std::env::current_exe().expect("test executable path not found");
    let inner = Command::new("ip")
        .args(["netns", "exec", &namespace.name])
        .arg(exe)
        .args(["--exact", "steered_records_inside_namespace"])
        .args(["--ignored", "--nocapture"])
        .env(INSIDE_NAMESPACE, &namespace.name)
        .output()
        .expect("failed to start the inner test");

    let stdout = String::from_utf8_lossy(&inner.stdout);
    let stderr = String::from_utf8_lossy(&inner.stderr);
    assert!(
        inner.status.success(),
        "inner test failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "inner test did not run:\n{stdout}"
    );

    let dropped = namespace.dropped_packets();
    assert_eq!(
        dropped, 0,
        "the nodes sent {dropped} packets off loopback:\n{stdout}"
    );
}

#[test]
#[ignore = "runs inside the namespace that steered_peer_exchange_sends_nothing builds"]
fn steered_records_inside_namespace() {
    if std::env::var_os(INSIDE_NAMESPACE).is_none() {
        eprintln!("skipped: runs only inside the namespace of steered_peer_exchange_sends_nothing");
        return;
    }

    let admin = Admin::new();
    let target = Node::start(&admin, NodeOptions::new("target", "site-a"));
    let honest = Node::start(&admin, NodeOptions::new("honest", "site-a"));

    // The honest node's record mixes steered addresses with its real
    // loopback ones, so the node must pick the loopback ones. The fake
    // peer is reachable only at steered addresses.
    let mut honest_addrs: Vec<String> = STEERED.iter().map(|addr| addr.to_string()).collect();
    honest_addrs.extend(honest.addrs.iter().cloned());
    let fake = libp2p::PeerId::random().to_string();
    let records = vec![
        PeerRecord {
            peer: honest.peer.clone(),
            addrs: honest_addrs,
            site: "site-a".into(),
        },
        PeerRecord {
            peer: fake.clone(),
            addrs: STEERED.iter().map(|addr| addr.to_string()).collect(),
            site: "site-a".into(),
        },
    ];
    let hostile = connect_hostile(
        &target,
        HostileConfig {
            peer_records: records,
            ..HostileConfig::default()
        },
    );

    // The target meets the honest node only through the hostile peer's
    // records, so the honest parts of those records work.
    wait_until(
        "the target connects to the honest node",
        Duration::from_secs(30),
        || peer_view(&target, &honest.peer),
    );
    assert!(
        hostile.counters().peer_requests > 0,
        "the target never requested peers from the hostile peer"
    );

    std::thread::sleep(SETTLE);
    assert!(
        peer_view(&target, &fake).is_none(),
        "the target lists the peer that only steered addresses reach"
    );
    println!("target connected to the honest node through the records, fake peer not connected");
}
