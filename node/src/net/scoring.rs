//! Gossipsub peer scoring: peers that deliver invalid objects lose score and
//! are graylisted; first deliveries of valid objects earn it.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::gossipsub::{IdentTopic, PeerScoreParams, PeerScoreThresholds, TopicScoreParams};
use patchmesh_protocol::wire;

/// Peers one address may have before the IP colocation penalty applies.
const IP_COLOCATION_THRESHOLD: f64 = 1024.0;

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
    // The IP colocation penalty (P6) hits every peer of an address shared
    // by more peers than the threshold. libp2p's default of 10 would
    // graylist a whole branch office behind one NAT address, as seen from
    // other sites, and every peer on one test machine. A threshold of 1024
    // still penalises a host that opens more connections than a large
    // office has nodes. Sybils below it are handled by the rules that do
    // not depend on addresses: every connection exchanges summaries, and
    // peers that claim chunks they never send are dropped.
    let params = PeerScoreParams {
        topics,
        decay_interval: Duration::from_secs(1),
        ip_colocation_factor_threshold: IP_COLOCATION_THRESHOLD,
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
