//! Reachability: which connections are direct and which run through a relay
//! circuit, whether this node can reach another site (and so takes WAN
//! duty), relay reservations, and hole punching.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{dcutr, relay, Multiaddr, PeerId};
use patchmesh_protocol::wire::SyncRequest;

use super::{Agent, SyncPurpose};
use crate::net::relay::{announces, parse_relay_addr};

/// Wait before listening through a relay again after the reservation was
/// lost or refused.
const RELAY_RETRY: Duration = Duration::from_secs(10);

/// Wait before dialing a peer again after its relay circuit closed, so the
/// relay has released the old circuit.
const REDIAL_DELAY: Duration = Duration::from_secs(2);

/// Interval between peer-exchange rounds with one random connected peer,
/// so a node also finds peers that joined, or reserved a relay slot, after
/// it connected.
const PEER_EXCHANGE: Duration = Duration::from_secs(60);

/// Reachability state of the agent.
#[derive(Debug)]
pub(super) struct Reach {
    /// Whether this node takes WAN duty now: allowed by config and directly
    /// connected to a peer of another site.
    pub wan: bool,
    /// Configured relays by peer id, with the address to reach each.
    relays: HashMap<PeerId, Multiaddr>,
    /// Listeners through relay circuits, with the relay each uses.
    relay_listeners: HashMap<ListenerId, PeerId>,
    /// Relay addresses to listen through again, and when.
    relay_retries: Vec<(Instant, PeerId)>,
    /// Peers to dial again after their circuit closed, with when and where.
    redials: Vec<(Instant, PeerId, Vec<Multiaddr>)>,
    /// When peers were last exchanged outside a connection's start.
    last_peer_exchange: Instant,
}

impl Reach {
    /// State at start: no WAN duty until a direct link to another site
    /// exists.
    pub fn new() -> Self {
        Reach {
            wan: false,
            relays: HashMap::new(),
            relay_listeners: HashMap::new(),
            relay_retries: Vec::new(),
            redials: Vec::new(),
            last_peer_exchange: Instant::now(),
        }
    }
}

impl Agent {
    /// Dials every configured relay; the reservation follows once the
    /// connection is up (see [`Agent::on_connection_opened`]).
    pub(super) fn dial_relays(&mut self) {
        for text in self.config.relay.addrs.clone() {
            let relay = match parse_relay_addr(&text) {
                Ok(relay) => relay,
                Err(error) => {
                    tracing::error!(relay = text, %error, "relay address skipped");
                    continue;
                }
            };
            let Some(Protocol::P2p(peer)) = relay.iter().last() else {
                continue;
            };
            self.reach.relays.insert(peer, relay);
            self.dial_relay(peer);
        }
    }

    fn dial_relay(&mut self, relay: PeerId) {
        let Some(addr) = self.reach.relays.get(&relay).cloned() else {
            return;
        };
        if self.swarm.is_connected(&relay) {
            self.listen_via_relay(relay);
        } else if let Err(error) = self.swarm.dial(addr.clone()) {
            tracing::debug!(relay = %addr, %error, "relay dial not started; retrying");
            self.reach
                .relay_retries
                .push((Instant::now() + RELAY_RETRY, relay));
        }
    }

