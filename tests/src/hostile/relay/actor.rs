//! The swarm of [`super::RelayClient`] and the task that runs it. The task
//! takes commands from the test thread and passes swarm events back to the
//! callers waiting for them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, Message, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{noise, relay, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder};
use patchmesh_node::net::codec::{ChunkCodec, ChunkReply, SyncCodec, SyncInbound};
use patchmesh_protocol::wire::{self, ChunkRequest, Hello, SyncRequest, SyncResponse};
use tokio::sync::{mpsc, oneshot};

use super::bulk::{BulkCodec, BulkCounters, BULK_PROTOCOL};
use super::{Command, Reservation, REQUEST_TIMEOUT};

/// Network behaviour of the relay client: the relay client protocol plus
/// the sync, chunk and bulk request-response protocols.
#[derive(NetworkBehaviour)]
pub(super) struct ClientBehaviour {
    relay: relay::client::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
    chunk: request_response::Behaviour<ChunkCodec>,
    bulk: request_response::Behaviour<BulkCodec>,
}

/// Builds the client swarm over TCP (Noise, Yamux) and relay circuits.
pub(super) fn build(
    keypair: Keypair,
    bulk: Arc<BulkCounters>,
) -> anyhow::Result<Swarm<ClientBehaviour>> {
    let config = request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT);
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_behaviour(|_, relay| ClientBehaviour {
            relay,
            sync: request_response::Behaviour::with_codec(
                SyncCodec,
                [(
                    StreamProtocol::new(wire::SYNC_PROTOCOL),
                    ProtocolSupport::Full,
                )],
                config.clone(),
            ),
            chunk: request_response::Behaviour::with_codec(
                ChunkCodec,
                [(
                    StreamProtocol::new(wire::CHUNK_PROTOCOL),
                    ProtocolSupport::Outbound,
                )],
                config.clone(),
            ),
            bulk: request_response::Behaviour::with_codec(
                BulkCodec { counters: bulk },
                [(StreamProtocol::new(BULK_PROTOCOL), ProtocolSupport::Full)],
                config.clone(),
            ),
        })?
        .with_swarm_config(|swarm_config| {
            swarm_config.with_idle_connection_timeout(Duration::from_secs(120))
        })
        .build();
    Ok(swarm)
}

/// State of the task that owns the swarm and the callers' pending replies.
pub(super) struct Actor {
    swarm: Swarm<ClientBehaviour>,
    hello: Hello,
    /// Open connections by id, with the peer and its remote address.
    connections: HashMap<ConnectionId, (PeerId, Multiaddr)>,
    /// Circuit listeners waiting for the relay's decision.
    reservations: HashMap<ListenerId, (PeerId, oneshot::Sender<Reservation>)>,
    /// Reply senders of pending sync requests.
    syncs: HashMap<OutboundRequestId, oneshot::Sender<Result<SyncResponse, String>>>,
    /// Reply senders of pending chunk requests.
    chunks: HashMap<OutboundRequestId, oneshot::Sender<Result<ChunkReply, String>>>,
    /// Reply senders of pending bulk pushes.
    pushes: HashMap<OutboundRequestId, oneshot::Sender<Result<u64, String>>>,
}

impl Actor {
    pub(super) fn new(swarm: Swarm<ClientBehaviour>, hello: Hello) -> Self {
        Actor {
            swarm,
            hello,
            connections: HashMap::new(),
            reservations: HashMap::new(),
            syncs: HashMap::new(),
            chunks: HashMap::new(),
            pushes: HashMap::new(),
        }
    }

