//! Gossipsub peer scoring: peers that deliver invalid objects lose score and
//! are graylisted; first deliveries of valid objects earn it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use libp2p::gossipsub::{IdentTopic, PeerScoreParams, PeerScoreThresholds, TopicScoreParams};
use patchmesh_protocol::wire;

/// Score parameters and thresholds for the objects topic.
pub fn params() -> (PeerScoreParams, PeerScoreThresholds) {
    let topic = IdentTopic::new(wire::OBJECTS_TOPIC);
    let topic_params = TopicScoreParams {
        topic_weight: 1.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 50.0,
        // Penalty grows with the square of invalid deliveries.
        invalid_message_deliveries_weight: -100.0,
        invalid_message_deliveries_decay: 0.5,
        // Mesh delivery rates suit steady streams, not rare admin objects.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        time_in_mesh_weight: 0.0,
        ..TopicScoreParams::default()
    };
    let mut topics = HashMap::new();
    topics.insert(topic.hash(), topic_params);
    // The default IP colocation penalty (P6) graylists every peer of an
    // address shared by more than 10 peers, which stops Sybils from one
    // host. Loopback is exempt: peers on one machine all share it, so 40
    // Sybils on loopback would graylist an honest peer there too.
    let loopback = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let params = PeerScoreParams {
        topics,
        decay_interval: Duration::from_secs(1),
        ip_colocation_factor_whitelist: loopback.into_iter().collect(),
        ..PeerScoreParams::default()
    };
    let thresholds = PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        ..PeerScoreThresholds::default()
    };
    (params, thresholds)
}
