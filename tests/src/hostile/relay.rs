//! A libp2p client for relay attack tests. It reserves slots on a relay,
//! reaches peers through relay circuits or directly, pushes bulk bytes
//! through a circuit to another client, and sends sync and chunk requests
//! with the node's own codecs over whatever connection it has.
//!
//! It speaks TCP (Noise, Yamux) and the circuit relay v2 client protocol,
//! but no identify or DCUtR, and it listens on nothing but relay circuits.
//! A node it reaches through a circuit therefore learns no direct address of
//! it and cannot upgrade the connection. Like [`super::HostilePeer`], it runs
//! on its own thread and tokio runtime.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::core::transport::ListenerId;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, Message, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{noise, relay, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder};
use patchmesh_node::net::codec::{ChunkCodec, ChunkReply, SyncCodec, SyncInbound};
use patchmesh_node::net::direct_only::is_relayed;
use patchmesh_protocol::wire::{self, ChunkRequest, Hello, SyncRequest, SyncResponse};
use patchmesh_protocol::Hash;
use tokio::sync::{mpsc, oneshot};

/// Protocol of the bulk stream: the sender writes bytes until it has
/// written the requested count or the stream breaks, and the receiver reads
/// until the end of the stream. Nodes do not speak it. Two clients use it
/// through a relay circuit, so the relay carries every byte.
pub const BULK_PROTOCOL: &str = "/patchmesh-test/bulk/1";

/// Bytes per write of the bulk sender and per read of the receiver.
const BULK_BLOCK: usize = 64 * 1024;

/// How long a bulk push, sync or chunk request may take. The relay is
/// expected to cut a push long before.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The result of a reservation request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// The relay accepted the reservation.
    Accepted,
    /// The relay denied it, or the attempt failed. The text is the error.
    Denied(String),
}

/// Byte counts of the bulk protocol, for assertions.
#[derive(Debug, Default)]
pub struct BulkCounters {
    /// Bytes of the blocks this client finished writing on bulk streams it
    /// opened. A block cut mid-write is not counted, so the receiver may
    /// count a little more.
    pub sent: AtomicU64,
    /// Bytes this client read on bulk streams others opened.
    pub received: AtomicU64,
}

#[derive(Clone)]
struct BulkCodec {
    counters: Arc<BulkCounters>,
}

impl request_response::Codec for BulkCodec {
    type Protocol = StreamProtocol;
    /// Bytes to push.
    type Request = u64;
    /// Bytes the receiver read.
    type Response = u64;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<u64> {
        let mut block = vec![0u8; BULK_BLOCK];
        let mut total = 0u64;
        loop {
            let read = io.read(&mut block).await?;
            if read == 0 {
                return Ok(total);
            }
            total += read as u64;
            self.counters
                .received
                .fetch_add(read as u64, Ordering::Relaxed);
        }
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<u64> {
        let mut count = [0u8; 8];
        io.read_exact(&mut count).await?;
        Ok(u64::from_be_bytes(count))
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        len: u64,
    ) -> io::Result<()> {
        let block = vec![0x5Au8; BULK_BLOCK];
        let mut written = 0u64;
        while written < len {
            let size = (len - written).min(BULK_BLOCK as u64) as usize;
            io.write_all(&block[..size]).await?;
            written += size as u64;
            self.counters.sent.fetch_add(size as u64, Ordering::Relaxed);
        }
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        count: u64,
    ) -> io::Result<()> {
        io.write_all(&count.to_be_bytes()).await?;
        io.close().await
    }
}

#[derive(NetworkBehaviour)]
struct ClientBehaviour {
    relay: relay::client::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
    chunk: request_response::Behaviour<ChunkCodec>,
    bulk: request_response::Behaviour<BulkCodec>,
}

enum Command {
    Reserve(Multiaddr, oneshot::Sender<Reservation>),
    Dial(Multiaddr),
    Connections(PeerId, oneshot::Sender<Vec<Multiaddr>>),
    Sync(
        PeerId,
        SyncRequest,
        oneshot::Sender<Result<SyncResponse, String>>,
    ),
    Chunk(PeerId, Hash, oneshot::Sender<Result<ChunkReply, String>>),
    Push(PeerId, u64, oneshot::Sender<Result<u64, String>>),
    Stop,
}

/// A running relay client.
pub struct RelayClient {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    bulk: Arc<BulkCounters>,
    thread: Option<JoinHandle<()>>,
}

impl RelayClient {
    /// Starts a client with a new identity that introduces itself with
    /// `hello` when a node asks.
    pub fn start(hello: Hello) -> anyhow::Result<Self> {
        let keypair = Keypair::generate_ed25519();
        let peer_id = keypair.public().to_peer_id();
        let bulk = Arc::new(BulkCounters::default());
        let (commands, receiver) = mpsc::channel(64);
        let thread_bulk = bulk.clone();
        let thread = super::spawn_swarm_thread(
            format!("relay-client-{}", super::short(&peer_id)),
            move || build(keypair, thread_bulk),
            move |swarm| Actor::new(swarm, hello).run(receiver),
        )?;
        Ok(RelayClient {
            peer_id,
            commands,
            bulk,
            thread: Some(thread),
        })
    }

