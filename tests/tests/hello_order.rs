//! Tests hello ordering on a running node. A node ignores a hello whose
//! sequence number is not above the last one stored from its sender, so a
//! hello that arrives late cannot undo a newer WAN-duty flag.

use std::time::Duration;

use libp2p::PeerId;
use patchmesh_protocol::wire::{Hello, SyncRequest};
use patchmesh_tests::attack::{peer_view, wait_log_line};
use patchmesh_tests::hostile::raw::{RawChunkReply, RawFrame, RawPeer};
use patchmesh_tests::{wait_until, Admin, Node, NodeOptions};

/// Builds the raw peer's hello with sequence number `seq` and WAN-duty flag `wan`.
fn raw_hello(seq: u64, wan: bool) -> Hello {
    Hello {
        host: "branch-2".into(),
        site: "branch".into(),
        groups: Vec::new(),
        observer: false,
        wan,
        agent_version: "0.0.0-raw".into(),
        seq,
    }
}

/// Sends a hello with `seq` and `wan` from `raw` to `node`.
fn send_hello(raw: &RawPeer, node: PeerId, seq: u64, wan: bool) {
    let request = SyncRequest::Hello(raw_hello(seq, wan));
    raw.send_sync(node, RawFrame::Encoded(request))
        .expect("raw peer has stopped");
}

/// Waits until `node` lists `peer` with the WAN-duty flag `wan`.
fn wait_wan_flag(node: &Node, peer: &str, wan: bool) {
    wait_until(
        &format!("{} to list {peer} with wan={wan}", node.options.host),
        Duration::from_secs(20),
        || (peer_view(node, peer)?["wan"].as_bool()? == wan).then_some(()),
    );
}

#[test]
fn older_hello_does_not_undo_wan_duty() {
    let admin = Admin::new();
    let mut options = NodeOptions::new("branch-1", "branch");
    options.log_filter = Some("info,patchmesh_node::agent::peers=debug".into());
    let node = Node::start(&admin, options);
    let node_id: PeerId = node.peer.parse().expect("invalid node peer id");

    // The raw peer replies to the node's own hello with sequence number 1.
    let raw = RawPeer::start(raw_hello(1, false), RawChunkReply::Missing)
        .expect("failed to start raw peer");
    let addr = node
        .addrs
        .iter()
        .find(|addr| addr.contains("/tcp/"))
        .expect("node has no TCP listen address");
    raw.dial(addr).expect("failed to dial the node");
    raw.wait_connected(node_id, Duration::from_secs(20))
        .expect("raw peer failed to connect");
    let raw_id = raw.peer_id().to_base58();
    let started = std::time::Instant::now();

    // The peer gains WAN duty and sends a new hello.
    send_hello(&raw, node_id, 300, true);
    wait_wan_flag(&node, &raw_id, true);

    // A hello made before that change arrives late, and the node ignores and
    // logs it.
    send_hello(&raw, node_id, 200, false);
    wait_log_line(
        &node,
        &["hello ignored", &raw_id, "seq=200", "stored_seq=300"],
    );
    let view = peer_view(&node, &raw_id).expect("raw peer not found in the node's peer list");
    assert_eq!(view["wan"], true, "an older hello undid WAN duty: {view}");

    // A hello with the same sequence number is ignored too.
    send_hello(&raw, node_id, 300, false);
    wait_log_line(
        &node,
        &["hello ignored", &raw_id, "seq=300", "stored_seq=300"],
    );
    let view = peer_view(&node, &raw_id).expect("raw peer not found in the node's peer list");
    assert_eq!(view["wan"], true, "a repeated hello undid WAN duty: {view}");

    // A newer hello still takes effect.
    send_hello(&raw, node_id, 400, false);
    wait_wan_flag(&node, &raw_id, false);
    println!("the hello checks took {:?}", started.elapsed());
}
