//! The agent's event loop: one task owns the libp2p swarm and the node's
//! state, and reacts to swarm events, control API commands, finished
//! background work and a periodic tick.
//!
//! Blocking work (reading and verifying chunks, installers) runs in other
//! tasks and comes back as [`Work`] events, so the loop never stalls on disk
//! or on a child process.

mod airgap;
mod cache;
mod chunks;
mod hello;
pub mod inventory;
mod patches;
mod peers;
mod reach;
mod redial;
mod reports;
mod serve_slots;
mod stale;
mod sync;
mod sync_queue;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use patchmesh_protocol::policy::Membership;
use patchmesh_protocol::wire::{self, Hello};
use patchmesh_protocol::{Hash, Manifest, Signed};
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::config::Config;
use crate::net::codec::ChunkReply;
use crate::net::dial::DialPolicy;
use crate::net::{build_swarm_with, Behaviour, BehaviourEvent, SwarmOptions};
use crate::store::{ChunkStore, MetaStore};
use crate::trust::{AdmitError, Admitted, Outcome, Trust};

pub use patches::PatchData;
pub use peers::PeerView;

/// Name of the pinned root file in the data folder.
pub const ROOT_FILE: &str = "root.bin";
/// Name of the node key file in the data folder.
pub const KEY_FILE: &str = "node.key";

/// A request from the control API to the agent.
pub enum Command {
    /// Admit a signed object and gossip it if new.
    Publish {
        /// Encoded signed object.
        bytes: Vec<u8>,
        /// Channel for the reply.
        reply: oneshot::Sender<Result<Admitted, String>>,
    },
    /// A chunk was stored through the control API.
    ChunkStored(Hash),
    /// List connected peers.
    Peers(oneshot::Sender<Vec<PeerView>>),
    /// The user asks to postpone pending reboots; the reply is how many
    /// accepted.
    PostponeReboot(oneshot::Sender<usize>),
    /// Verify a bundle file whole, then store what it carries.
    ImportBundle {
        /// Bundle file on this machine.
        path: PathBuf,
        /// Channel for the reply: the import summary as JSON, or the error.
        reply: oneshot::Sender<Result<serde_json::Value, String>>,
    },
    /// Signed reports arrived from another site on removable media.
    ImportReports(Vec<Vec<u8>>),
}

/// Background work that finished.
enum Work {
    /// A chunk to serve was read (or found missing).
    Serve(ResponseChannel<ChunkReply>, ChunkReply),
    /// A fetched chunk was verified and stored, or failed.
    Fetched {
        payload: Hash,
        peer: PeerId,
        index: usize,
        bytes: u64,
        /// Error text and whether the peer is to blame (wrong content)
        /// rather than this node (full disk, quota).
        result: Result<(), (String, bool)>,
    },
    /// An inventory refresh finished: the update to send, if any, and the
    /// latest good inventory.
    Inventory(
        Option<Box<patchmesh_protocol::inventory::InventoryUpdate>>,
        Option<Box<patchmesh_protocol::inventory::Inventory>>,
    ),
    /// A background action of a track finished: the track key, the event
    /// to feed back, and what an installer kept for rollback.
    Event(
        String,
        crate::rollout::Event,
        Option<crate::install::InstallRecord>,
    ),
}

/// Facts about this node shared with the control API.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeInfo {
    /// Peer id, base58.
    pub peer: String,
    /// Host name.
    pub host: String,
    /// Site.
    pub site: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Whether this node collects reports.
    pub observer: bool,
    /// Listened multiaddrs with `/p2p/PEER`.
    pub listen: Vec<String>,
    /// Agent version.
    pub version: String,
    /// Set while the newest admin-signed object held is older than
    /// `trust.stale_after_secs`.
    pub stale: Option<crate::trust::StaleAlarm>,
}

/// State shared between the agent and the control API.
#[derive(Clone)]
pub struct Shared {
    /// Metadata store.
    pub meta: MetaStore,
    /// Chunk store.
    pub chunks: Arc<ChunkStore>,
    /// Chunk hashes listed by held manifests: only these are accepted
    /// through the control API.
    pub listed_chunks: Arc<RwLock<HashSet<Hash>>>,
    /// This node.
    pub info: Arc<RwLock<NodeInfo>>,
    /// Clock of the node.
    pub clock: Clock,
    /// Patch events from collected reports, for the history view.
    pub history: Arc<std::sync::Mutex<crate::inventory::history::HistoryLog>>,
}

