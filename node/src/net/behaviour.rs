//! The libp2p behaviour of a node and how its swarm is built: QUIC first,
//! TCP with Noise and Yamux as fallback, gossipsub for signed objects,
//! identify, ping, optional mDNS, and the sync and chunk protocols.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{gossipsub, identify, mdns, noise, ping, request_response, tcp, yamux};
use libp2p::{StreamProtocol, Swarm, SwarmBuilder};
use patchmesh_protocol::{limits, wire, Hash};

use super::codec::{ChunkCodec, SyncCodec};

/// Every protocol a node speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Signed admin objects.
    pub gossipsub: gossipsub::Behaviour,
    /// Addresses and protocols of peers.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// LAN discovery, off unless configured.
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Hellos, summaries, object fetches, chunk maps, reports.
    pub sync: request_response::Behaviour<SyncCodec>,
    /// Chunk data.
    pub chunk: request_response::Behaviour<ChunkCodec>,
}

/// Builds the swarm for `keypair`.
pub fn build_swarm(
    keypair: Keypair,
    enable_mdns: bool,
    requests_per_peer: usize,
) -> anyhow::Result<Swarm<Behaviour>> {
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_quic()
        .with_behaviour(|key| {
            let gossip_config = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Strict)
                .validate_messages()
                .max_transmit_size(limits::MAX_ENVELOPE_BYTES + 4096)
                .message_id_fn(|message| {
                    gossipsub::MessageId::from(Hash::of(&message.data).to_hex())
                })
                .heartbeat_interval(Duration::from_millis(700))
                .build()
                .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
            let mut gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )
            .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
            let (params, thresholds) = super::scoring::params();
            gossipsub
                .with_peer_score(params, thresholds)
                .map_err(|e| anyhow::anyhow!("gossipsub scoring: {e}"))?;

            let mdns = if enable_mdns {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    key.public().to_peer_id(),
                )?)
            } else {
                None
            };

            let sync = request_response::Behaviour::with_codec(
                SyncCodec,
                [(
                    StreamProtocol::new(wire::SYNC_PROTOCOL),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(30))
                    .with_max_concurrent_streams(64),
            );
            let chunk = request_response::Behaviour::with_codec(
                ChunkCodec,
                [(
                    StreamProtocol::new(wire::CHUNK_PROTOCOL),
                    request_response::ProtocolSupport::Full,
                )],
                // The scheduler times requests out itself (longer for other
                // sites, whose requests share a slow link); this is only a
                // backstop above its longest timeout.
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(900))
                    .with_max_concurrent_streams(requests_per_peer.max(1) * 16),
            );
            Ok(Behaviour {
                gossipsub,
                identify: identify::Behaviour::new(identify::Config::new(
                    "/patchmesh/id/1".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::default(),
                mdns: Toggle::from(mdns),
                sync,
                chunk,
            })
        })?
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    Ok(swarm)
}
