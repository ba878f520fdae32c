//! What the agent records about each connected peer, peer exchange, and which
//! addresses it may dial.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::connection_limits;
use libp2p::swarm::{ConnectionId, ListenError};
use libp2p::{Multiaddr, PeerId};
use patchmesh_protocol::limits;
use patchmesh_protocol::wire::{Hello, PeerRecord, SyncRequest};
use serde::Serialize;

use super::{Agent, SyncPurpose};
use crate::net::dial::dial_allowed;

/// Most peers a node keeps connections to; peer exchange stops dialing there.
const MAX_PEERS: usize = 64;

/// Minimum time between two warnings about denied inbound connections.
const DENIED_WARNING_GAP: Duration = Duration::from_secs(10);

/// A connected peer.
#[derive(Clone, Debug, Default)]
pub(super) struct PeerEntry {
    /// Its introduction, once received.
    pub hello: Option<Hello>,
    /// Addresses it listens on, from identify.
    pub listen: Vec<Multiaddr>,
    /// Open connections, each with whether it runs through a relay circuit.
    pub connections: HashMap<ConnectionId, bool>,
}

impl PeerEntry {
    /// Whether at least one connection to the peer is direct. Chunks travel
    /// on direct connections only.
    pub fn has_direct(&self) -> bool {
        self.connections.values().any(|relayed| !relayed)
    }

    /// Connections to the peer that run through a relay circuit.
    pub fn relayed_connections(&self) -> Vec<ConnectionId> {
        self.connections
            .iter()
            .filter(|(_, relayed)| **relayed)
            .map(|(id, _)| *id)
            .collect()
    }
}

/// A connected peer as the control API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    /// Peer id, base58.
    pub peer: String,
    /// Host name it introduced itself with.
    pub host: String,
    /// Site.
    pub site: String,
    /// Whether it collects reports.
    pub observer: bool,
    /// Whether it fetches from other sites: it can reach one directly and
    /// was not started with `--no-wan`.
    pub wan: bool,
    /// Whether a connection to it is direct rather than through a relay.
    pub direct: bool,
    /// Open connections to it, direct and relayed.
    pub connections: usize,
    /// Penalty points for misbehaviour.
    pub penalty: i64,
    /// gossipsub score, when known.
    pub gossip_score: Option<f64>,
}

impl Agent {
    /// Counts an inbound connection that failed or was denied (over
    /// `max_inbound_connections` or the handshakes allowed at once), and
    /// logs at most one warning per [`DENIED_WARNING_GAP`] with the number
    /// denied since the last one.
    pub(super) fn on_inbound_denied(&mut self, from: &Multiaddr, error: &ListenError) {
        let ListenError::Denied { cause } = error else {
            tracing::debug!(address = %from, %error, "inbound connection failed");
            return;
        };
        // The denial's own text is only "connection denied", so the log
        // shows the text of the limit that was reached.
        let reason = cause
            .downcast_ref::<connection_limits::Exceeded>()
            .map_or_else(|| cause.to_string(), ToString::to_string);
        let (count, last) = &mut self.denied_inbound;
        *count += 1;
        if last.is_some_and(|at| at.elapsed() < DENIED_WARNING_GAP) {
            return;
        }
        tracing::warn!(
            address = %from,
            %reason,
            denied = *count,
            max_inbound_connections = self.config.max_inbound_connections,
            "inbound connections denied by a connection limit"
        );
        *count = 0;
        *last = Some(Instant::now());
    }

    pub(super) fn on_peer_connected(&mut self, peer: PeerId) {
        self.peers.entry(peer).or_default();
        let hello = self.hello();
        self.send_sync(peer, SyncRequest::Hello(hello), SyncPurpose::Hello);
        self.send_sync(peer, SyncRequest::Summary, SyncPurpose::Summary);
        self.send_sync(peer, SyncRequest::Peers, SyncPurpose::Peers);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .add_explicit_peer(&peer);
        self.report_dirty = true;
    }

    /// Forgets a peer whose last connection closed. When that connection
    /// was a relay circuit (they end at the relay's limits), the peer is
    /// dialed again at its known addresses.
    pub(super) fn on_peer_disconnected(&mut self, peer: PeerId, last_was_relayed: bool) {
        self.drop_queued_sync(peer);
        if let Some(entry) = self.peers.remove(&peer) {
            if last_was_relayed && !self.blocked.contains(&peer) {
                self.schedule_redial(peer, entry.listen);
            }
        }
        for download in self.downloads.values_mut() {
            download.scheduler.remove_peer(&peer);
        }
        self.swarm
            .behaviour_mut()
            .gossipsub
            .remove_explicit_peer(&peer);
        self.refresh_reach();
    }

    /// Stores a peer's introduction, unless it is older than the one
    /// stored (see `agent/hello.rs`). Peers send it again when their WAN
    /// reach changes.
    pub(super) fn on_hello(&mut self, peer: PeerId, hello: Hello) {
        tracing::debug!(peer = %peer, host = %hello.host, site = %hello.site, observer = hello.observer, wan = hello.wan, seq = hello.seq, "peer introduced itself");
        let entry = self.peers.entry(peer).or_default();
        let newly_observer = hello.observer && !entry.hello.as_ref().is_some_and(|h| h.observer);
        if let Err(stale) = entry.store_hello(hello) {
            tracing::debug!(peer = %peer, seq = stale.seq, stored_seq = stale.stored_seq, "hello ignored: not newer than the last one stored from this peer");
            return;
        }
        self.place_peer_in_downloads(peer);
        self.refresh_reach();
        if newly_observer {
            // A newly met observer has no base for deltas: send it the
            // whole inventory and a fresh report.
            self.report_dirty = true;
            self.inventory_full_next = true;
            self.inventory_due = true;
        }
    }

