//! A behaviour wrapper that runs its inner protocol on direct connections
//! only. A relayed connection (a circuit through a relay) gets a handler
//! that speaks nothing, so the inner protocol neither sends nor accepts a
//! stream on it, and the inner behaviour never learns the connection
//! exists. The chunk protocol runs inside it: relays cut circuits after a
//! few hundred KiB, so chunks travel on direct connections only.

use std::collections::{HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::{AddressChange, ConnectionClosed, ConnectionEstablished};
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// Whether `addr` goes through a relay circuit.
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// `inner`, limited to direct connections.
pub struct DirectOnly<B> {
    inner: B,
    /// Relayed connections, hidden from `inner`.
    relayed: HashSet<ConnectionId>,
    /// Direct connections per peer, so the connection counts passed to
    /// `inner` leave out relayed ones.
    direct: HashMap<PeerId, usize>,
}

impl<B> DirectOnly<B> {
    /// Wraps `inner`.
    pub fn new(inner: B) -> Self {
        DirectOnly {
            inner,
            relayed: HashSet::new(),
            direct: HashMap::new(),
        }
    }
}

impl<B> Deref for DirectOnly<B> {
    type Target = B;

    fn deref(&self) -> &B {
        &self.inner
    }
}

impl<B> DerefMut for DirectOnly<B> {
    fn deref_mut(&mut self) -> &mut B {
        &mut self.inner
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for DirectOnly<B> {
    type ConnectionHandler = either::Either<THandler<B>, dummy::ConnectionHandler>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // The relay client marks the local address of an inbound circuit.
        if is_relayed(local_addr) || is_relayed(remote_addr) {
            self.relayed.insert(connection_id);
            return Ok(either::Either::Right(dummy::ConnectionHandler));
        }
        self.inner
            .handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)
            .map(either::Either::Left)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if is_relayed(addr) {
            self.relayed.insert(connection_id);
            return Ok(either::Either::Right(dummy::ConnectionHandler));
        }
        self.inner
            .handle_established_outbound_connection(
                connection_id,
                peer,
                addr,
                role_override,
                port_use,
            )
            .map(either::Either::Left)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(established) => {
                if self.relayed.contains(&established.connection_id) {
                    return;
                }
                let count = self.direct.entry(established.peer_id).or_insert(0);
                let other_established = *count;
                *count += 1;
                self.inner.on_swarm_event(FromSwarm::ConnectionEstablished(
                    ConnectionEstablished {
                        other_established,
                        ..established
                    },
                ));
            }
            FromSwarm::ConnectionClosed(closed) => {
                if self.relayed.remove(&closed.connection_id) {
                    return;
                }
                let remaining_established = match self.direct.get_mut(&closed.peer_id) {
                    Some(count) => {
                        *count = count.saturating_sub(1);
                        *count
                    }
                    None => 0,
                };
                if remaining_established == 0 {
                    self.direct.remove(&closed.peer_id);
                }
                self.inner
                    .on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
                        remaining_established,
                        ..closed
                    }));
            }
            FromSwarm::AddressChange(AddressChange { connection_id, .. })
                if self.relayed.contains(&connection_id) => {}
            other => self.inner.on_swarm_event(other),
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            either::Either::Left(event) => {
                self.inner
                    .on_connection_handler_event(peer_id, connection_id, event)
            }
            either::Either::Right(never) => match never {},
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner
            .poll(cx)
            .map(|event| event.map_in(either::Either::Left))
    }
}

#[cfg(test)]
mod tests {
    use libp2p::core::ConnectedPoint;
    use libp2p::request_response;
    use libp2p::StreamProtocol;
    use patchmesh_protocol::wire;

    use super::*;
    use crate::net::codec::ChunkCodec;

    type ChunkBehaviour = DirectOnly<request_response::Behaviour<ChunkCodec>>;

    fn chunk_behaviour() -> ChunkBehaviour {
        DirectOnly::new(request_response::Behaviour::with_codec(
            ChunkCodec,
            [(
                StreamProtocol::new(wire::CHUNK_PROTOCOL),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default(),
        ))
    }

    fn dialer(address: &Multiaddr) -> ConnectedPoint {
        ConnectedPoint::Dialer {
            address: address.clone(),
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        }
    }

    /// Opens an outbound connection `id` to `peer` at `address`, as the
    /// swarm does, and returns whether the inner protocol got a handler.
    fn open(
        behaviour: &mut ChunkBehaviour,
        id: usize,
        peer: PeerId,
        address: &Multiaddr,
        other_established: usize,
    ) -> bool {
        let connection_id = ConnectionId::new_unchecked(id);
        let handler = behaviour
            .handle_established_outbound_connection(
                connection_id,
                peer,
                address,
                Endpoint::Dialer,
                PortUse::Reuse,
            )
            .expect("never denied");
        let endpoint = dialer(address);
        behaviour.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
            peer_id: peer,
            connection_id,
            endpoint: &endpoint,
            failed_addresses: &[],
            other_established,
        }));
        matches!(handler, either::Either::Left(_))
    }

    /// Closes connection `id` as the swarm reports it: `remaining` counts
    /// every other connection to the peer, relayed ones included.
    fn close(
        behaviour: &mut ChunkBehaviour,
        id: usize,
        peer: PeerId,
        address: &Multiaddr,
        remaining: usize,
    ) {
        let endpoint = dialer(address);
        behaviour.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
            peer_id: peer,
            connection_id: ConnectionId::new_unchecked(id),
            endpoint: &endpoint,
            cause: None,
            remaining_established: remaining,
        }));
    }

    #[test]
    fn chunk_protocol_skips_relayed_connections() {
        let mut behaviour = chunk_behaviour();
        let peer = PeerId::random();
        let relay = PeerId::random();
        let circuit: Multiaddr = format!("/ip4/10.0.0.1/udp/4001/quic-v1/p2p/{relay}/p2p-circuit")
            .parse()
            .unwrap();
        let direct: Multiaddr = "/ip4/10.0.0.2/udp/4001/quic-v1".parse().unwrap();

        assert!(
            !open(&mut behaviour, 1, peer, &circuit, 0),
            "relayed got a handler"
        );
        assert!(
            !behaviour.is_connected(&peer),
            "relayed connection reached the inner protocol"
        );

        assert!(
            open(&mut behaviour, 2, peer, &direct, 1),
            "direct got no handler"
        );
        assert!(behaviour.is_connected(&peer));

        // The swarm still counts the circuit; the inner protocol must see
        // its last connection close (a wrong count trips its own checks).
        close(&mut behaviour, 2, peer, &direct, 1);
        assert!(
            !behaviour.is_connected(&peer),
            "closed direct connection still used"
        );
        close(&mut behaviour, 1, peer, &circuit, 0);
        assert!(!behaviour.is_connected(&peer));
    }
}
