//! The libp2p side of a node: behaviour, codecs, scoring.

pub mod behaviour;
pub mod codec;
pub mod scoring;

pub use behaviour::{build_swarm, Behaviour, BehaviourEvent};
