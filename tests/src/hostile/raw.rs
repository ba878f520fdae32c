//! A hostile peer that writes raw frames on the node's sync and chunk
//! protocols: length headers over the limit, frames cut short, junk bodies
//! at the size cap, bytes past the end of a frame without end, and floods
//! of chunk requests whose replies it never reads.
//!
//! [`super::HostilePeer`] speaks through the node's own codecs, which
//! cannot write a malformed frame. This peer has its own codecs on the same
//! protocol names, over the same TCP, Noise and Yamux stack. It runs on its
//! own thread and tokio runtime, like [`super::HostilePeer`].

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, Message, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder};
use patchmesh_protocol::wire::{self, Hello, SyncRequest, SyncResponse};
use patchmesh_protocol::{limits, Hash};
use tokio::sync::{mpsc, oneshot};

/// A sync request frame as the raw peer writes it.
#[derive(Clone, Debug)]
pub enum RawFrame {
    /// A well-formed request.
    Encoded(SyncRequest),
    /// A length header one byte over the sync frame limit, then 1 KiB.
    OverLimit,
    /// A header promising `claimed` bytes, then `sent` bytes, then the
    /// stream is closed.
    CutShort {
        /// Body length in the header.
        claimed: u32,
        /// Body bytes written before closing.
        sent: u32,
    },
    /// A header at the sync frame limit and a body of that many 0xFF bytes,
    /// which do not decode, followed by junk without end until the node
    /// closes the stream.
    JunkAtLimit,
    /// A header at the sync frame limit and all but the last body byte,
    /// then nothing until the connection closes. The node keeps the bytes
    /// read so far until it ends the stream (its request timeout) or the
    /// connection.
    StallAtLimit,
}

/// The raw peer's reply to the node's chunk requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawChunkReply {
    /// `Missing`.
    Missing,
    /// A data frame at the chunk frame limit of junk bytes, followed by
    /// junk without end until the node closes the stream.
    JunkAtLimit,
}

/// Byte counts of a raw peer, for assertions.
#[derive(Debug, Default)]
pub struct RawCounters {
    /// Bytes written after the end of a frame before the node closed the
    /// stream.
    pub bytes_past_frames: AtomicU64,
    /// Chunk requests received from the node.
    pub chunk_requests: AtomicU64,
    /// Sync frames whose writing ended with an error (the node closed the
    /// stream or the connection).
    pub frames_cut_by_node: AtomicU64,
    /// [`RawFrame::StallAtLimit`] frames written up to their last byte, so
    /// the node read them and keeps them in memory.
    pub stalled_frames: AtomicU64,
    /// Sync requests that ended: with a response, with a failure, or
    /// unsent because the connection was gone.
    pub sync_requests_ended: AtomicU64,
}

/// Most bytes written past the end of one frame. The node is expected to
/// close the stream long before; the cap only stops a broken node from
/// making the test run forever.
const MAX_BYTES_PAST_FRAME: u64 = 256 * 1024 * 1024;

/// Bytes per write of junk.
const JUNK_BLOCK: usize = 64 * 1024;

#[derive(Clone)]
struct RawSyncCodec {
    counters: Arc<RawCounters>,
}

#[derive(Clone)]
struct RawChunkCodec {
    counters: Arc<RawCounters>,
    reply: RawChunkReply,
}

/// Writes junk until a write fails or [`MAX_BYTES_PAST_FRAME`] is reached.
async fn write_junk_until_closed<T: AsyncWrite + Unpin + Send>(io: &mut T, counters: &RawCounters) {
    let block = vec![0xFFu8; JUNK_BLOCK];
    let mut written = 0u64;
    while written < MAX_BYTES_PAST_FRAME {
        if io.write_all(&block).await.is_err() || io.flush().await.is_err() {
            break;
        }
        written += JUNK_BLOCK as u64;
        counters
            .bytes_past_frames
            .fetch_add(JUNK_BLOCK as u64, Ordering::Relaxed);
    }
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, limit: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    Ok(body)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, body: &[u8]) -> io::Result<()> {
    io.write_all(&(body.len() as u32).to_be_bytes()).await?;
    io.write_all(body).await?;
    io.close().await
}