    /// How a peer takes part in downloads: `None` when it cannot (not
    /// introduced yet, no direct connection, or of this site while LAN
    /// sharing is off); otherwise whether it is of this site, and the bytes
    /// it ranks by for WAN fetches when it is a same-site peer whose
    /// introduction reports that it can reach another site.
    fn download_role(&self, peer: &PeerId, entry: &PeerEntry) -> Option<(bool, Option<Vec<u8>>)> {
        let hello = entry.hello.as_ref()?;
        let same_site = hello.site == self.config.site;
        if !entry.has_direct() || (same_site && !self.config.transfer.lan_sharing) {
            return None;
        }
        Some((same_site, (same_site && hello.wan).then(|| peer.to_bytes())))
    }

    /// Adds `peer` to every running download, or takes it out, after its
    /// introduction or its connections changed.
    pub(super) fn place_peer_in_downloads(&mut self, peer: PeerId) {
        let role = self
            .peers
            .get(&peer)
            .and_then(|entry| self.download_role(&peer, entry));
        for download in self.downloads.values_mut() {
            match &role {
                Some((same_site, wan_member)) => {
                    download
                        .scheduler
                        .add_peer(peer, *same_site, wan_member.clone());
                    download.scheduler.set_wan_member(&peer, wan_member.clone());
                }
                None => download.scheduler.remove_peer(&peer),
            }
        }
    }

    /// Adds every peer that can take part to a new download's scheduler.
    pub(super) fn register_peers(&self, scheduler: &mut crate::fetch::Scheduler<PeerId>) {
        for (peer, entry) in &self.peers {
            if let Some((same_site, wan_member)) = self.download_role(peer, entry) {
                scheduler.add_peer(*peer, same_site, wan_member);
            }
        }
    }

    pub(super) fn on_identify(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        let entry = self.peers.entry(peer).or_default();
        entry.listen = addrs
            .into_iter()
            .filter(|a| dial_allowed(a, &self.config.dial_ranges))
            .take(8)
            .collect();
    }

    /// Peers for a peer-exchange reply.
    pub(super) fn peer_records(&self) -> Vec<PeerRecord> {
        self.peers
            .iter()
            .filter(|(_, entry)| !entry.listen.is_empty())
            .take(limits::MAX_PEER_RECORDS)
            .map(|(peer, entry)| PeerRecord {
                peer: peer.to_base58(),
                addrs: entry.listen.iter().map(|a| a.to_string()).collect(),
                site: entry
                    .hello
                    .as_ref()
                    .map(|h| h.site.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Asks one random connected peer for the peers it knows.
    pub(super) fn exchange_peers_with_one(&mut self) {
        if self.peers.is_empty() {
            return;
        }
        let index = rand::random::<usize>() % self.peers.len();
        if let Some(peer) = self.peers.keys().nth(index).copied() {
            self.send_sync(peer, SyncRequest::Peers, SyncPurpose::Peers);
        }
    }

    /// Dials peers learned by peer exchange: every peer of this site and,
    /// while under the connection limit, others.
    pub(super) fn on_peer_records(&mut self, records: Vec<PeerRecord>) {
        for record in records.into_iter().take(limits::MAX_PEER_RECORDS) {
            let Ok(peer) = record.peer.parse::<PeerId>() else {
                continue;
            };
            let addrs = record
                .addrs
                .iter()
                .filter_map(|a| a.parse::<Multiaddr>().ok())
                .collect();
            self.maybe_dial(peer, addrs);
        }
    }

    /// Dials `peer` unless it is this node, connected, blocked, over the
    /// limit, or only reachable at addresses outside the allowed ranges.
    pub(super) fn maybe_dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == self.local
            || self.blocked.contains(&peer)
            || self.swarm.is_connected(&peer)
            || self.peers.len() >= MAX_PEERS
        {
            return;
        }
        let allowed: Vec<Multiaddr> = addrs
            .into_iter()
            .filter(|a| dial_allowed(a, &self.config.dial_ranges))
            .collect();
        if allowed.is_empty() {
            return;
        }
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
            .addresses(allowed)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(peer = %peer, error = %e, "dial skipped");
        }
    }

    pub(super) fn peer_views(&self) -> Vec<PeerView> {
        let gossip = &self.swarm.behaviour().gossipsub;
        self.peers
            .iter()
            .map(|(peer, entry)| {
                let hello = entry.hello.clone().unwrap_or_default();
                PeerView {
                    peer: peer.to_base58(),
                    host: hello.host,
                    site: hello.site,
                    observer: hello.observer,
                    wan: hello.wan,
                    direct: entry.has_direct(),
                    connections: entry.connections.len(),
                    penalty: self.penalties.get(peer).copied().unwrap_or(0),
                    gossip_score: gossip.peer_score(peer),
                }
            })
            .collect()
    }

    /// Whether `peer` introduced itself as a member of this node's site.
    pub(super) fn is_same_site(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .and_then(|e| e.hello.as_ref())
            .is_some_and(|h| h.site == self.config.site)
    }
}
