//! The libp2p behaviour of a node and how its swarm is built: QUIC and TCP
//! (Noise, Yamux) behind a dial guard, circuit relay client and optional
//! server, hole punching (DCUtR), gossipsub for signed objects, identify,
//! ping, optional mDNS, and the sync and chunk protocols.

use std::time::Duration;

use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{dcutr, gossipsub, identify, mdns, noise, ping, relay, request_response};
use libp2p::{quic, tcp, yamux, StreamProtocol, Swarm, SwarmBuilder, Transport};
use patchmesh_protocol::{limits, wire, Hash};

use super::codec::{ChunkCodec, SyncCodec};
use super::dial::{DialGuard, DialPolicy};
use super::direct_only::DirectOnly;
use crate::config::RelayConfig;

/// Every protocol a node speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Caps on inbound connections.
    pub limits: connection_limits::Behaviour,
    /// Signed admin objects.
    pub gossipsub: gossipsub::Behaviour,
    /// Addresses and protocols of peers.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// LAN discovery, off unless configured.
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Reservations on relays and dials through their circuits.
    pub relay_client: relay::client::Behaviour,
    /// Relay service for other peers, off unless configured.
    pub relay_server: Toggle<relay::Behaviour>,
    /// Hole punching: upgrades a relayed connection to a direct one.
    pub dcutr: dcutr::Behaviour,
    /// Hellos, summaries, object fetches, chunk maps, reports.
    pub sync: request_response::Behaviour<SyncCodec>,
    /// Chunk data, on direct connections only.
    pub chunk: DirectOnly<request_response::Behaviour<ChunkCodec>>,
}

/// What the swarm is built with besides its key.
#[derive(Clone, Debug)]
pub struct SwarmOptions {
    /// Whether mDNS discovery runs.
    pub mdns: bool,
    /// Chunk requests in flight per peer, which sizes the chunk protocol's
    /// stream limit.
    pub requests_per_peer: usize,
    /// Addresses every dial must stay within.
    pub dial_policy: DialPolicy,
    /// Relay settings; `server` turns the relay service on.
    pub relay: RelayConfig,
    /// Most established inbound connections.
    pub max_inbound_connections: u32,
}

impl Default for SwarmOptions {
    fn default() -> Self {
        SwarmOptions {
            mdns: false,
            requests_per_peer: 8,
            dial_policy: DialPolicy::default(),
            relay: RelayConfig::default(),
            max_inbound_connections: crate::config::DEFAULT_MAX_INBOUND,
        }
    }
}

/// Builds a swarm for `keypair` with mDNS as given, no relay service and
/// dials limited to loopback.
pub fn build_swarm(
    keypair: Keypair,
    enable_mdns: bool,
    requests_per_peer: usize,
) -> anyhow::Result<Swarm<Behaviour>> {
    build_swarm_with(
        keypair,
        SwarmOptions {
            mdns: enable_mdns,
            requests_per_peer,
            ..SwarmOptions::default()
        },
    )
}

/// Builds the swarm for `keypair` with `options`.
pub fn build_swarm_with(
    keypair: Keypair,
    options: SwarmOptions,
) -> anyhow::Result<Swarm<Behaviour>> {
    let SwarmOptions {
        mdns: enable_mdns,
        requests_per_peer,
        dial_policy,
        relay: relay_config,
        max_inbound_connections,
    } = options;
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(
            |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default());
                let quic = quic::tokio::Transport::new(quic::Config::new(key));
                let both = quic
                    .or_transport(tcp)
                    .map(|either, _| match either {
                        futures::future::Either::Left((peer, muxer)) => {
                            (peer, StreamMuxerBox::new(muxer))
                        }
                        futures::future::Either::Right((peer, muxer)) => {
                            (peer, StreamMuxerBox::new(muxer))
                        }
                    })
                    .boxed();
                Ok(DialGuard::new(both, dial_policy))
            },
        )?
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key, relay_client| {
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
                // The stream cap bounds the sync frames one peer can make
                // the node buffer per connection. Honest peers stay under it
                // because each keeps at most `MAX_SYNC_REQUESTS_IN_FLIGHT`
                // requests in flight (`agent/sync_queue.rs`).
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(30))
                    .with_max_concurrent_streams(limits::MAX_SYNC_STREAMS),
            );
            let chunk = DirectOnly::new(request_response::Behaviour::with_codec(
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
            ));
            let relay_server = relay_config.server.then(|| {
                let mut server = relay::Behaviour::new(
                    key.public().to_peer_id(),
                    super::relay::server_config(&relay_config),
                );
                // The relay serves whoever reaches it; it does not wait for
                // an external address to be confirmed (no AutoNAT here).
                server.set_status(Some(relay::Status::Enable));
                server
            });
            // Handshakes in progress are capped too, so a flood of half-open
            // connections costs bounded memory.
            // NOTE: connections per peer are not capped. A node killed and
            // restarted a few times within QUIC's 10 s idle timeout left
            // that many dead connections counted at its peers, and a cap
            // of 4 then denied its new connection until they timed out.
            let limits = ConnectionLimits::default()
                .with_max_established_incoming(Some(max_inbound_connections))
                .with_max_pending_incoming(Some(max_inbound_connections.min(128)));
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                gossipsub,
                identify: identify::Behaviour::new(identify::Config::new(
                    "/patchmesh/id/1".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::default(),
                mdns: Toggle::from(mdns),
                relay_client,
                relay_server: Toggle::from(relay_server),
                dcutr: dcutr::Behaviour::new(key.public().to_peer_id()),
                sync,
                chunk,
            })
        })?
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    Ok(swarm)
}