fn invalid(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

impl RawSyncCodec {
    /// Writes a [`RawFrame::StallAtLimit`] frame, then waits until the
    /// connection closes. The body goes out in blocks, so hundreds of such
    /// streams cost this peer little memory.
    async fn stall_at_limit<T: AsyncWrite + Unpin + Send>(&self, io: &mut T) -> io::Result<()> {
        let len = limits::MAX_CONTROL_FRAME_BYTES;
        io.write_all(&(len as u32).to_be_bytes()).await?;
        let block = [0xFFu8; JUNK_BLOCK];
        let mut left = len - 1;
        while left > 0 {
            let step = left.min(JUNK_BLOCK);
            io.write_all(&block[..step]).await?;
            left -= step;
        }
        io.flush().await?;
        self.counters.stalled_frames.fetch_add(1, Ordering::Relaxed);
        // A write half cannot see the node reset the stream, so this waits
        // for the connection to close, which drops the future.
        futures::future::pending::<io::Result<()>>().await
    }
}

impl request_response::Codec for RawSyncCodec {
    type Protocol = StreamProtocol;
    type Request = RawFrame;
    type Response = SyncResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<RawFrame> {
        let body = read_frame(io, limits::MAX_CONTROL_FRAME_BYTES).await?;
        Ok(RawFrame::Encoded(
            wire::decode_sync(&body).map_err(invalid)?,
        ))
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncResponse> {
        let body = read_frame(io, limits::MAX_CONTROL_FRAME_BYTES).await?;
        wire::decode_sync(&body).map_err(invalid)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: RawFrame,
    ) -> io::Result<()> {
        let result = match request {
            RawFrame::Encoded(request) => write_frame(io, &wire::encode_sync(&request)).await,
            RawFrame::OverLimit => {
                let len = limits::MAX_CONTROL_FRAME_BYTES as u32 + 1;
                io.write_all(&len.to_be_bytes()).await?;
                io.write_all(&[0xFF; 1024]).await?;
                io.close().await
            }
            RawFrame::CutShort { claimed, sent } => {
                io.write_all(&claimed.to_be_bytes()).await?;
                io.write_all(&vec![0xFF; sent as usize]).await?;
                io.close().await
            }
            RawFrame::JunkAtLimit => {
                let len = limits::MAX_CONTROL_FRAME_BYTES;
                io.write_all(&(len as u32).to_be_bytes()).await?;
                io.write_all(&vec![0xFF; len]).await?;
                write_junk_until_closed(io, &self.counters).await;
                Err(io::Error::other("the node closed the stream"))
            }
            RawFrame::StallAtLimit => self.stall_at_limit(io).await,
        };
        if result.is_err() {
            self.counters
                .frames_cut_by_node
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: SyncResponse,
    ) -> io::Result<()> {
        write_frame(io, &wire::encode_sync(&response)).await
    }
}

impl request_response::Codec for RawChunkCodec {
    type Protocol = StreamProtocol;
    type Request = Hash;
    type Response = ();

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Hash> {
        let body = read_frame(io, 32).await?;
        let hash: [u8; 32] = body
            .try_into()
            .map_err(|_| invalid("chunk request is not a 32-byte hash"))?;
        Ok(Hash(hash))
    }

    /// Never reads the reply, so the node keeps the chunk it serves in memory until
    /// the stream times out or the connection closes.
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> io::Result<()> {
        futures::future::pending::<()>().await;
        Ok(())
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        hash: Hash,
    ) -> io::Result<()> {
        write_frame(io, &hash.0).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        _: (),
    ) -> io::Result<()> {
        match self.reply {
            RawChunkReply::Missing => write_frame(io, &[1]).await,
            RawChunkReply::JunkAtLimit => {
                let len = limits::MAX_CHUNK_FRAME_BYTES;
                io.write_all(&(len as u32).to_be_bytes()).await?;
                io.write_all(&[0]).await?;
                io.write_all(&vec![0xFF; len - 1]).await?;
                write_junk_until_closed(io, &self.counters).await;
                Ok(())
            }
        }
    }
}

#[derive(NetworkBehaviour)]
struct RawBehaviour {
    sync: request_response::Behaviour<RawSyncCodec>,
    chunk: request_response::Behaviour<RawChunkCodec>,
}

enum Command {
    Dial(Multiaddr),
    Sync(PeerId, RawFrame),
    ChunkRequests(PeerId, Vec<Hash>),
    Connected(oneshot::Sender<Vec<PeerId>>),
    Stop,
}

/// A running raw hostile peer.
pub struct RawPeer {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    counters: Arc<RawCounters>,
    thread: Option<JoinHandle<()>>,
}

impl RawPeer {
    /// Starts a raw peer that introduces itself with `hello`, claims every
    /// chunk of every payload, and replies to chunk requests with `reply`.
    pub fn start(hello: Hello, reply: RawChunkReply) -> anyhow::Result<Self> {
        let keypair = Keypair::generate_ed25519();
        let peer_id = keypair.public().to_peer_id();
        let counters = Arc::new(RawCounters::default());
        let (commands, receiver) = mpsc::channel(1024);
        let thread_counters = counters.clone();
        let build_counters = counters.clone();
        let thread = super::spawn_swarm_thread(
            "raw-hostile".into(),
            move || build(keypair, build_counters, reply),
            move |swarm| run(swarm, hello, thread_counters, receiver),
        )?;
        Ok(RawPeer {
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

    /// Byte counts so far.
    pub fn counters(&self) -> &RawCounters {
        &self.counters
    }

    /// Dials a node at a loopback `addr` ending in `/p2p/PEER`.
    pub fn dial(&self, addr: &str) -> anyhow::Result<()> {
        let addr: Multiaddr = addr
            .parse()
            .with_context(|| format!("invalid multiaddr {addr:?}"))?;
        anyhow::ensure!(
            super::is_loopback(&addr),
            "raw peer dials loopback addresses only, not {addr}"
        );
        self.send(Command::Dial(addr))
    }

    /// Waits until the peer is connected to `node`.
    pub fn wait_connected(&self, node: PeerId, timeout: Duration) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.connected()?.contains(&node) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("raw peer not connected to {node} after {timeout:?}")
    }

    /// Peers this peer is connected to.
    pub fn connected(&self) -> anyhow::Result<Vec<PeerId>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Connected(tx))?;
        Ok(rx.blocking_recv()?)
    }

    /// Sends `frame` as a sync request to `node`, each on its own stream.
    pub fn send_sync(&self, node: PeerId, frame: RawFrame) -> anyhow::Result<()> {
        self.send(Command::Sync(node, frame))
    }

    /// Requests every chunk in `hashes` from `node` at once, each on its
    /// own stream, and never reads the replies.
    pub fn flood_chunk_requests(&self, node: PeerId, hashes: Vec<Hash>) -> anyhow::Result<()> {
        self.send(Command::ChunkRequests(node, hashes))
    }

    fn send(&self, command: Command) -> anyhow::Result<()> {
        self.commands
            .blocking_send(command)
            .map_err(|_| anyhow::anyhow!("raw peer {} has stopped", self.peer_id))
    }
}

impl Drop for RawPeer {
    fn drop(&mut self) {
        let _ = self.commands.try_send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn build(
    keypair: Keypair,
    counters: Arc<RawCounters>,
    reply: RawChunkReply,
) -> anyhow::Result<Swarm<RawBehaviour>> {
    // Long stream timeouts, so the node, not this peer, ends each stream.
    let config = request_response::Config::default()
        .with_request_timeout(Duration::from_secs(3600))
        .with_max_concurrent_streams(4096);
    let sync = request_response::Behaviour::with_codec(
        RawSyncCodec {
            counters: counters.clone(),
        },
        [(
            StreamProtocol::new(wire::SYNC_PROTOCOL),
            ProtocolSupport::Full,
        )],
        config.clone(),
    );
    let chunk = request_response::Behaviour::with_codec(
        RawChunkCodec { counters, reply },
        [(
            StreamProtocol::new(wire::CHUNK_PROTOCOL),
            ProtocolSupport::Full,
        )],
        config,
    );
    let mut swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| RawBehaviour { sync, chunk })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    Ok(swarm)
}

async fn run(
    mut swarm: Swarm<RawBehaviour>,
    hello: Hello,
    counters: Arc<RawCounters>,
    mut commands: mpsc::Receiver<Command>,
) {
    loop {
        tokio::select! {
            event = swarm.select_next_some() => on_event(&mut swarm, &hello, &counters, event),
            command = commands.recv() => match command {
                None | Some(Command::Stop) => break,
                Some(Command::Dial(addr)) => {
                    if let Err(e) = swarm.dial(addr) {
                        eprintln!("raw peer: dial failed: {e}");
                    }
                }
                Some(Command::Sync(node, frame)) => {
                    swarm.behaviour_mut().sync.send_request(&node, frame);
                }
                Some(Command::ChunkRequests(node, hashes)) => {
                    for hash in hashes {
                        swarm.behaviour_mut().chunk.send_request(&node, hash);
                    }
                }
                Some(Command::Connected(reply)) => {
                    let _ = reply.send(swarm.connected_peers().copied().collect());
                }
            },
        }
    }
}

fn on_event(
    swarm: &mut Swarm<RawBehaviour>,
    hello: &Hello,
    counters: &RawCounters,
    event: SwarmEvent<RawBehaviourEvent>,
) {
    match event {
        SwarmEvent::Behaviour(RawBehaviourEvent::Sync(request_response::Event::Message {
            message: Message::Request {
                request, channel, ..
            },
            ..
        })) => {
            let response = match request {
                RawFrame::Encoded(SyncRequest::Hello(_)) => SyncResponse::Hello(hello.clone()),
                RawFrame::Encoded(SyncRequest::Summary) => SyncResponse::Summary(Vec::new()),
                RawFrame::Encoded(SyncRequest::Have { .. }) => {
                    SyncResponse::Have(vec![0xFF; limits::MAX_CHUNKS / 8])
                }
                RawFrame::Encoded(SyncRequest::Peers) => SyncResponse::Peers(Vec::new()),
                _ => SyncResponse::Refused("not supported by this peer".into()),
            };
            let _ = swarm.behaviour_mut().sync.send_response(channel, response);
        }
        SwarmEvent::Behaviour(RawBehaviourEvent::Chunk(request_response::Event::Message {
            message: Message::Request { channel, .. },
            ..
        })) => {
            counters.chunk_requests.fetch_add(1, Ordering::Relaxed);
            let _ = swarm.behaviour_mut().chunk.send_response(channel, ());
        }
        SwarmEvent::Behaviour(RawBehaviourEvent::Sync(request_response::Event::Message {
            message: Message::Response { .. },
            ..
        })) => {
            counters.sync_requests_ended.fetch_add(1, Ordering::Relaxed);
        }
        SwarmEvent::Behaviour(RawBehaviourEvent::Sync(
            request_response::Event::OutboundFailure { error, .. },
        )) => {
            counters.sync_requests_ended.fetch_add(1, Ordering::Relaxed);
            eprintln!("raw peer: sync request ended: {error}");
        }
        SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
            eprintln!("raw peer: connection to {peer_id} closed: {cause:?}")
        }
        _ => {}
    }
}
