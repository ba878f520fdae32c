//! A hostile peer for attack tests: a real libp2p swarm, built with the
//! node's own [`build_swarm`] and codecs, that connects to a node on
//! loopback and misbehaves on request.
//!
//! It can gossip any bytes on the objects topic (forged, tampered, expired,
//! replayed objects, or junk), offer such objects through anti-entropy
//! (`Summary` and `Get`), claim to hold every chunk, and reply to chunk
//! requests with wrong, truncated, oversized or missing data, slowly, or not
//! at all. [`forge`] builds the objects from validly signed ones and admin
//! keys.
//!
//! The swarm runs on its own thread and tokio runtime, so tests stay plain
//! synchronous functions. Every call talks to that thread over a bounded
//! channel. Dropping the peer stops the thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, Message, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use patchmesh_node::net::codec::{ChunkReply, SyncInbound};
use patchmesh_node::net::{build_swarm, Behaviour, BehaviourEvent};
use patchmesh_protocol::wire::{self, Hello, ObjectSummary, PeerRecord, SyncRequest, SyncResponse};
use patchmesh_protocol::{limits, Hash, Kind, Manifest, Policy, Root, Signed};
use tokio::sync::{mpsc, oneshot};

pub mod raw;
pub mod relay;

/// How the peer responds to chunk requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkMode {
    /// Serves the true bytes of chunks it was given.
    Honest,
    /// Serves bytes of the right length that hash to something else.
    Wrong,
    /// Serves the first half of the true bytes.
    Truncated,
    /// Announces a frame one byte over the chunk frame limit.
    Oversized,
    /// Replies `Missing` although its chunk map claims the chunk.
    Missing,
    /// Serves the true bytes after this delay.
    Slow(Duration),
    /// Never responds, so requests time out on the node's side.
    Silent,
}

/// What a hostile peer counted, for assertions.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Chunk requests received, by chunk hash.
    pub chunk_requests: HashMap<Hash, u32>,
    /// Chunk responses with data sent.
    pub chunks_served: u32,
    /// Object ids the node fetched with `Get`.
    pub objects_requested: u32,
    /// Gossip messages published.
    pub gossiped: u32,
    /// Peer exchange requests the node sent.
    pub peer_requests: u32,
}

impl Counters {
    /// Chunk requests received in total.
    pub fn total_chunk_requests(&self) -> u32 {
        self.chunk_requests.values().sum()
    }
}

/// Settings of a hostile peer.
#[derive(Clone, Debug)]
pub struct HostileConfig {
    /// Introduction sent to the node; the site decides locality.
    pub hello: Hello,
    /// Chunk bytes by hash, served in [`ChunkMode::Honest`] and used as the
    /// base of the other modes.
    pub chunks: HashMap<Hash, Vec<u8>>,
    /// How chunk requests are answered.
    pub chunk_mode: ChunkMode,
    /// Whether `Have` claims every chunk of every payload.
    pub claim_all_chunks: bool,
    /// Encoded signed objects offered by anti-entropy.
    pub offered_objects: Vec<Vec<u8>>,
    /// Records returned for peer exchange, with any addresses.
    pub peer_records: Vec<PeerRecord>,
}

impl Default for HostileConfig {
    fn default() -> Self {
        HostileConfig {
            hello: Hello {
                host: "hostile".into(),
                site: "default".into(),
                groups: Vec::new(),
                observer: false,
                wan: true,
                agent_version: "0.0.0-hostile".into(),
                seq: 1,
            },
            chunks: HashMap::new(),
            chunk_mode: ChunkMode::Honest,
            claim_all_chunks: true,
            offered_objects: Vec::new(),
            peer_records: Vec::new(),
        }
    }
}

enum Command {
    Dial(Multiaddr),
    Gossip(Vec<u8>, oneshot::Sender<anyhow::Result<()>>),
    Flood(usize, oneshot::Sender<usize>),
    SetChunkMode(ChunkMode),
    Offer(Vec<Vec<u8>>),
    Connected(oneshot::Sender<Vec<PeerId>>),
    Stop,
}

/// A running hostile peer.
pub struct HostilePeer {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    counters: Arc<Mutex<Counters>>,
    thread: Option<JoinHandle<()>>,
}

/// Bitmap length in bytes of a claim-everything `Have` response: one bit per
/// chunk up to the manifest chunk limit.
const CLAIM_ALL_BYTES: usize = limits::MAX_CHUNKS / 8;

/// How long [`HostilePeer::gossip`] retries while the node has not yet
/// learned the peer's topic subscription.
const GOSSIP_RETRY: Duration = Duration::from_secs(15);

