//! Connection limits per peer against a running node: one peer id that
//! opens many connections gets no more than the limit, so it cannot
//! multiply the per-connection stream and buffer limits.

use std::time::Duration;

use patchmesh_protocol::limits;
use patchmesh_protocol::wire::Hello;
use patchmesh_tests::attack::peer_view;
use patchmesh_tests::hostile::raw::{RawChunkReply, RawPeer};
use patchmesh_tests::{wait_until, Admin, Node, NodeOptions};

/// Connections the raw peer opens, over twice the limit.
const DIALS: usize = 10;

#[test]
fn one_peer_gets_limited_connections() {
    let admin = Admin::new();
    let node = Node::start(&admin, NodeOptions::new("target", "site-a"));
    let hello = Hello {
        host: "multiplier".into(),
        site: "site-a".into(),
        ..Hello::default()
    };
    let raw = RawPeer::start(hello, RawChunkReply::Missing).expect("raw peer starts");
    let addr = node
        .addrs
        .iter()
        .find(|addr| addr.contains("/tcp/"))
        .expect("node listens on TCP");
    for _ in 0..DIALS {
        raw.dial(addr).expect("dial the node");
    }

    wait_until(
        "the node to deny connections over the per-peer limit",
        Duration::from_secs(30),
        || {
            node.log()
                .contains("inbound connections denied by a connection limit")
                .then_some(())
        },
    );
    let peer = raw.peer_id().to_base58();
    let connections = wait_until(
        "the node to list the raw peer",
        Duration::from_secs(10),
        || peer_view(&node, &peer).and_then(|view| view["connections"].as_u64()),
    );
    println!("{connections} of {DIALS} connections from one peer accepted");
    assert!(connections >= 1, "the node lists no connection of the peer");
    assert!(
        connections <= u64::from(limits::MAX_CONNECTIONS_PER_PEER),
        "the node keeps {connections} connections from one peer, over the limit of {}",
        limits::MAX_CONNECTIONS_PER_PEER
    );
    assert!(
        node.log()
            .contains("at most 4 established connections per peer"),
        "the denial does not name the limit"
    );
}
