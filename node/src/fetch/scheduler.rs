//! Which chunk to request from which peer, as pure decision code.
//!
//! The scheduler holds what peers announced (bitmaps of held chunks), what
//! is in flight and what is done, and returns requests. Time is a monotonic
//! number of seconds passed in by the caller, so the swarm and the fleet
//! simulator drive the same code.
//!
//! Locality: peers of the node's own site are always preferred. A chunk that
//! no same-site peer holds is fetched from another site only by the site
//! member ranked first for that chunk by rendezvous hashing (BLAKE3 of peer
//! key and chunk hash); the member ranked `k`-th takes over once the chunk
//! has been wanted for `k × stall_secs` without appearing on the LAN. So a
//! site pulls each chunk over its WAN once, and never waits forever on a
//! member that went away.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use patchmesh_protocol::wire::bitmap;
use patchmesh_protocol::Hash;

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Requests in flight per peer.
    pub requests_per_peer: usize,
    /// Seconds after which an unanswered request is given up.
    pub request_timeout_secs: f64,
    /// Seconds a site member waits per rank before fetching a chunk over
    /// the WAN itself.
    pub stall_secs: f64,
    /// Whether this node may fetch from other sites at all.
    pub wan: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            requests_per_peer: 8,
            request_timeout_secs: 60.0,
            stall_secs: 20.0,
            wan: true,
        }
    }
}

/// One request to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<P> {
    /// Peer to ask.
    pub peer: P,
    /// Chunk index.
    pub index: usize,
    /// Whether the peer is of another site.
    pub cross_site: bool,
}

#[derive(Clone, Debug)]
struct PeerState {
    same_site: bool,
    have: Vec<u8>,
    in_flight: usize,
    /// Set after a bad chunk: never asked again in this download.
    excluded: bool,
}

#[derive(Clone, Debug)]
struct InFlight<P> {
    peer: P,
    sent_at: f64,
}

/// Chunk scheduling state of one download.
#[derive(Clone, Debug)]
pub struct Scheduler<P: Ord + Clone + Debug> {
    config: SchedulerConfig,
    chunks: Vec<Hash>,
    done: Vec<bool>,
    remaining: usize,
    in_flight: BTreeMap<usize, InFlight<P>>,
    peers: BTreeMap<P, PeerState>,
    /// Ranking keys of the site members that may fetch over the WAN,
    /// including this node.
    site_members: BTreeMap<P, Vec<u8>>,
    local: P,
    started_at: f64,
    /// Rotates the chunk order per node so peers start on different chunks.
    offset: usize,
}

impl<P: Ord + Clone + Debug> Scheduler<P> {
    /// A download of `chunks`, of which those with `held[i]` are present.
    pub fn new(
        local: P,
        local_key: Vec<u8>,
        chunks: Vec<Hash>,
        held: &[bool],
        config: SchedulerConfig,
        now: f64,
    ) -> Self {
        let done: Vec<bool> = (0..chunks.len())
            .map(|i| held.get(i).copied().unwrap_or(false))
            .collect();
        let remaining = done.iter().filter(|d| !**d).count();
        let offset = if chunks.is_empty() {
            0
        } else {
            (u64::from_le_bytes(Hash::of(&local_key).0[..8].try_into().expect("8 bytes"))
                % chunks.len() as u64) as usize
        };
        let mut site_members = BTreeMap::new();
        if config.wan {
            site_members.insert(local.clone(), local_key);
        }
        Scheduler {
            config,
            chunks,
            done,
            remaining,
            in_flight: BTreeMap::new(),
            peers: BTreeMap::new(),
            site_members,
            local,
            started_at: now,
            offset,
        }
    }

    /// Whether every chunk is present.
    pub fn is_complete(&self) -> bool {
        self.remaining == 0
    }

    /// Chunks still missing.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// Whether chunk `index` is present.
    pub fn is_done(&self, index: usize) -> bool {
        self.done.get(index).copied().unwrap_or(false)
    }

