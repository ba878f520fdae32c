//! The libp2p side of a node: behaviour, codecs, dial policy, relays,
//! scoring.

pub mod behaviour;
pub mod codec;
pub mod dial;
pub mod direct_only;
pub mod relay;
pub mod scoring;

pub use behaviour::{build_swarm, build_swarm_with, Behaviour, BehaviourEvent, SwarmOptions};