impl HostilePeer {
    /// Starts a hostile peer listening on a loopback TCP port.
    pub fn start(config: HostileConfig) -> anyhow::Result<Self> {
        let keypair = Keypair::generate_ed25519();
        let peer_id = keypair.public().to_peer_id();
        let counters = Arc::new(Mutex::new(Counters::default()));
        let (commands, receiver) = mpsc::channel(256);
        let thread_counters = counters.clone();
        let thread = spawn_swarm_thread(
            format!("hostile-{}", short(&peer_id)),
            move || start_swarm(keypair),
            move |swarm| Actor::new(swarm, config, thread_counters).run(receiver),
        )?;
        Ok(HostilePeer {
            peer_id,
            commands,
            counters,
            thread: Some(thread),
        })
    }

    /// This peer's id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Dials a node; `addr` must end in `/p2p/PEER` and be a loopback address.
    pub fn dial(&self, addr: &str) -> anyhow::Result<()> {
        let addr: Multiaddr = addr
            .parse()
            .with_context(|| format!("invalid multiaddr {addr:?}"))?;
        anyhow::ensure!(
            is_loopback(&addr),
            "hostile peer dials loopback addresses only, not {addr}"
        );
        self.send(Command::Dial(addr))
    }

    /// Waits until the peer is connected to `node`.
    pub fn wait_connected(&self, node: PeerId, timeout: Duration) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            let (tx, rx) = oneshot::channel();
            self.send(Command::Connected(tx))?;
            if rx.blocking_recv()?.contains(&node) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("hostile peer not connected to {node} after {timeout:?}")
    }

    /// Publishes `bytes` on the objects topic, retrying until a node has
    /// learned this peer's subscription.
    pub fn gossip(&self, bytes: Vec<u8>) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Gossip(bytes, tx))?;
        rx.blocking_recv()
            .context("hostile peer stopped before publishing")?
    }

    /// Publishes `count` distinct junk messages at once, without retrying,
    /// and returns how many gossipsub took. Call [`HostilePeer::gossip`]
    /// first so the node has learned this peer's subscription.
    pub fn flood_junk(&self, count: usize) -> anyhow::Result<usize> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Flood(count, tx))?;
        rx.blocking_recv()
            .context("hostile peer stopped before flooding")
    }

    /// Changes how chunk requests are answered from now on.
    pub fn set_chunk_mode(&self, mode: ChunkMode) -> anyhow::Result<()> {
        self.send(Command::SetChunkMode(mode))
    }

    /// Replaces the objects offered by anti-entropy.
    pub fn offer(&self, objects: Vec<Vec<u8>>) -> anyhow::Result<()> {
        self.send(Command::Offer(objects))
    }

    /// What the peer counted so far.
    pub fn counters(&self) -> Counters {
        self.counters
            .lock()
            .expect("counters lock is never poisoned")
            .clone()
    }

    fn send(&self, command: Command) -> anyhow::Result<()> {
        self.commands
            .blocking_send(command)
            .map_err(|_| anyhow::anyhow!("hostile peer {} has stopped", self.peer_id))
    }
}

impl Drop for HostilePeer {
    fn drop(&mut self) {
        let _ = self.commands.try_send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Spawns thread `name` with a single-threaded tokio runtime, builds a
/// swarm there with `build` and then awaits `run` with it. Returns once the
/// swarm is built, or with the error that stopped it.
fn spawn_swarm_thread<S, F>(
    name: String,
    build: impl FnOnce() -> anyhow::Result<S> + Send + 'static,
    run: impl FnOnce(S) -> F + Send + 'static,
) -> anyhow::Result<JoinHandle<()>>
where
    F: std::future::Future<Output = ()>,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::anyhow!("tokio runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let swarm = match build() {
                    Ok(swarm) => swarm,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                run(swarm).await;
            });
        })
        .with_context(|| format!("cannot spawn thread {name}"))?;
    ready_rx
        .recv()
        .with_context(|| format!("thread {name} ended before its swarm started"))??;
    Ok(thread)
}