    /// Records a connected peer. `wan_member` marks a same-site peer that
    /// may fetch over the WAN and so takes part in the ranking, with the
    /// bytes it is ranked by.
    pub fn add_peer(&mut self, peer: P, same_site: bool, wan_member: Option<Vec<u8>>) {
        self.peers.entry(peer.clone()).or_insert(PeerState {
            same_site,
            have: Vec::new(),
            in_flight: 0,
            excluded: false,
        });
        if let (true, Some(key)) = (same_site, wan_member) {
            self.site_members.insert(peer, key);
        }
    }

    /// Forgets a peer; its requests in flight become wanted again.
    pub fn remove_peer(&mut self, peer: &P) {
        self.peers.remove(peer);
        self.site_members.remove(peer);
        self.in_flight.retain(|_, flight| &flight.peer != peer);
    }

    /// Records which chunks a peer holds.
    pub fn set_have(&mut self, peer: &P, have: Vec<u8>) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.have = have;
        }
    }

    /// Peers that are known and not excluded.
    pub fn peers(&self) -> impl Iterator<Item = &P> {
        self.peers
            .iter()
            .filter(|(_, state)| !state.excluded)
            .map(|(peer, _)| peer)
    }

    /// Whether `peer` was excluded for sending a bad chunk.
    pub fn is_excluded(&self, peer: &P) -> bool {
        self.peers.get(peer).is_some_and(|state| state.excluded)
    }

    /// Handles a chunk that arrived and verified.
    pub fn on_chunk(&mut self, peer: &P, index: usize) {
        self.finish_flight(peer, index);
        if let Some(done) = self.done.get_mut(index) {
            if !*done {
                *done = true;
                self.remaining -= 1;
            }
        }
    }

    /// Handles a chunk that failed its hash: the peer is not asked again.
    pub fn on_bad_chunk(&mut self, peer: &P, index: usize) {
        self.finish_flight(peer, index);
        if let Some(state) = self.peers.get_mut(peer) {
            state.excluded = true;
        }
    }

    /// Handles a peer answering that it lacks a chunk it announced.
    pub fn on_missing(&mut self, peer: &P, index: usize) {
        self.finish_flight(peer, index);
        if let Some(state) = self.peers.get_mut(peer) {
            if let Some(byte) = state.have.get_mut(index / 8) {
                *byte &= !(1 << (index % 8));
            }
        }
    }

    /// Handles a request that failed without an answer (timeout, closed
    /// stream); the chunk becomes wanted again.
    pub fn on_failed(&mut self, peer: &P, index: usize) {
        self.finish_flight(peer, index);
    }

    fn finish_flight(&mut self, peer: &P, index: usize) {
        if self
            .in_flight
            .get(&index)
            .is_some_and(|flight| &flight.peer == peer)
        {
            self.in_flight.remove(&index);
        }
        if let Some(state) = self.peers.get_mut(peer) {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
    }

    /// Requests that timed out by `now`; the caller treats each as failed.
    pub fn expired(&self, now: f64) -> Vec<(P, usize)> {
        self.in_flight
            .iter()
            .filter(|(_, flight)| now - flight.sent_at > self.config.request_timeout_secs)
            .map(|(index, flight)| (flight.peer.clone(), *index))
            .collect()
    }

    /// Whether this node may fetch chunk `index` over the WAN at `now`.
    fn may_fetch_cross_site(&self, index: usize, now: f64) -> bool {
        if !self.config.wan {
            return false;
        }
        let chunk = &self.chunks[index];
        let mut ranking: Vec<(Hash, &P)> = self
            .site_members
            .iter()
            .map(|(peer, key)| {
                let mut input = key.clone();
                input.extend_from_slice(&chunk.0);
                (Hash::of(&input), peer)
            })
            .collect();
        ranking.sort_by_key(|entry| std::cmp::Reverse(entry.0));
        let rank = ranking
            .iter()
            .position(|(_, peer)| **peer == self.local)
            .unwrap_or(0);
        now - self.started_at >= rank as f64 * self.config.stall_secs
    }

    /// Chooses requests to send now, filling each peer up to its limit.
    /// Same-site peers are served first; among chunks a peer holds, the one
    /// held by the fewest peers goes first (rarest first).
    pub fn next_requests(&mut self, now: f64) -> Vec<Request<P>> {
        let mut out = Vec::new();
        if self.remaining == 0 {
            return out;
        }
        let count = self.chunks.len();
        let mut availability = vec![0u32; count];
        for state in self.peers.values().filter(|s| !s.excluded) {
            for (index, slot) in availability.iter_mut().enumerate() {
                if bitmap::get(&state.have, index) {
                    *slot += 1;
                }
            }
        }
        let mut order: Vec<P> = self.peers.keys().cloned().collect();
        order.sort_by_key(|peer| !self.peers[peer].same_site);
        let mut claimed: BTreeSet<usize> = self.in_flight.keys().copied().collect();
        for peer in order {
            let state = &self.peers[&peer];
            if state.excluded {
                continue;
            }
            let cross_site = !state.same_site;
            let mut free = self
                .config
                .requests_per_peer
                .saturating_sub(state.in_flight);
            while free > 0 {
                let best = (0..count)
                    .map(|i| (i + self.offset) % count)
                    .filter(|&i| !self.done[i] && !claimed.contains(&i))
                    .filter(|&i| bitmap::get(&state.have, i))
                    .filter(|&i| !cross_site || self.may_fetch_cross_site(i, now))
                    .min_by_key(|&i| availability[i]);
                let Some(index) = best else { break };
                claimed.insert(index);
                free -= 1;
                out.push(Request {
                    peer: peer.clone(),
                    index,
                    cross_site,
                });
            }
        }
        for request in &out {
            self.in_flight.insert(
                request.index,
                InFlight {
                    peer: request.peer.clone(),
                    sent_at: now,
                },
            );
            if let Some(state) = self.peers.get_mut(&request.peer) {
                state.in_flight += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(n: usize) -> Vec<Hash> {
        (0..n).map(|i| Hash::of(&i.to_le_bytes())).collect()
    }

    fn all(n: usize) -> Vec<u8> {
        bitmap::from_fn(n, |_| true)
    }

    #[test]
    fn prefers_same_site_peer() {
        let mut scheduler = Scheduler::new(
            0u32,
            vec![0],
            chunks(4),
            &[],
            SchedulerConfig::default(),
            0.0,
        );
        scheduler.add_peer(1, false, None);
        scheduler.add_peer(2, true, None);
        scheduler.set_have(&1, all(4));
        scheduler.set_have(&2, all(4));
        let requests = scheduler.next_requests(0.0);
        assert_eq!(requests.len(), 4);
        assert!(requests.iter().all(|r| r.peer == 2 && !r.cross_site));
    }

    #[test]
    fn limits_requests_per_peer() {
        let config = SchedulerConfig {
            requests_per_peer: 2,
            ..SchedulerConfig::default()
        };
        let mut scheduler = Scheduler::new(0u32, vec![0], chunks(10), &[], config, 0.0);
        scheduler.add_peer(1, true, None);
        scheduler.set_have(&1, all(10));
        assert_eq!(scheduler.next_requests(0.0).len(), 2);
        assert_eq!(scheduler.next_requests(0.0).len(), 0);
    }

    #[test]
    fn bad_chunk_excludes_peer_and_requeues() {
        let mut scheduler = Scheduler::new(
            0u32,
            vec![0],
            chunks(1),
            &[],
            SchedulerConfig::default(),
            0.0,
        );
        scheduler.add_peer(1, true, None);
        scheduler.add_peer(2, true, None);
        scheduler.set_have(&1, all(1));
        let first = scheduler.next_requests(0.0);
        assert_eq!(first[0].peer, 1);
        scheduler.on_bad_chunk(&1, 0);
        scheduler.set_have(&2, all(1));
        let second = scheduler.next_requests(1.0);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].peer, 2);
        assert!(scheduler.is_excluded(&1));
    }

    #[test]
    fn held_chunks_are_not_fetched_again() {
        let mut scheduler = Scheduler::new(
            0u32,
            vec![0],
            chunks(3),
            &[true, false, true],
            SchedulerConfig::default(),
            0.0,
        );
        scheduler.add_peer(1, true, None);
        scheduler.set_have(&1, all(3));
        let requests = scheduler.next_requests(0.0);
        assert_eq!(
            requests.iter().map(|r| r.index).collect::<Vec<_>>(),
            vec![1]
        );
        scheduler.on_chunk(&1, 1);
        assert!(scheduler.is_complete());
    }

    #[test]
    fn one_site_member_fetches_each_chunk_over_wan() {
        // Three members of one site, one remote source holding everything.
        let n = 64;
        let members: Vec<(u32, Vec<u8>)> = (0..3u32).map(|i| (i, vec![i as u8; 4])).collect();
        let mut cross = vec![0usize; n];
        for (me, key) in &members {
            let mut scheduler = Scheduler::new(
                *me,
                key.clone(),
                chunks(n),
                &[],
                SchedulerConfig::default(),
                0.0,
            );
            for (other, other_key) in &members {
                if other != me {
                    scheduler.add_peer(*other, true, Some(other_key.clone()));
                }
            }
            scheduler.add_peer(99, false, None);
            scheduler.set_have(&99, all(n));
            loop {
                let requests = scheduler.next_requests(0.0);
                if requests.is_empty() {
                    break;
                }
                for request in requests {
                    cross[request.index] += 1;
                    scheduler.on_chunk(&request.peer, request.index);
                }
            }
        }
        assert!(cross.iter().all(|&c| c == 1), "{cross:?}");
    }

    #[test]
    fn next_member_takes_over_after_stall() {
        let members: Vec<(u32, Vec<u8>)> = (0..2u32).map(|i| (i, vec![i as u8; 4])).collect();
        let config = SchedulerConfig {
            stall_secs: 10.0,
            ..SchedulerConfig::default()
        };
        for (me, key) in &members {
            let (other, other_key) = &members[1 - *me as usize];
            let mut scheduler =
                Scheduler::new(*me, key.clone(), chunks(16), &[], config.clone(), 0.0);
            scheduler.add_peer(*other, true, Some(other_key.clone()));
            scheduler.add_peer(99, false, None);
            scheduler.set_have(&99, all(16));
            // Before the stall deadline only chunks ranked first for this
            // member cross the WAN.
            let mut early = 0;
            loop {
                let requests = scheduler.next_requests(0.0);
                if requests.is_empty() {
                    break;
                }
                for request in requests {
                    early += 1;
                    scheduler.on_chunk(&request.peer, request.index);
                }
            }
            assert!(
                early < 16,
                "member {me} took every chunk before the deadline"
            );
            assert!(!scheduler.is_complete());
            // The other member stalled: this one takes over the rest.
            loop {
                let requests = scheduler.next_requests(10.0);
                if requests.is_empty() {
                    break;
                }
                for request in requests {
                    scheduler.on_chunk(&request.peer, request.index);
                }
            }
            assert!(scheduler.is_complete());
        }
    }

    #[test]
    fn timed_out_requests_are_reported() {
        let config = SchedulerConfig {
            request_timeout_secs: 5.0,
            ..SchedulerConfig::default()
        };
        let mut scheduler = Scheduler::new(0u32, vec![0], chunks(1), &[], config, 0.0);
        scheduler.add_peer(1, true, None);
        scheduler.set_have(&1, all(1));
        scheduler.next_requests(0.0);
        assert!(scheduler.expired(4.0).is_empty());
        assert_eq!(scheduler.expired(6.0), vec![(1, 0)]);
    }
}