    /// Drives the swarm and runs commands until `Stop` arrives or every
    /// command sender is gone.
    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                command = commands.recv() => match command {
                    None | Some(Command::Stop) => break,
                    Some(command) => self.on_command(command),
                },
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Reserve(relay, reply) => self.reserve(relay, reply),
            Command::Dial(addr) => {
                if let Err(error) = self.swarm.dial(addr.clone()) {
                    eprintln!("relay client: dial {addr} failed: {error}");
                }
            }
            Command::Connections(peer, reply) => {
                let addrs = self
                    .connections
                    .values()
                    .filter(|(connected, _)| *connected == peer)
                    .map(|(_, addr)| addr.clone())
                    .collect();
                let _ = reply.send(addrs);
            }
            Command::Sync(peer, request, reply) => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_request(&peer, SyncInbound::Request(request));
                self.syncs.insert(id, reply);
            }
            Command::Chunk(peer, hash, reply) => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .chunk
                    .send_request(&peer, ChunkRequest { hash });
                self.chunks.insert(id, reply);
            }
            Command::Push(peer, len, reply) => {
                let id = self.swarm.behaviour_mut().bulk.send_request(&peer, len);
                self.pushes.insert(id, reply);
            }
            Command::Stop => {}
        }
    }

    /// Listens on a circuit of `relay`, which makes the relay client request
    /// a reservation, and keeps `reply` until the relay decides.
    fn reserve(&mut self, relay: Multiaddr, reply: oneshot::Sender<Reservation>) {
        let Some(Protocol::P2p(relay_peer)) = relay.iter().last() else {
            let _ = reply.send(Reservation::Denied(format!(
                "relay address {relay} does not end in /p2p/PEER"
            )));
            return;
        };
        match self.swarm.listen_on(relay.with(Protocol::P2pCircuit)) {
            Ok(listener) => {
                self.reservations.insert(listener, (relay_peer, reply));
            }
            Err(error) => {
                let _ = reply.send(Reservation::Denied(format!(
                    "failed to listen on a circuit of {relay_peer}: {error}"
                )));
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<ClientBehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let addr = endpoint.get_remote_address().clone();
                self.connections.insert(connection_id, (peer_id, addr));
            }
            SwarmEvent::ConnectionClosed { connection_id, .. } => {
                self.connections.remove(&connection_id);
            }
            SwarmEvent::Behaviour(ClientBehaviourEvent::Relay(
                relay::client::Event::ReservationReqAccepted { relay_peer_id, .. },
            )) => {
                let listener = self
                    .reservations
                    .iter()
                    .find(|(_, (relay, _))| *relay == relay_peer_id)
                    .map(|(id, _)| *id);
                if let Some((_, reply)) = listener.and_then(|id| self.reservations.remove(&id)) {
                    let _ = reply.send(Reservation::Accepted);
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some((_, reply)) = self.reservations.remove(&listener_id) {
                    let text = match reason {
                        Ok(()) => "listener closed".to_string(),
                        Err(error) => format!("{error}: {error:?}"),
                    };
                    let _ = reply.send(Reservation::Denied(text));
                }
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                if let Some((_, reply)) = self.reservations.remove(&listener_id) {
                    let _ = reply.send(Reservation::Denied(format!("{error}: {error:?}")));
                }
            }
            SwarmEvent::Behaviour(ClientBehaviourEvent::Sync(event)) => self.on_sync(event),
            SwarmEvent::Behaviour(ClientBehaviourEvent::Chunk(event)) => {
                on_outbound(&mut self.chunks, event)
            }
            SwarmEvent::Behaviour(ClientBehaviourEvent::Bulk(
                request_response::Event::Message {
                    message:
                        Message::Request {
                            request, channel, ..
                        },
                    ..
                },
            )) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .bulk
                    .send_response(channel, request);
            }
            SwarmEvent::Behaviour(ClientBehaviourEvent::Bulk(event)) => {
                on_outbound(&mut self.pushes, event)
            }
            _ => {}
        }
    }

    fn on_sync(&mut self, event: request_response::Event<SyncInbound, SyncResponse>) {
        if let request_response::Event::Message {
            message: Message::Request {
                request, channel, ..
            },
            ..
        } = event
        {
            // A node requests a hello, a summary and peers on every new
            // connection, so the client responds as an empty peer would.
            let response = match request {
                SyncInbound::Request(SyncRequest::Hello(_)) => {
                    SyncResponse::Hello(self.hello.clone())
                }
                SyncInbound::Request(SyncRequest::Summary) => SyncResponse::Summary(Vec::new()),
                SyncInbound::Request(SyncRequest::Peers) => SyncResponse::Peers(Vec::new()),
                SyncInbound::Request(SyncRequest::Have { .. }) => SyncResponse::Have(Vec::new()),
                _ => SyncResponse::Refused("not supported by this peer".into()),
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .sync
                .send_response(channel, response);
            return;
        }
        on_outbound(&mut self.syncs, event);
    }
}

/// Passes the response or failure of an outbound request to the caller
/// waiting for it.
fn on_outbound<Req, Resp>(
    pending: &mut HashMap<OutboundRequestId, oneshot::Sender<Result<Resp, String>>>,
    event: request_response::Event<Req, Resp>,
) {
    match event {
        request_response::Event::Message {
            message:
                Message::Response {
                    request_id,
                    response,
                },
            ..
        } => {
            if let Some(reply) = pending.remove(&request_id) {
                let _ = reply.send(Ok(response));
            }
        }
        request_response::Event::OutboundFailure {
            request_id, error, ..
        } => {
            if let Some(reply) = pending.remove(&request_id) {
                let _ = reply.send(Err(format!("{error}: {error:?}")));
            }
        }
        _ => {}
    }
}