    /// This client's id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Bulk byte counts so far.
    pub fn bulk(&self) -> &BulkCounters {
        &self.bulk
    }

    /// Requests a reservation on the relay at `relay` (loopback, ending in
    /// `/p2p/RELAY`) and waits for the relay's decision.
    pub fn reserve(&self, relay: &str, timeout: Duration) -> anyhow::Result<Reservation> {
        let relay = loopback_addr(relay)?;
        let (tx, rx) = oneshot::channel();
        self.send(Command::Reserve(relay, tx))?;
        wait_reply(rx, timeout, "reservation")
    }

    /// Dials `peer` through a circuit of the relay at `relay` (loopback,
    /// ending in `/p2p/RELAY`) and waits until the connection is up.
    pub fn connect_via(&self, relay: &str, peer: PeerId, timeout: Duration) -> anyhow::Result<()> {
        let circuit = loopback_addr(relay)?
            .with(Protocol::P2pCircuit)
            .with(Protocol::P2p(peer));
        self.send(Command::Dial(circuit))?;
        self.wait_connection(peer, timeout, true)
    }

    /// Dials `peer` directly at a loopback `addr` ending in `/p2p/PEER` and
    /// waits until the direct connection is up.
    pub fn connect_direct(
        &self,
        addr: &str,
        peer: PeerId,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.send(Command::Dial(loopback_addr(addr)?))?;
        self.wait_connection(peer, timeout, false)
    }

    /// Remote addresses of the open connections to `peer`; a relayed one
    /// contains `/p2p-circuit`.
    pub fn connections(&self, peer: PeerId) -> anyhow::Result<Vec<Multiaddr>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Connections(peer, tx))?;
        Ok(rx.blocking_recv()?)
    }

    /// Sends `request` to `peer` and waits for the response.
    pub fn sync(&self, peer: PeerId, request: SyncRequest) -> anyhow::Result<SyncResponse> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Sync(peer, request, tx))?;
        wait_reply(rx, REQUEST_TIMEOUT, "sync response")?.map_err(|e| anyhow::anyhow!(e))
    }

    /// Requests chunk `hash` from `peer`. The outer error means the client
    /// stopped; the inner one is the request's failure, such as
    /// `UnsupportedProtocols`.
    pub fn request_chunk(
        &self,
        peer: PeerId,
        hash: Hash,
    ) -> anyhow::Result<Result<ChunkReply, String>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Chunk(peer, hash, tx))?;
        wait_reply(rx, REQUEST_TIMEOUT, "chunk response")
    }

    /// Pushes `len` bytes to `peer` on the bulk protocol and waits until
    /// the push ends. Returns the receiver's byte count, or the error that
    /// broke the stream.
    pub fn push(&self, peer: PeerId, len: u64) -> anyhow::Result<Result<u64, String>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Push(peer, len, tx))?;
        wait_reply(rx, REQUEST_TIMEOUT + Duration::from_secs(5), "bulk push")
    }

    fn wait_connection(
        &self,
        peer: PeerId,
        timeout: Duration,
        relayed: bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self
                .connections(peer)?
                .iter()
                .any(|addr| is_relayed(addr) == relayed)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let kind = if relayed { "relayed" } else { "direct" };
        anyhow::bail!("no {kind} connection to {peer} after {timeout:?}")
    }

    fn send(&self, command: Command) -> anyhow::Result<()> {
        self.commands
            .blocking_send(command)
            .map_err(|_| anyhow::anyhow!("relay client {} has stopped", self.peer_id))
    }
}