/// Why a pending sync request was sent.
#[derive(Clone, Debug)]
enum SyncPurpose {
    Hello,
    Summary,
    Get,
    Have(Hash),
    Report,
    Peers,
    Reports,
    Inventory,
}

/// The running agent.
pub struct Agent {
    config: Config,
    data_dir: PathBuf,
    keypair: Keypair,
    local: PeerId,
    swarm: Swarm<Behaviour>,
    trust: Trust,
    shared: Shared,
    topic: IdentTopic,
    peers: HashMap<PeerId, peers::PeerEntry>,
    /// Per-peer penalty points for misbehaviour outside gossipsub.
    penalties: HashMap<PeerId, i64>,
    blocked: HashSet<PeerId>,
    pending_sync: HashMap<OutboundRequestId, (PeerId, SyncPurpose)>,
    /// Sync requests in flight and waiting, per peer.
    sync_queue: sync_queue::SyncQueue<(wire::SyncRequest, SyncPurpose)>,
    pending_chunks: HashMap<OutboundRequestId, (Hash, usize, PeerId, Instant)>,
    downloads: HashMap<Hash, chunks::Download>,
    /// Held manifests by manifest (signed object) id. Several manifests
    /// may share one payload, such as one package published under two
    /// names, so the payload hash cannot be the key.
    manifests: std::collections::BTreeMap<Hash, Manifest>,
    /// Which chunks of each known payload are stored, by payload hash.
    held: HashMap<Hash, Vec<bool>>,
    tracks: std::collections::BTreeMap<String, patches::TrackEntry>,
    patch_data: HashMap<String, PatchData>,
    download_waiters: HashMap<Hash, std::collections::BTreeSet<String>>,
    /// Newest verified report per peer: collected (observer) or fetched from
    /// observers, for wave decisions.
    fleet_reports: HashMap<String, patchmesh_protocol::NodeReport>,
    last_fleet_poll: Instant,
    /// Whether fleet reports were fetched at least once, so wave gates
    /// judge real members rather than an empty fleet.
    fleet_known: bool,
    report_dirty: bool,
    last_report: Instant,
    last_anti_entropy: Instant,
    last_plan: Instant,
    /// When the stale alarm was last evaluated; `None` makes it due.
    last_stale_check: Option<Instant>,
    /// Inbound connections denied since the last warning, and when that
    /// warning was logged.
    denied_inbound: (u64, Option<Instant>),
    wan_budget: chunks::WanBudget,
    /// When configured bootstrap peers are dialed again.
    bootstrap_redial: redial::BootstrapRedial,
    /// Direct and relayed connections, WAN duty, relay reservations.
    reach: reach::Reach,
    /// Sequence numbers of this node's hellos.
    hello_seq: hello::HelloSeq,
    /// Chunk serves in progress per peer, to bound the memory they hold.
    serving: serve_slots::ServeSlots,
    last_import_scan: Instant,
    last_sweep: Instant,
    collector: inventory::SharedCollector,
    /// Latest good inventory of this machine.
    inventory: Option<patchmesh_protocol::inventory::Inventory>,
    last_inventory: Option<Instant>,
    inventory_due: bool,
    inventory_running: bool,
    inventory_full_next: bool,
    work_tx: mpsc::Sender<Work>,
    work_rx: mpsc::Receiver<Work>,
    started: Instant,
}

/// Loads the node key from `data_dir`, creating it on first use.
pub fn load_or_create_key(data_dir: &Path) -> anyhow::Result<Keypair> {
    let path = data_dir.join(KEY_FILE);
    if path.exists() {
        let bytes = std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("cannot read node key {}: {e}", path.display()))?;
        return Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "node key {} is damaged: {e} (delete it to give the node a new identity)",
                path.display()
            )
        });
    }
    let keypair = Keypair::generate_ed25519();
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|e| anyhow::anyhow!("cannot encode node key: {e}"))?;
    write_private(&path, &bytes)?;
    Ok(keypair)
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

