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

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use patchmesh_node::net::codec::ChunkReply;
use patchmesh_node::net::direct_only::is_relayed;
use patchmesh_protocol::wire::{Hello, SyncRequest, SyncResponse};
use patchmesh_protocol::Hash;
use tokio::sync::{mpsc, oneshot};

mod actor;
mod bulk;

pub use bulk::{BulkCounters, BULK_PROTOCOL};

/// Maximum time a bulk push, sync or chunk request may take. The relay is
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
    /// `hello` when a node requests a hello.
    pub fn start(hello: Hello) -> anyhow::Result<Self> {
        let keypair = Keypair::generate_ed25519();
        let peer_id = keypair.public().to_peer_id();
        let bulk = Arc::new(BulkCounters::default());
        let (commands, receiver) = mpsc::channel(64);
        let thread_bulk = bulk.clone();
        let thread = super::spawn_swarm_thread(
            format!("relay-client-{}", super::short(&peer_id)),
            move || actor::build(keypair, thread_bulk),
            move |swarm| actor::Actor::new(swarm, hello).run(receiver),
        )?;
        Ok(RelayClient {
            peer_id,
            commands,
            bulk,
            thread: Some(thread),
        })
    }

    /// Returns this client's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Returns the bulk byte counters of this client.
    pub fn bulk(&self) -> &BulkCounters {
        &self.bulk
    }

    /// Requests a reservation on the relay at `relay` (loopback, ending in
    /// `/p2p/RELAY`) and waits for the relay's decision.
    pub fn reserve(&self, relay: &str, timeout: Duration) -> anyhow::Result<Reservation> {
        let relay = parse_loopback_addr(relay)?;
        let (tx, rx) = oneshot::channel();
        self.send(Command::Reserve(relay, tx))?;
        wait_reply(rx, timeout, "reservation")
    }

    /// Dials `peer` through a circuit of the relay at `relay` (loopback,
    /// ending in `/p2p/RELAY`) and waits until the connection is up.
    pub fn connect_via(&self, relay: &str, peer: PeerId, timeout: Duration) -> anyhow::Result<()> {
        let circuit = parse_loopback_addr(relay)?
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
        self.send(Command::Dial(parse_loopback_addr(addr)?))?;
        self.wait_connection(peer, timeout, false)
    }

    /// Returns the remote addresses of the open connections to `peer`. A
    /// relayed address contains `/p2p-circuit`.
    pub fn connections(&self, peer: PeerId) -> anyhow::Result<Vec<Multiaddr>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Connections(peer, tx))?;
        Ok(rx.blocking_recv()?)
    }

    /// Sends `request` to `peer` and waits for the response.
    pub fn sync(&self, peer: PeerId, request: SyncRequest) -> anyhow::Result<SyncResponse> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Sync(peer, request, tx))?;
        wait_reply(rx, REQUEST_TIMEOUT, "sync response")?.map_err(|error| anyhow::anyhow!(error))
    }

    /// Requests chunk `hash` from `peer`. The outer error means the client
    /// stopped or no response arrived in time. The inner error is the
    /// request's failure, such as `UnsupportedProtocols`.
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

    /// Polls until `peer` has a connection of the requested kind (relayed or
    /// direct), or fails after `timeout`.
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
        anyhow::bail!("timed out after {timeout:?} waiting for a {kind} connection to {peer}")
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

/// Parses `text` as a multiaddr and rejects any address that is not loopback.
fn parse_loopback_addr(text: &str) -> anyhow::Result<Multiaddr> {
    let addr: Multiaddr = text
        .parse()
        .with_context(|| format!("invalid multiaddr {text:?}"))?;
    anyhow::ensure!(
        super::is_loopback(&addr),
        "relay client dials loopback addresses only, not {addr}"
    );
    Ok(addr)
}

/// Waits up to `timeout` for the reply on `rx`. `reply_name` names the reply
/// in error messages.
fn wait_reply<T>(
    mut rx: oneshot::Receiver<T>,
    timeout: Duration,
    reply_name: &str,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match rx.try_recv() {
            Ok(value) => return Ok(value),
            Err(oneshot::error::TryRecvError::Closed) => {
                anyhow::bail!("relay client stopped before the {reply_name} arrived")
            }
            Err(oneshot::error::TryRecvError::Empty) if Instant::now() >= deadline => {
                anyhow::bail!("timed out after {timeout:?} waiting for the {reply_name}")
            }
            Err(oneshot::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(20))
            }
        }
    }
}
