//! What the agent records about each connected peer, peer exchange, and which
//! addresses it may dial.

use std::net::IpAddr;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use patchmesh_protocol::limits;
use patchmesh_protocol::wire::{Hello, PeerRecord, SyncRequest};
use serde::Serialize;

use super::{Agent, SyncPurpose};

/// Most peers a node keeps connections to; peer exchange stops dialing there.
const MAX_PEERS: usize = 64;

/// A connected peer.
#[derive(Clone, Debug, Default)]
pub(super) struct PeerEntry {
    /// Its introduction, once received.
    pub hello: Option<Hello>,
    /// Addresses it listens on, from identify.
    pub listen: Vec<Multiaddr>,
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
    /// Whether it fetches from other sites.
    pub wan: bool,
    /// Penalty points for misbehaviour.
    pub penalty: i64,
    /// gossipsub score, when known.
    pub gossip_score: Option<f64>,
}

/// Whether the node may dial `addr`: loopback always; other IPs only inside
/// the configured ranges.
pub(super) fn dial_allowed(addr: &Multiaddr, ranges: &[String]) -> bool {
    let ip = addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    });
    let Some(ip) = ip else { return false };
    if ip.is_loopback() {
        return true;
    }
    ranges.iter().any(|range| in_range(ip, range))
}

/// Whether `ip` lies in `range`, written `A.B.C.D/N` or `ADDR/N`.
fn in_range(ip: IpAddr, range: &str) -> bool {
    let Some((base, bits)) = range.split_once('/') else {
        return false;
    };
    let (Ok(base), Ok(bits)) = (base.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, base) {
        (IpAddr::V4(ip), IpAddr::V4(base)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(ip) & mask == u32::from(base) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(base)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(ip) & mask == u128::from(base) & mask
        }
        _ => false,
    }
}

impl Agent {
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

    pub(super) fn on_peer_disconnected(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
        for download in self.downloads.values_mut() {
            download.scheduler.remove_peer(&peer);
        }
        self.swarm
            .behaviour_mut()
            .gossipsub
            .remove_explicit_peer(&peer);
    }

    pub(super) fn on_hello(&mut self, peer: PeerId, hello: Hello) {
        let same_site = hello.site == self.config.site;
        let wan_member = (same_site && hello.wan).then(|| peer.to_bytes());
        for download in self.downloads.values_mut() {
            download
                .scheduler
                .add_peer(peer, same_site, wan_member.clone());
        }
        tracing::debug!(peer = %peer, host = %hello.host, site = %hello.site, observer = hello.observer, "peer introduced itself");
        let observer = hello.observer;
        self.peers.entry(peer).or_default().hello = Some(hello);
        if observer {
            // A newly met observer has no base for deltas: send it the
            // whole inventory and a fresh report.
            self.report_dirty = true;
            self.inventory_full_next = true;
            self.inventory_due = true;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_always_allowed() {
        let addr: Multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap();
        assert!(dial_allowed(&addr, &[]));
    }

    #[test]
    fn other_hosts_need_a_range() {
        let addr: Multiaddr = "/ip4/10.20.1.5/tcp/4001".parse().unwrap();
        assert!(!dial_allowed(&addr, &[]));
        assert!(dial_allowed(&addr, &["10.20.0.0/16".into()]));
        assert!(!dial_allowed(&addr, &["10.21.0.0/16".into()]));
    }

    #[test]
    fn dns_addresses_are_never_dialed() {
        let addr: Multiaddr = "/dns4/example.org/tcp/4001".parse().unwrap();
        assert!(!dial_allowed(&addr, &["0.0.0.0/0".into()]));
    }
}