impl Agent {
    /// Opens the node's stores and builds its swarm.
    pub fn open(
        data_dir: &Path,
        config: Config,
    ) -> anyhow::Result<(Self, Shared, mpsc::Sender<Command>, mpsc::Receiver<Command>)> {
        let keypair = load_or_create_key(data_dir)?;
        let local = keypair.public().to_peer_id();
        let root_path = data_dir.join(ROOT_FILE);
        let root_bytes = std::fs::read(&root_path)
            .map_err(|e| anyhow::anyhow!("cannot read pinned root {}: {e}", root_path.display()))?;
        let pinned = Signed::from_bytes(&root_bytes)
            .map_err(|e| anyhow::anyhow!("pinned root {}: {e}", root_path.display()))?;
        let meta = MetaStore::open(&data_dir.join("meta.sled"))?;
        let trust = Trust::load_with_hop_limit(&pinned, meta.clone(), config.trust.max_root_hops)
            .map_err(|e| anyhow::anyhow!("pinned root {}: {e}", root_path.display()))?;
        let chunks = Arc::new(ChunkStore::open(
            data_dir,
            config.transfer.chunk_quota_bytes,
        )?);
        // A bundle import cut off after it stored its objects still has
        // chunks to move before anything reads them.
        if let Err(error) =
            crate::bundle::recover(&meta, &chunks, &data_dir.join(crate::bundle::STAGING_DIR))
        {
            tracing::error!(%error, "cannot finish an interrupted bundle import");
        }
        let swarm = build_swarm_with(
            keypair.clone(),
            SwarmOptions {
                mdns: config.mdns,
                requests_per_peer: config.transfer.requests_per_peer,
                dial_policy: DialPolicy::new(
                    &config.dial_ranges,
                    config.bootstrap.iter().chain(&config.relay.addrs),
                ),
                relay: config.relay.clone(),
                max_inbound_connections: config.max_inbound_connections,
            },
        )?;
        let clock = Clock::from_config(&config.clock);
        let info = NodeInfo {
            peer: local.to_base58(),
            host: config.host.clone(),
            site: config.site.clone(),
            groups: config.groups.clone(),
            observer: config.observer,
            listen: Vec::new(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            stale: None,
        };
        let shared = Shared {
            meta,
            chunks,
            listed_chunks: Arc::new(RwLock::new(HashSet::new())),
            info: Arc::new(RwLock::new(info)),
            clock,
            history: Arc::new(std::sync::Mutex::new(
                crate::inventory::history::HistoryLog::new(
                    crate::inventory::history::DEFAULT_MAX_EVENTS,
                ),
            )),
        };
        let (work_tx, work_rx) = mpsc::channel(1024);
        let (command_tx, command_rx) = mpsc::channel(256);
        let collector =
            std::sync::Arc::new(tokio::sync::Mutex::new(crate::inventory::Collector::new(
                config.inventory.clone(),
                crate::inventory::Identity {
                    peer: local.to_base58(),
                    host: config.host.clone(),
                    agent_version: env!("CARGO_PKG_VERSION").to_string(),
                },
            )));
        let agent = Agent {
            config,
            data_dir: data_dir.to_path_buf(),
            keypair,
            local,
            swarm,
            trust,
            shared: shared.clone(),
            topic: IdentTopic::new(wire::OBJECTS_TOPIC),
            peers: HashMap::new(),
            penalties: HashMap::new(),
            blocked: HashSet::new(),
            pending_sync: HashMap::new(),
            sync_queue: sync_queue::SyncQueue::new(
                patchmesh_protocol::limits::MAX_SYNC_REQUESTS_IN_FLIGHT,
            ),
            pending_chunks: HashMap::new(),
            downloads: HashMap::new(),
            manifests: std::collections::BTreeMap::new(),
            held: HashMap::new(),
            tracks: std::collections::BTreeMap::new(),
            patch_data: HashMap::new(),
            download_waiters: HashMap::new(),
            fleet_reports: HashMap::new(),
            last_fleet_poll: Instant::now(),
            fleet_known: false,
            report_dirty: true,
            last_report: Instant::now(),
            last_anti_entropy: Instant::now(),
            last_plan: Instant::now(),
            last_stale_check: None,
            denied_inbound: (0, None),
            wan_budget: chunks::WanBudget::default(),
            bootstrap_redial: redial::BootstrapRedial::default(),
            reach: reach::Reach::new(),
            hello_seq: hello::HelloSeq::starting_now(),
            serving: serve_slots::ServeSlots::default(),
            last_import_scan: Instant::now(),
            last_sweep: Instant::now(),
            collector,
            inventory: None,
            last_inventory: None,
            inventory_due: true,
            inventory_running: false,
            inventory_full_next: false,
            work_tx,
            work_rx,
            started: Instant::now(),
        };
        Ok((agent, shared, command_tx, command_rx))
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.local
    }

    fn membership(&self) -> Membership {
        Membership {
            host: self.config.host.clone(),
            site: self.config.site.clone(),
            groups: self.config.groups.clone(),
        }
    }

    /// Makes this node's introduction, with the next hello sequence number.
    fn hello(&self) -> Hello {
        Hello {
            host: self.config.host.clone(),
            site: self.config.site.clone(),
            groups: self.config.groups.clone(),
            observer: self.config.observer,
            wan: self.reach.wan,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            seq: self.hello_seq.next(),
        }
    }

    /// Seconds since the agent started, the monotonic time of the scheduler.
    fn mono(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Starts listening and dialing, then runs until `shutdown` resolves.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        for addr in &self.config.listen {
            let addr: Multiaddr = addr
                .parse()
                .map_err(|e| anyhow::anyhow!("listen address {addr:?}: {e}"))?;
            self.swarm
                .listen_on(addr.clone())
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        }
        self.dial_relays();
        self.swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&self.topic)
            .map_err(|e| anyhow::anyhow!("gossipsub subscribe: {e}"))?;
        for addr in self.config.bootstrap.clone() {
            match addr.parse::<Multiaddr>() {
                Ok(addr) => {
                    if let Err(e) = self.swarm.dial(addr.clone()) {
                        tracing::warn!(%addr, error = %e, "bootstrap dial failed");
                    }
                }
                Err(e) => tracing::error!(addr, error = %e, "invalid bootstrap address; skipped"),
            }
        }
        self.load_state()?;
        tracing::info!(peer = %self.local, host = %self.config.host, site = %self.config.site, root_version = self.trust.root().version, "node started");

        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(command) = commands.recv() => self.on_command(command),
                Some(work) = self.work_rx.recv() => self.on_work(work),
                _ = tick.tick() => self.on_tick(),
                _ = &mut shutdown => break,
            }
        }
        self.shared.meta.flush()?;
        tracing::info!(peer = %self.local, "node stopped");
        Ok(())
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                self.on_new_listen_addr(&address);
                let full = address.with_p2p(self.local).unwrap_or_else(|a| a);
                tracing::info!(address = %full, "listening");
                self.shared
                    .info
                    .write()
                    .expect("node info lock is never poisoned")
                    .listen
                    .push(full.to_string());
                self.write_listen_file();
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => self.on_listener_closed(listener_id, reason.err().map(|e| e.to_string())),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                endpoint,
                ..
            } => {
                if self.blocked.contains(&peer_id) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                if num_established.get() == 1 {
                    tracing::debug!(peer = %peer_id, address = %endpoint.get_remote_address(), "peer connected");
                    self.on_peer_connected(peer_id);
                }
                self.on_connection_opened(peer_id, connection_id, endpoint.is_relayed());
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                endpoint,
                ..
            } => {
                if num_established == 0 {
                    tracing::debug!(peer = %peer_id, "peer disconnected");
                    self.on_peer_disconnected(peer_id, endpoint.is_relayed());
                } else {
                    self.on_connection_lost(peer_id, connection_id);
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, error = %error, "dial failed");
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => self.on_inbound_denied(&send_back_addr, &error),
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message.data),
            BehaviourEvent::Sync(event) => self.on_sync_event(event),
            BehaviourEvent::Chunk(event) => self.on_chunk_event(event),
            BehaviourEvent::Identify(libp2p::identify::Event::Received {
                peer_id, info, ..
            }) => {
                self.on_identify(peer_id, info.listen_addrs);
            }
            BehaviourEvent::RelayClient(event) => self.on_relay_client_event(event),
            BehaviourEvent::RelayServer(event) => self.on_relay_server_event(event),
            BehaviourEvent::Dcutr(event) => self.on_dcutr_event(event),
            BehaviourEvent::Mdns(libp2p::mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.maybe_dial(peer, vec![addr]);
                }
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, data: Vec<u8>) {
        let now = self.shared.clock.now();
        let clock = self.shared.clock.name();
        let acceptance = match self.trust.admit_bytes(&data, now, clock) {
            Ok(admitted) => {
                if admitted.outcome == Outcome::Stored {
                    tracing::info!(peer = %source, kind = %admitted.kind, slot = %admitted.slot, revision = admitted.revision, "object received by gossip");
                    self.after_admit(&admitted);
                    gossipsub::MessageAcceptance::Accept
                } else {
                    gossipsub::MessageAcceptance::Ignore
                }
            }
            Err(error) => {
                tracing::warn!(peer = %source, error = %error, "rejected gossiped object");
                if error.blames_sender() {
                    self.penalise(source, 10, "invalid gossiped object");
                    gossipsub::MessageAcceptance::Reject
                } else {
                    gossipsub::MessageAcceptance::Ignore
                }
            }
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, acceptance);
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { bytes, reply } => {
                let result = self.admit_local(&bytes);
                let _ = reply.send(result.map_err(|e| e.to_string()));
            }
            Command::ChunkStored(hash) => self.on_chunk_stored(hash),
            Command::Peers(reply) => {
                let _ = reply.send(self.peer_views());
            }
            Command::PostponeReboot(reply) => {
                let _ = reply.send(self.postpone_reboots());
            }
            Command::ImportBundle { path, reply } => {
                let _ = reply.send(self.import_bundle(&path));
            }
            Command::ImportReports(reports) => {
                for bytes in reports {
                    if let Ok((_, report)) = patchmesh_protocol::SignedReport::verify_bytes(&bytes)
                    {
                        self.store_report(&report.peer, report.seq, bytes);
                    }
                }
                self.inputs_changed();
            }
        }
    }

    /// Admits an object handed over locally (control API, bundle) and
    /// gossips it when new.
    fn admit_local(&mut self, bytes: &[u8]) -> Result<Admitted, AdmitError> {
        let now = self.shared.clock.now();
        let admitted = self
            .trust
            .admit_bytes(bytes, now, self.shared.clock.name())
            .inspect_err(|error| tracing::warn!(error = %error, "rejected published object"))?;
        if admitted.outcome == Outcome::Stored {
            tracing::info!(kind = %admitted.kind, slot = %admitted.slot, revision = admitted.revision, id = %admitted.id.short(), "object published");
            if let Err(e) = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(self.topic.clone(), bytes.to_vec())
            {
                tracing::debug!(error = %e, "gossip publish skipped; peers catch up by anti-entropy");
            }
            self.after_admit(&admitted);
        }
        Ok(admitted)
    }

    /// Reacts to a newly stored object.
    fn after_admit(&mut self, admitted: &Admitted) {
        // A root rotation drops manifests that no longer verify, so the
        // cached index must forget them too, or a new policy would still
        // act on a manifest signed by a removed key.
        if matches!(
            admitted.kind,
            patchmesh_protocol::Kind::Manifest | patchmesh_protocol::Kind::Root
        ) {
            self.refresh_manifests();
        }
        self.last_stale_check = None;
        self.inputs_changed();
    }

    fn on_work(&mut self, work: Work) {
        match work {
            Work::Serve(channel, reply) => {
                if self
                    .swarm
                    .behaviour_mut()
                    .chunk
                    .send_response(channel, reply)
                    .is_err()
                {
                    tracing::debug!("chunk response dropped: the requester went away");
                }
            }
            Work::Fetched {
                payload,
                peer,
                index,
                bytes,
                result,
            } => self.on_fetched(payload, peer, index, bytes, result),
            Work::Event(key, event, record) => self.on_track_event(key, event, record),
            Work::Inventory(update, current) => {
                self.on_inventory(update.map(|u| *u), current.map(|c| *c))
            }
        }
    }

    fn on_tick(&mut self) {
        self.tick_downloads();
        self.tick_reach();
        self.maybe_redial_bootstrap();
        if self.last_plan.elapsed() >= Duration::from_secs(1) {
            self.last_plan = Instant::now();
            self.plan();
        }
        self.maybe_report();
        self.maybe_check_stale();
        self.maybe_anti_entropy();
        self.maybe_poll_fleet();
        self.maybe_scan_import_dir();
        self.maybe_collect_chunks();
        self.maybe_refresh_inventory();
    }

    fn write_listen_file(&self) {
        let info = self
            .shared
            .info
            .read()
            .expect("node info lock is never poisoned");
        let text = info.listen.join("\n") + "\n";
        if let Err(e) = std::fs::write(self.data_dir.join("listen.addrs"), text) {
            tracing::error!(error = %e, "cannot write listen.addrs");
        }
    }

    /// Adds penalty points to a misbehaving peer; past a limit it is
    /// disconnected and refused for the rest of the run.
    fn penalise(&mut self, peer: PeerId, points: i64, reason: &str) {
        let total = self.penalties.entry(peer).or_insert(0);
        *total += points;
        tracing::warn!(peer = %peer, points, total = *total, reason, "peer penalised");
        if *total >= 100 && self.blocked.insert(peer) {
            tracing::warn!(peer = %peer, "peer blocked after repeated misbehaviour");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }
}

/// Outcome of a sync request-response event, for logging.
fn failure_text<E: std::fmt::Display>(error: &E) -> String {
    error.to_string()
}

/// Shorthand for request-response events of the sync protocol.
type SyncEvent = request_response::Event<crate::net::codec::SyncInbound, wire::SyncResponse>;
/// Shorthand for request-response events of the chunk protocol.
type ChunkEvent = request_response::Event<wire::ChunkRequest, ChunkReply>;