fn short(peer: &PeerId) -> String {
    let text = peer.to_base58();
    text[text.len().saturating_sub(6)..].to_string()
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_loopback(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

fn start_swarm(keypair: Keypair) -> anyhow::Result<Swarm<Behaviour>> {
    let mut swarm = build_swarm(keypair, false, 16)?;
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&IdentTopic::new(wire::OBJECTS_TOPIC))?;
    Ok(swarm)
}

/// Summary entry a node would store for `bytes`; unknown kinds get a slot
/// named after their id and the largest revision, so the node asks for them.
fn summary_entry(bytes: &[u8]) -> Option<ObjectSummary> {
    let signed = Signed::from_bytes(bytes).ok()?;
    let (slot, revision) = match signed.kind {
        Kind::Root => (
            "root".to_string(),
            signed.decode_body::<Root>().ok()?.version,
        ),
        Kind::Policy => {
            let policy: Policy = signed.decode_body().ok()?;
            (policy.id, policy.version)
        }
        Kind::Manifest => {
            let manifest: Manifest = signed.decode_body().ok()?;
            (manifest.patch_ref().to_string(), manifest.revision)
        }
        _ => (signed.id().to_hex(), u64::MAX),
    };
    Some(ObjectSummary {
        id: signed.id(),
        kind: signed.kind,
        slot,
        revision,
    })
}

/// A delayed chunk answer that comes back to the swarm loop when due.
type DueReply = (ResponseChannel<ChunkReply>, ChunkReply);

struct Actor {
    swarm: Swarm<Behaviour>,
    config: HostileConfig,
    counters: Arc<Mutex<Counters>>,
    topic: IdentTopic,
    due_tx: mpsc::Sender<DueReply>,
    due_rx: mpsc::Receiver<DueReply>,
    /// Silent-mode channels, kept so the streams stay open unanswered.
    withheld: Vec<ResponseChannel<ChunkReply>>,
}

impl Actor {
    fn new(swarm: Swarm<Behaviour>, config: HostileConfig, counters: Arc<Mutex<Counters>>) -> Self {
        let (due_tx, due_rx) = mpsc::channel(256);
        Actor {
            swarm,
            config,
            counters,
            topic: IdentTopic::new(wire::OBJECTS_TOPIC),
            due_tx,
            due_rx,
            withheld: Vec::new(),
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut pending_gossip: Vec<(
            Vec<u8>,
            oneshot::Sender<anyhow::Result<()>>,
            std::time::Instant,
        )> = Vec::new();
        let mut retry = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                Some((channel, reply)) = self.due_rx.recv() => {
                    let _ = self.swarm.behaviour_mut().chunk.send_response(channel, reply);
                }
                command = commands.recv() => match command {
                    None | Some(Command::Stop) => break,
                    Some(Command::Dial(addr)) => {
                        if let Err(e) = self.swarm.dial(addr) {
                            eprintln!("hostile peer: dial failed: {e}");
                        }
                    }
                    Some(Command::Gossip(bytes, reply)) => {
                        pending_gossip.push((bytes, reply, std::time::Instant::now()));
                    }
                    Some(Command::Flood(count, reply)) => {
                        let published = self.flood(count);
                        let _ = reply.send(published);
                    }
                    Some(Command::SetChunkMode(mode)) => self.config.chunk_mode = mode,
                    Some(Command::Offer(objects)) => self.config.offered_objects = objects,
                    Some(Command::Connected(reply)) => {
                        let _ = reply.send(self.swarm.connected_peers().copied().collect());
                    }
                },
                _ = retry.tick() => {}
            }
            pending_gossip = pending_gossip
                .into_iter()
                .filter_map(|(bytes, reply, since)| self.try_publish(bytes, reply, since))
                .collect();
        }
    }

    /// Publishes one message; returns it back while it should be retried.
    fn try_publish(
        &mut self,
        bytes: Vec<u8>,
        reply: oneshot::Sender<anyhow::Result<()>>,
        since: std::time::Instant,
    ) -> Option<(
        Vec<u8>,
        oneshot::Sender<anyhow::Result<()>>,
        std::time::Instant,
    )> {
        let result = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), bytes.clone());
        match result {
            Ok(_) => {
                self.counters().gossiped += 1;
                let _ = reply.send(Ok(()));
                None
            }
            Err(gossipsub::PublishError::Duplicate) => {
                let _ = reply.send(Err(anyhow::anyhow!("message was already published")));
                None
            }
            Err(e) if since.elapsed() > GOSSIP_RETRY => {
                let _ = reply.send(Err(anyhow::anyhow!("publish failed: {e}")));
                None
            }
            Err(_) => Some((bytes, reply, since)),
        }
    }

    fn flood(&mut self, count: usize) -> usize {
        let mut published = 0;
        for i in 0..count {
            let mut junk = format!("junk {i} ").into_bytes();
            junk.extend(rand::random::<[u8; 32]>());
            let result = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(self.topic.clone(), junk);
            if result.is_ok() {
                published += 1;
            }
        }
        self.counters().gossiped += published as u32;
        published
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters
            .lock()
            .expect("counters lock is never poisoned")
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .add_explicit_peer(&peer_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            })) => {
                let SyncInbound::Request(request) = request else {
                    return;
                };
                let response = self.answer_sync(request);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, response);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Chunk(request_response::Event::Message {
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            })) => self.answer_chunk(request.hash, channel),
            _ => {}
        }
    }

    fn answer_sync(&mut self, request: SyncRequest) -> SyncResponse {
        match request {
            SyncRequest::Hello(_) => SyncResponse::Hello(self.config.hello.clone()),
            SyncRequest::Summary => SyncResponse::Summary(
                self.config
                    .offered_objects
                    .iter()
                    .filter_map(|bytes| summary_entry(bytes))
                    .collect(),
            ),
            SyncRequest::Get(ids) => {
                self.counters().objects_requested += ids.len() as u32;
                SyncResponse::Objects(
                    self.config
                        .offered_objects
                        .iter()
                        .filter(|bytes| {
                            Signed::from_bytes(bytes).is_ok_and(|s| ids.contains(&s.id()))
                        })
                        .cloned()
                        .collect(),
                )
            }
            SyncRequest::Have { .. } if self.config.claim_all_chunks => {
                SyncResponse::Have(vec![0xFF; CLAIM_ALL_BYTES])
            }
            SyncRequest::Have { .. } => SyncResponse::Have(Vec::new()),
            SyncRequest::Report(_) => SyncResponse::Refused("not an observer".into()),
            SyncRequest::Peers => {
                self.counters().peer_requests += 1;
                SyncResponse::Peers(self.config.peer_records.clone())
            }
            // Requests added to the protocol later are refused.
            #[allow(unreachable_patterns)]
            _ => SyncResponse::Refused("not supported by this peer".into()),
        }
    }

    fn answer_chunk(&mut self, hash: Hash, channel: ResponseChannel<ChunkReply>) {
        *self.counters().chunk_requests.entry(hash).or_default() += 1;
        let true_bytes = self.config.chunks.get(&hash).cloned();
        let reply = match (&self.config.chunk_mode, true_bytes) {
            (ChunkMode::Silent, _) => {
                self.withheld.push(channel);
                return;
            }
            (ChunkMode::Missing, _) | (_, None) => ChunkReply::Missing,
            (ChunkMode::Honest, Some(bytes)) => ChunkReply::Data(bytes),
            (ChunkMode::Wrong, Some(mut bytes)) => {
                for byte in bytes.iter_mut() {
                    *byte ^= 0x5A;
                }
                ChunkReply::Data(bytes)
            }
            (ChunkMode::Truncated, Some(mut bytes)) => {
                bytes.truncate(bytes.len() / 2);
                ChunkReply::Data(bytes)
            }
            (ChunkMode::Oversized, Some(_)) => {
                // The tag byte makes the frame one byte over the limit.
                ChunkReply::Data(vec![0u8; limits::MAX_CHUNK_FRAME_BYTES])
            }
            (ChunkMode::Slow(delay), Some(bytes)) => {
                let delay = *delay;
                let due = self.due_tx.clone();
                self.counters().chunks_served += 1;
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = due.send((channel, ChunkReply::Data(bytes))).await;
                });
                return;
            }
        };
        if matches!(reply, ChunkReply::Data(_)) {
            self.counters().chunks_served += 1;
        }
        let _ = self
            .swarm
            .behaviour_mut()
            .chunk
            .send_response(channel, reply);
    }
}

