//! The patchmesh agent.
//!
//! A node admits signed objects ([`trust`]), stores them ([`store`]),
//! fetches chunks from peers ([`fetch`]), installs patches ([`install`],
//! [`deb`]) and reports to observers. [`inventory`] lists the machine's OS
//! and packages and decides which patches it is missing.
//! [`agent`] drives all of it from one event loop over the libp2p swarm
//! ([`net`]); [`control`] is the local HTTP API the signer talks to.

pub mod agent;
pub mod bundle;
pub mod clock;
pub mod config;
pub mod control;
pub mod deb;
pub mod fetch;
pub mod install;
pub mod inventory;
pub mod net;
pub mod rollout;
pub mod store;
pub mod trust;