impl Drop for RelayClient {
    fn drop(&mut self) {
        let _ = self.commands.try_send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn loopback_addr(text: &str) -> anyhow::Result<Multiaddr> {
    let addr: Multiaddr = text
        .parse()
        .with_context(|| format!("invalid multiaddr {text:?}"))?;
    anyhow::ensure!(
        super::is_loopback(&addr),
        "relay client dials loopback addresses only, not {addr}"
    );
    Ok(addr)
}

/// Waits up to `timeout` for the reply on `rx`.
fn wait_reply<T>(mut rx: oneshot::Receiver<T>, timeout: Duration, what: &str) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match rx.try_recv() {
            Ok(value) => return Ok(value),
            Err(oneshot::error::TryRecvError::Closed) => {
                anyhow::bail!("relay client stopped before the {what}")
            }
            Err(oneshot::error::TryRecvError::Empty) if Instant::now() >= deadline => {
                anyhow::bail!("no {what} after {timeout:?}")
            }
            Err(oneshot::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(20))
            }
        }
    }
}

fn build(keypair: Keypair, bulk: Arc<BulkCounters>) -> anyhow::Result<Swarm<ClientBehaviour>> {
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
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    Ok(swarm)
}

struct Actor {
    swarm: Swarm<ClientBehaviour>,
    hello: Hello,
    /// Open connections by id, with the peer and its remote address.
    connections: HashMap<ConnectionId, (PeerId, Multiaddr)>,
    /// Circuit listeners waiting for the relay's decision.
    reservations: HashMap<ListenerId, (PeerId, oneshot::Sender<Reservation>)>,
    syncs: HashMap<OutboundRequestId, oneshot::Sender<Result<SyncResponse, String>>>,
    chunks: HashMap<OutboundRequestId, oneshot::Sender<Result<ChunkReply, String>>>,
    pushes: HashMap<OutboundRequestId, oneshot::Sender<Result<u64, String>>>,
}

impl Actor {
    fn new(swarm: Swarm<ClientBehaviour>, hello: Hello) -> Self {
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

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
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
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    eprintln!("relay client: dial {addr} failed: {e}");
                }
            }
            Command::Connections(peer, reply) => {
                let addrs = self
                    .connections
                    .values()
                    .filter(|(p, _)| *p == peer)
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
            Err(e) => {
                let _ = reply.send(Reservation::Denied(format!("cannot listen: {e}")));
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
                        Err(e) => format!("{e}: {e:?}"),
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

/// Passes the response or failure of an outbound request to its waiter.
fn on_outbound<Req, Resp>(
    waiting: &mut HashMap<OutboundRequestId, oneshot::Sender<Result<Resp, String>>>,
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
            if let Some(reply) = waiting.remove(&request_id) {
                let _ = reply.send(Ok(response));
            }
        }
        request_response::Event::OutboundFailure {
            request_id, error, ..
        } => {
            if let Some(reply) = waiting.remove(&request_id) {
                let _ = reply.send(Err(format!("{error}: {error:?}")));
            }
        }
        _ => {}
    }
}