pub mod forge {
    //! Builders of hostile objects from validly signed ones.

    use patchmesh_protocol::envelope::Signature;
    use patchmesh_protocol::{Body, SecretKey, Signed};

    /// Decodes `bytes` as a `B` object, lets `change` edit the body and
    /// signs the result with `keys`.
    pub fn resign<B: Body>(
        bytes: &[u8],
        keys: &[&SecretKey],
        change: impl FnOnce(&mut B),
    ) -> anyhow::Result<Vec<u8>> {
        let signed = Signed::from_bytes(bytes)?;
        let mut body: B = signed.decode_body()?;
        change(&mut body);
        Ok(Signed::sign(&body, keys).to_bytes())
    }

    /// Flips one payload byte and keeps the signatures, which then no
    /// longer verify.
    pub fn tamper(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut signed = Signed::from_bytes(bytes)?;
        let last = signed
            .payload
            .last_mut()
            .ok_or_else(|| anyhow::anyhow!("object has an empty payload"))?;
        *last ^= 0x01;
        Ok(signed.to_bytes())
    }

    /// Keeps only the first `keep` signatures.
    pub fn keep_signatures(bytes: &[u8], keep: usize) -> anyhow::Result<Vec<u8>> {
        let mut signed = Signed::from_bytes(bytes)?;
        signed.signatures.truncate(keep);
        Ok(signed.to_bytes())
    }

    /// Repeats the first signature `times` times, as a key signing twice.
    pub fn repeat_signature(bytes: &[u8], times: usize) -> anyhow::Result<Vec<u8>> {
        let mut signed = Signed::from_bytes(bytes)?;
        let first: Signature = signed
            .signatures
            .first()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("object has no signature"))?;
        signed.signatures = vec![first; times];
        Ok(signed.to_bytes())
    }
}
