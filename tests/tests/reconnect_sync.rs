//! A node that restarts must catch up at once: a (re)connection starts an
//! anti-entropy exchange both ways, and a node dials its bootstrap peers
//! again while it is not connected to them. Anti-entropy rounds with a
//! random peer are 30 s apart, so both tests fail when the new connection
//! does not sync by itself.

use std::time::{Duration, Instant};

use patchmesh_node::config::Config;
use patchmesh_tests::{random_bytes, wait_until, Admin, Node, NodeOptions};

/// Time within which a restarted node must have what was published while
/// it or its peer was down.
const CATCH_UP: Duration = Duration::from_secs(8);

/// Waits until `node`'s log shows the policy `id` received, and returns
/// the time since `since`.
fn wait_policy(node: &Node, id: &str, since: Instant) -> Duration {
    let slot = format!("slot={id}");
    wait_until(
        &format!("{} to receive policy {id}", node.options.host),
        Duration::from_secs(40),
        || {
            node.log()
                .lines()
                .any(|l| l.contains("object received") && l.contains(&slot))
                .then_some(())
        },
    );
    since.elapsed()
}

/// Publishes a small patch and policy `id` at `node`.
fn publish(admin: &Admin, node: &Node, id: &str) {
    let patch = admin.add_patch(id, &random_bytes(64 * 1024), 64 * 1024);
    let policy = admin.sign_policy(id, &[&patch.reference], "admin.key");
    admin.publish_ok(&node.url, &[&patch.dir, &policy]);
}

/// Rewrites `node`'s config to listen on the ports it has now, so a
/// restart keeps the addresses its peers know.
fn keep_ports(node: &Node) {
    let mut config = Config::load(node.data_dir()).expect("config loads");
    config.listen = node
        .addrs
        .iter()
        .map(|addr| addr.split("/p2p/").next().unwrap_or(addr).to_string())
        .collect();
    std::fs::write(node.data_dir().join("config.toml"), config.to_toml()).expect("write config");
}

#[test]
fn restarted_node_syncs_at_once() {
    let admin = Admin::new();
    let hub = Node::start(&admin, NodeOptions::new("hub", "site-a"));
    let mut spoke = Node::start(&admin, NodeOptions::new("spoke", "site-a").bootstrap(&hub));
    spoke.wait_for_peers(1);

    // The spoke, which dials the hub at start, is down while a policy is
    // published.
    spoke.kill();
    publish(&admin, &hub, "while-spoke-down");
    let restarted = Instant::now();
    spoke.restart();
    let took = wait_policy(&spoke, "while-spoke-down", restarted);
    println!("spoke received the policy {took:?} after its restart");
    assert!(took < CATCH_UP, "spoke caught up after {took:?}");
}

#[test]
fn restarted_bootstrap_peer_is_dialed_again() {
    let admin = Admin::new();
    let mut hub = Node::start(&admin, NodeOptions::new("hub", "site-a"));
    keep_ports(&hub);
    let spoke = Node::start(&admin, NodeOptions::new("spoke", "site-a").bootstrap(&hub));
    spoke.wait_for_peers(1);

    // The hub has no bootstrap peer of its own, so only the spoke can
    // restore the connection.
    hub.kill();
    wait_until(
        "spoke to notice the hub is gone",
        Duration::from_secs(20),
        || (spoke.peer_count() == 0).then_some(()),
    );
    publish(&admin, &spoke, "while-hub-down");
    std::thread::sleep(Duration::from_secs(3));
    let restarted = Instant::now();
    hub.restart();
    let took = wait_policy(&hub, "while-hub-down", restarted);
    println!("hub received the policy {took:?} after its restart");
    assert!(took < CATCH_UP, "hub caught up after {took:?}");
}