    /// Reserves a slot on a connected relay and listens through it, unless
    /// a listener through it exists. Listening before the connection is up
    /// races with other dials of the relay and fails.
    fn listen_via_relay(&mut self, relay: PeerId) {
        if self.reach.relay_listeners.values().any(|r| *r == relay) {
            return;
        }
        let Some(addr) = self.reach.relays.get(&relay).cloned() else {
            return;
        };
        let circuit = addr.with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(id) => {
                tracing::info!(address = %circuit, "reserving a slot on relay");
                self.reach.relay_listeners.insert(id, relay);
            }
            Err(error) => {
                tracing::warn!(address = %circuit, %error, "cannot listen through relay; retrying");
                self.reach
                    .relay_retries
                    .push((Instant::now() + RELAY_RETRY, relay));
            }
        }
    }

    /// Handles a closed listener. A relay listener is opened again after a
    /// pause, since the relay may come back.
    pub(super) fn on_listener_closed(&mut self, id: ListenerId, reason: Option<String>) {
        if let Some(relay) = self.reach.relay_listeners.remove(&id) {
            tracing::warn!(relay = %relay, reason = reason.as_deref().unwrap_or("closed"), "relay reservation lost; retrying");
            self.reach
                .relay_retries
                .push((Instant::now() + RELAY_RETRY, relay));
        }
    }

    /// Handles a new listened address. A relay server registers it as an
    /// external address, which it hands to the peers that reserve a slot so
    /// they can announce circuits through it.
    pub(super) fn on_new_listen_addr(&mut self, address: &Multiaddr) {
        let relayed = crate::net::direct_only::is_relayed(address);
        if self.config.relay.server && !relayed && announces(address, &self.config.listen) {
            self.swarm.add_external_address(address.clone());
        }
        if relayed {
            tracing::info!(%address, "reachable through relay");
        }
    }

    /// Records a new connection. A direct connection makes the peer's relay
    /// circuits redundant, so they are closed to free the relay's slots.
    pub(super) fn on_connection_opened(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        relayed: bool,
    ) {
        let entry = self.peers.entry(peer).or_default();
        entry.connections.insert(connection, relayed);
        let redundant = if relayed {
            if entry.has_direct() {
                vec![connection]
            } else {
                Vec::new()
            }
        } else {
            entry.relayed_connections()
        };
        tracing::debug!(peer = %peer, relayed, "connection opened");
        for id in redundant {
            self.swarm.close_connection(id);
        }
        if !relayed && self.reach.relays.contains_key(&peer) {
            self.listen_via_relay(peer);
        }
        self.place_peer_in_downloads(peer);
        self.refresh_reach();
    }

    /// Records a closed connection to a peer that still has others.
    pub(super) fn on_connection_lost(&mut self, peer: PeerId, connection: ConnectionId) {
        if let Some(entry) = self.peers.get_mut(&peer) {
            entry.connections.remove(&connection);
        }
        self.place_peer_in_downloads(peer);
        self.refresh_reach();
    }

    /// Plans a dial of `peer` at `addrs` after its relay circuit closed.
    pub(super) fn schedule_redial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if !addrs.is_empty() {
            self.reach
                .redials
                .push((Instant::now() + REDIAL_DELAY, peer, addrs));
        }
    }

    /// Recomputes whether this node takes WAN duty. On a change it updates
    /// running downloads and sends its introduction again to same-site
    /// peers, which rank WAN fetches by it.
    pub(super) fn refresh_reach(&mut self) {
        // NOTE: any direct link to another site counts, even to a peer that
        // holds no chunks (an observer); such a node ranks for WAN fetches
        // and its site waits for it to stall on chunks it cannot get.
        let site = &self.config.site;
        let wan = self.config.wan
            && self.peers.values().any(|entry| {
                entry.has_direct() && entry.hello.as_ref().is_some_and(|h| &h.site != site)
            });
        if wan == self.reach.wan {
            return;
        }
        self.reach.wan = wan;
        tracing::info!(
            wan,
            "WAN duty changed: direct link to another site {}",
            if wan { "found" } else { "lost" }
        );
        for download in self.downloads.values_mut() {
            download.scheduler.set_local_wan(wan);
        }
        // Peers whose hello has not arrived yet may be of this site too: a
        // peer skipped here would keep the flag of the first hello and rank
        // WAN fetches without this node, so both would fetch its chunks.
        let same_site: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, entry)| entry.hello.as_ref().is_none_or(|h| &h.site == site))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in same_site {
            let hello = self.hello();
            self.send_sync(peer, SyncRequest::Hello(hello), SyncPurpose::Hello);
        }
    }

    /// Runs due relay reservations, redials and peer exchanges.
    pub(super) fn tick_reach(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.reach.last_peer_exchange) >= PEER_EXCHANGE {
            self.reach.last_peer_exchange = now;
            self.exchange_peers_with_one();
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reach.relay_retries)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.reach.relay_retries = later;
        for (_, relay) in due {
            self.dial_relay(relay);
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reach.redials)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.reach.redials = later;
        for (_, peer, addrs) in due {
            tracing::debug!(peer = %peer, "dialing again after its relay circuit closed");
            self.maybe_dial(peer, addrs);
        }
    }

    pub(super) fn on_relay_client_event(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            } => {
                tracing::info!(relay = %relay_peer_id, renewal, "relay reservation accepted")
            }
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                tracing::debug!(relay = %relay_peer_id, "circuit through relay opened")
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "peer connected through relay")
            }
        }
    }

    pub(super) fn on_relay_server_event(&mut self, event: relay::Event) {
        match event {
            relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                tracing::info!(peer = %src_peer_id, "relay slot reserved for peer")
            }
            relay::Event::ReservationReqDenied {
                src_peer_id,
                status,
            } => {
                tracing::warn!(peer = %src_peer_id, ?status, "relay slot request denied")
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => {
                tracing::info!(from = %src_peer_id, to = %dst_peer_id, "relay circuit opened")
            }
            relay::Event::CircuitReqDenied {
                src_peer_id,
                dst_peer_id,
                status,
            } => {
                tracing::warn!(from = %src_peer_id, to = %dst_peer_id, ?status, "relay circuit denied")
            }
            relay::Event::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error: Some(error),
            } => {
                // The relay cut the circuit at its byte or time limit, or
                // one side's connection to the relay closed.
                tracing::info!(from = %src_peer_id, to = %dst_peer_id, %error, "relay circuit closed")
            }
            relay::Event::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error: None,
            } => {
                tracing::debug!(from = %src_peer_id, to = %dst_peer_id, "relay circuit closed")
            }
            other => tracing::debug!(event = ?other, "relay server event"),
        }
    }

    pub(super) fn on_dcutr_event(&mut self, event: dcutr::Event) {
        match event.result {
            Ok(_) => {
                tracing::info!(peer = %event.remote_peer_id, "hole punch succeeded: direct connection")
            }
            Err(error) => {
                tracing::info!(peer = %event.remote_peer_id, %error, "hole punch failed; staying on the relay circuit")
            }
        }
    }
}
