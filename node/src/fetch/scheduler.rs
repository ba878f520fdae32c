//! Which chunk to request from which peer, as pure decision code.
//!
//! The scheduler stores what peers announced (bitmaps of held chunks), what
//! is in flight and what is done, and returns requests. Time is a monotonic
//! number of seconds passed in by the caller, so the swarm and the fleet
//! simulator drive the same code.
//!
//! Locality: peers of the node's own site are always preferred. A chunk that
//! no same-site peer holds is fetched from another site only by the first
//! site member, in rendezvous order (BLAKE3 of peer key and chunk hash,
//! highest first), that has not stalled. A member has stalled when it has
//! brought no new chunk into the site for `stall_secs` while another member
//! did, or when the whole site has brought in nothing for
//! `idle_takeover_secs`. Progress is compared between members, not against
//! the download's start, because on a slow WAN link every member's first
//! chunks arrive together after a long time: a fixed deadline from the start
//! made later-ranked members fetch the same chunks again. So a site pulls
//! each chunk over its WAN once, and never waits forever on a member that
//! went away or hung.

use std::collections::BTreeMap;
use std::fmt::Debug;

use patchmesh_protocol::wire::bitmap;
use patchmesh_protocol::Hash;

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Requests in flight per peer.
    pub requests_per_peer: usize,
    /// Seconds after which an unanswered same-site request is given up.
    pub request_timeout_secs: f64,
    /// Seconds after which an unanswered cross-site request is given up.
    /// Longer than `request_timeout_secs` because all members of a site
    /// share one WAN link: 100 chunks of 1 MiB in flight on 10 Mbit/s take
    /// about 84 s.
    pub wan_request_timeout_secs: f64,
    /// Seconds a site member may lag behind the site's latest new chunk
    /// before the next member in rendezvous order fetches its chunks.
    pub stall_secs: f64,
    /// Seconds without any new chunk in the site after which every member
    /// that brought nothing for `stall_secs` counts as stalled.
    pub idle_takeover_secs: f64,
    /// Whether this node may fetch from other sites when the download
    /// starts; [`Scheduler::set_local_wan`] changes it later.
    pub wan: bool,
    /// Maximum requests to other sites in flight at once, over all peers. A
    /// WAN link is shared by the whole site, so more requests only queue on
    /// it and run into their timeouts.
    pub max_cross_site_in_flight: usize,
    /// Throughput floor in bytes per second below which a peer counts as
    /// slow and is dropped from the download (slow retrieval).
    pub min_peer_bytes_per_sec: f64,
    /// Seconds a peer may deliver nothing before the throughput floor
    /// applies, covering connection setup and round trips.
    pub slow_grace_secs: f64,
    /// Chunk size of the download in bytes, to turn requests in flight
    /// into the bytes a peer owes.
    pub chunk_bytes: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            requests_per_peer: 8,
            request_timeout_secs: 60.0,
            wan_request_timeout_secs: 300.0,
            // No cap unless the caller sets one; the agent takes it from
            // its `[transfer]` config.
            max_cross_site_in_flight: usize::MAX,
            stall_secs: 20.0,
            idle_takeover_secs: 120.0,
            wan: true,
            // 32 KiB/s is an eighth of a 2 Mbit/s link, so an honest peer
            // behind one is never dropped, even with every request it has
            // in flight sharing the link.
            min_peer_bytes_per_sec: 32.0 * 1024.0,
            slow_grace_secs: 15.0,
            chunk_bytes: 1024 * 1024,
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
    /// Set after a bad chunk or when too slow: never asked again in this
    /// download.
    excluded: bool,
    /// Start of the current wait for a chunk: the first request sent after
    /// the peer was idle, or its last delivery. Failed requests keep it, so
    /// a peer whose requests keep timing out stays judged as slow.
    waiting_since: Option<f64>,
    /// The peer replied since the last `next_requests`.
    progress_pending: bool,
    /// The peer delivered a verified chunk in this download; until then a
    /// same-site peer is on probation (see `probation.rs`).
    delivered: bool,
}

#[derive(Clone, Debug)]
struct InFlight<P> {
    peer: P,
    sent_at: f64,
    cross_site: bool,
}

/// A site member that may fetch over the WAN.
#[derive(Clone, Debug)]
struct Member {
    /// Bytes the member is ranked by.
    key: Vec<u8>,
    /// When the member last brought a chunk into the site; `None` until
    /// the next call of `next_requests` stamps a join or a new chunk.
    last_gain: Option<f64>,
    /// A new chunk or the join is waiting to be stamped.
    gain_pending: bool,
    /// The member reported WAN requests in flight since the last stamp.
    fetching_pending: bool,
    /// When the member last reported WAN requests in flight. A member busy
    /// on the WAN is never counted as stalled: on a slow link every member's
    /// chunks may take longer than `stall_secs` to arrive.
    last_fetching: Option<f64>,
}

impl Member {
    /// Creates a member that just joined. The next `next_requests` stamps
    /// its join as its last gain, so it gets `stall_secs` before others
    /// take over.
    fn joining(key: Vec<u8>) -> Self {
        Member {
            key,
            last_gain: None,
            gain_pending: true,
            fetching_pending: false,
            last_fetching: None,
        }
    }
}

/// Rendezvous order, computed once per membership: for every chunk, a bit
/// per member (in `members` order) set when that member ranks above this
/// node.
#[derive(Clone, Debug)]
struct RankCache<P> {
    members: Vec<P>,
    words: usize,
    above: Vec<u64>,
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
    /// Site members that may fetch over the WAN, including this node.
    site_members: BTreeMap<P, Member>,
    rank_cache: Option<RankCache<P>>,
    /// Chunks known to be in the site: held here or announced by a
    /// same-site peer.
    site_seen: Vec<u8>,
    /// When a chunk last came into the site, through any member.
    site_last_gain: Option<f64>,
    local: P,
    /// Bytes this node is ranked by, kept for when it becomes a WAN member.
    local_key: Vec<u8>,
    /// Rotates the chunk order per node so peers start on different chunks.
    offset: usize,
    /// Turn of the rotating order of peers, advanced per `next_requests`.
    rotation: usize,
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
        let site_seen = bitmap::from_fn(chunks.len(), |i| done[i]);
        let mut site_members = BTreeMap::new();
        if config.wan {
            site_members.insert(
                local.clone(),
                Member {
                    key: local_key.clone(),
                    last_gain: Some(now),
                    gain_pending: false,
                    fetching_pending: false,
                    last_fetching: None,
                },
            );
        }
        Scheduler {
            config,
            chunks,
            done,
            remaining,
            in_flight: BTreeMap::new(),
            peers: BTreeMap::new(),
            site_members,
            rank_cache: None,
            site_seen,
            site_last_gain: Some(now),
            local,
            local_key,
            offset,
            rotation: 0,
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
            waiting_since: None,
            progress_pending: false,
            delivered: false,
        });
        if let (true, Some(key)) = (same_site, wan_member) {
            if let std::collections::btree_map::Entry::Vacant(entry) = self.site_members.entry(peer)
            {
                entry.insert(Member::joining(key));
                self.rank_cache = None;
            }
        }
    }

    /// Records whether a same-site peer may fetch over the WAN now. `Some`
    /// with the bytes it is ranked by makes it a member of the ranking.
    /// `None` takes it out, so the chunks it ranked first for fall to the
    /// next member at once instead of after a stall. Unknown and other-site
    /// peers are ignored.
    pub fn set_wan_member(&mut self, peer: &P, key: Option<Vec<u8>>) {
        if *peer == self.local || !self.peers.get(peer).is_some_and(|state| state.same_site) {
            return;
        }
        match key {
            Some(key) if !self.site_members.contains_key(peer) => {
                self.site_members.insert(peer.clone(), Member::joining(key));
                self.rank_cache = None;
            }
            None if self.site_members.remove(peer).is_some() => self.rank_cache = None,
            _ => {}
        }
    }

    /// Records whether this node may fetch over the WAN now: it takes part
    /// in the ranking only while it can reach another site directly.
    pub fn set_local_wan(&mut self, wan: bool) {
        if wan == self.config.wan {
            return;
        }
        self.config.wan = wan;
        if wan {
            self.site_members
                .insert(self.local.clone(), Member::joining(self.local_key.clone()));
        } else {
            self.site_members.remove(&self.local);
        }
        self.rank_cache = None;
    }

    /// Whether this node currently takes part in WAN fetches.
    pub fn local_wan(&self) -> bool {
        self.config.wan
    }

    /// Forgets a peer; its requests in flight become wanted again.
    pub fn remove_peer(&mut self, peer: &P) {
        self.peers.remove(peer);
        if self.site_members.remove(peer).is_some() {
            self.rank_cache = None;
        }
        self.in_flight.retain(|_, flight| &flight.peer != peer);
    }

    /// Records which chunks a peer holds. A same-site member that holds a
    /// chunk no one in the site held before has brought it over the WAN,
    /// which counts as progress for the stall rule.
    pub fn set_have(&mut self, peer: &P, have: Vec<u8>) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if state.same_site {
            let mut new = false;
            for (seen, byte) in self.site_seen.iter_mut().zip(&have) {
                new |= byte & !*seen != 0;
                *seen |= byte;
            }
            if new {
                if let Some(member) = self.site_members.get_mut(peer) {
                    member.gain_pending = true;
                }
            }
        }
        state.have = have;
    }

    /// Records whether a same-site member reported chunk requests to other
    /// sites in flight; such a member is busy, not stalled.
    pub fn set_fetching(&mut self, peer: &P, fetching: bool) {
        if let Some(member) = self.site_members.get_mut(peer) {
            member.fetching_pending |= fetching;
        }
    }

    /// Whether this node has chunk requests to other sites in flight.
    pub fn fetching_cross_site(&self) -> bool {
        self.in_flight.values().any(|flight| flight.cross_site)
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
        self.mark_progress(peer);
        if let Some(state) = self.peers.get_mut(peer) {
            state.delivered = true;
        }
        if let Some(done) = self.done.get_mut(index) {
            if !*done {
                *done = true;
                self.remaining -= 1;
            }
        }
        // A chunk new to the site, from a peer that is not of the site (or
        // published locally), is this node's WAN progress.
        let same_site = self.peers.get(peer).is_some_and(|state| state.same_site);
        if index < self.chunks.len() && !bitmap::get(&self.site_seen, index) {
            self.site_seen[index / 8] |= 1 << (index % 8);
            if !same_site {
                if let Some(member) = self.site_members.get_mut(&self.local) {
                    member.gain_pending = true;
                }
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

    /// Handles a peer replying that it lacks a chunk it announced.
    pub fn on_missing(&mut self, peer: &P, index: usize) {
        self.finish_flight(peer, index);
        self.mark_progress(peer);
        if let Some(state) = self.peers.get_mut(peer) {
            if let Some(byte) = state.have.get_mut(index / 8) {
                *byte &= !(1 << (index % 8));
            }
        }
    }

    /// Handles a request that failed without a reply (timeout, closed
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

    /// Notes that a peer answered; the next call of `next_requests`
    /// restarts its wait at its `now`.
    fn mark_progress(&mut self, peer: &P) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.progress_pending = true;
        }
    }

    /// Whether `state` has owed its requests for longer than the floor
    /// allows: the grace time plus the time its outstanding bytes take at
    /// `min_peer_bytes_per_sec`.
    fn is_slow(&self, state: &PeerState, now: f64) -> bool {
        let Some(since) = state.waiting_since else {
            return false;
        };
        if state.progress_pending {
            return false;
        }
        let owed = state.in_flight.max(1) as f64 * self.config.chunk_bytes as f64;
        let allowed = self.config.slow_grace_secs + owed / self.config.min_peer_bytes_per_sec;
        !state.excluded && now - since > allowed
    }

    /// Peers that stayed below the throughput floor by `now`; the caller
    /// drops each with [`Scheduler::on_slow`]. Empty while no other peer
    /// is left to fetch from, so a download never ends up with no peer.
    pub fn slow_peers(&self, now: f64) -> Vec<P> {
        let slow: Vec<P> = self
            .peers
            .iter()
            .filter(|(_, state)| self.is_slow(state, now))
            .map(|(peer, _)| peer.clone())
            .collect();
        let others = self
            .peers
            .iter()
            .any(|(peer, state)| !state.excluded && !slow.contains(peer));
        if others {
            slow
        } else {
            Vec::new()
        }
    }

    /// Drops a slow peer from this download: its requests in flight become
    /// wanted again and it is not asked again.
    pub fn on_slow(&mut self, peer: &P) {
        self.in_flight.retain(|_, flight| &flight.peer != peer);
        if let Some(state) = self.peers.get_mut(peer) {
            state.excluded = true;
            state.in_flight = 0;
            state.waiting_since = None;
            state.progress_pending = false;
        }
    }

    /// Requests that timed out by `now`; the caller treats each as failed.
    pub fn expired(&self, now: f64) -> Vec<(P, usize)> {
        self.in_flight
            .iter()
            .filter(|(_, flight)| {
                let timeout = if flight.cross_site {
                    self.config.wan_request_timeout_secs
                } else {
                    self.config.request_timeout_secs
                };
                now - flight.sent_at > timeout
            })
            .map(|(index, flight)| (flight.peer.clone(), *index))
            .collect()
    }

    /// Stamps pending progress with `now` and returns, per member in
    /// rank-cache order, whether it is still expected to fetch its chunks.
    fn active_members(&mut self, now: f64) -> Vec<u64> {
        for member in self.site_members.values_mut() {
            if member.gain_pending || member.last_gain.is_none() {
                member.gain_pending = false;
                member.last_gain = Some(now);
            }
            if member.fetching_pending {
                member.fetching_pending = false;
                member.last_fetching = Some(now);
            }
        }
        let latest = self
            .site_members
            .values()
            .filter_map(|member| member.last_gain)
            .fold(self.site_last_gain.unwrap_or(now), f64::max);
        self.site_last_gain = Some(latest);
        let site_idle = now - latest >= self.config.idle_takeover_secs;

        self.fill_rank_cache();
        let cache = self
            .rank_cache
            .as_ref()
            .expect("fill_rank_cache leaves a cache");
        let mut active = vec![0u64; cache.words];
        for (position, peer) in cache.members.iter().enumerate() {
            let member = &self.site_members[peer];
            let last = member.last_gain.unwrap_or(now);
            let quiet = now - last >= self.config.stall_secs;
            let behind = latest - last >= self.config.stall_secs;
            let busy = member
                .last_fetching
                .is_some_and(|at| now - at < self.config.stall_secs);
            let stalled = *peer != self.local && !busy && quiet && (behind || site_idle);
            if !stalled {
                active[position / 64] |= 1 << (position % 64);
            }
        }
        active
    }

    /// Computes the rendezvous order of the current members unless it is
    /// known since the last membership change.
    fn fill_rank_cache(&mut self) {
        if self.rank_cache.is_none() {
            let members: Vec<P> = self.site_members.keys().cloned().collect();
            let words = members.len().div_ceil(64).max(1);
            let mut above = vec![0u64; self.chunks.len() * words];
            let local_key = self.site_members.get(&self.local).map(|m| &m.key);
            for (index, chunk) in self.chunks.iter().enumerate() {
                let Some(local_key) = local_key else { break };
                let score = |key: &[u8]| {
                    let mut input = key.to_vec();
                    input.extend_from_slice(&chunk.0);
                    Hash::of(&input)
                };
                let local_score = score(local_key);
                for (position, peer) in members.iter().enumerate() {
                    if *peer != self.local && score(&self.site_members[peer].key) > local_score {
                        above[index * words + position / 64] |= 1 << (position % 64);
                    }
                }
            }
            self.rank_cache = Some(RankCache {
                members,
                words,
                above,
            });
        }
    }

    /// Whether this node may fetch chunk `index` over the WAN: every member
    /// ranked above it has stalled.
    fn may_fetch_cross_site(&self, index: usize, active: &[u64]) -> bool {
        if !self.config.wan {
            return false;
        }
        let Some(cache) = &self.rank_cache else {
            return false;
        };
        let above = &cache.above[index * cache.words..(index + 1) * cache.words];
        above.iter().zip(active).all(|(a, b)| a & b == 0)
    }

    /// Chooses requests to send now, filling each peer up to its limit.
    /// Same-site peers are served first; among chunks a peer holds, the one
    /// held by the fewest peers goes first (rarest first).
    pub fn next_requests(&mut self, now: f64) -> Vec<Request<P>> {
        for state in self.peers.values_mut() {
            if std::mem::take(&mut state.progress_pending) {
                state.waiting_since = (state.in_flight > 0).then_some(now);
            }
        }
        let mut out = Vec::new();
        if self.remaining == 0 {
            return out;
        }
        let count = self.chunks.len();
        let active = if self.config.wan {
            self.active_members(now)
        } else {
            Vec::new()
        };

        // Wanted: neither held nor in flight. Availability is counted only
        // for wanted chunks, which keeps the cost near the number of
        // chunks peers can still give.
        let mut wanted = bitmap::from_fn(count, |i| !self.done[i]);
        for index in self.in_flight.keys() {
            wanted[index / 8] &= !(1 << (index % 8));
        }
        let mut availability = vec![0u32; count];
        // Chunks a same-site peer has are never fetched over the WAN, even
        // while that peer has no free request slot (a peer on probation has
        // one). The site waits for its LAN copy rather than paying for a
        // second WAN transfer. A peer that only claims chunks stops counting
        // once the slow-peer rule excludes it.
        let mut held_on_site = vec![0u8; wanted.len()];
        for state in self.peers.values().filter(|s| !s.excluded) {
            for_each_common_bit(&state.have, &wanted, |index| availability[index] += 1);
            if state.same_site {
                for (byte, have) in held_on_site.iter_mut().zip(&state.have) {
                    *byte |= have;
                }
            }
        }

        let order = self.request_order();
        let mut candidates: Vec<(u32, usize, usize)> = Vec::new();
        let mut cross_site_free = self
            .config
            .max_cross_site_in_flight
            .saturating_sub(self.in_flight.values().filter(|f| f.cross_site).count());
        for peer in &order {
            let peer = peer.clone();
            let state = &self.peers[&peer];
            if state.excluded {
                continue;
            }
            let cross_site = !state.same_site;
            let mut free = self.request_limit(state).saturating_sub(state.in_flight);
            if cross_site {
                free = free.min(cross_site_free);
            }
            if free == 0 {
                continue;
            }

            // Rarest first; ties go by the position in this node's rotated
            // order, so peers start on different chunks.
            candidates.clear();
            for_each_common_bit(&state.have, &wanted, |index| {
                let wan_allowed =
                    !bitmap::get(&held_on_site, index) && self.may_fetch_cross_site(index, &active);
                if !cross_site || wan_allowed {
                    let rotated = (index + count - self.offset) % count;
                    candidates.push((availability[index], rotated, index));
                }
            });
            if candidates.len() > free {
                candidates.select_nth_unstable(free - 1);
                candidates.truncate(free);
            }
            candidates.sort_unstable();
            if cross_site {
                cross_site_free -= candidates.len();
            }
            for &(_, _, index) in &candidates {
                wanted[index / 8] &= !(1 << (index % 8));
                out.push(Request {
                    peer: peer.clone(),
                    index,
                    cross_site,
                });
            }
        }
        self.reassign_stalled(now, &order, &mut out);
        for request in &out {
            self.in_flight.insert(
                request.index,
                InFlight {
                    peer: request.peer.clone(),
                    sent_at: now,
                    cross_site: request.cross_site,
                },
            );
            if let Some(state) = self.peers.get_mut(&request.peer) {
                state.in_flight += 1;
                state.waiting_since.get_or_insert(now);
            }
        }
        out
    }
}

/// Calls `f` with every index set in both bitmaps.
fn for_each_common_bit(a: &[u8], b: &[u8], mut f: impl FnMut(usize)) {
    for (byte_index, (x, y)) in a.iter().zip(b).enumerate() {
        let mut bits = x & y;
        while bits != 0 {
            let bit = bits.trailing_zeros() as usize;
            f(byte_index * 8 + bit);
            bits &= bits - 1;
        }
    }
}

#[cfg(test)]
mod reach_tests;

mod probation;

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps an honest peer behind a 2 Mbit/s link through a download of
    /// 1 MiB chunks, 8 in flight sharing the link, so all 8 arrive together
    /// after about 34 s: it must never count as slow.
    #[test]
    fn honest_two_megabit_peer_is_not_dropped() {
        let mut scheduler = Scheduler::new(
            0u32,
            vec![0],
            chunks(32),
            &[],
            SchedulerConfig::default(),
            0.0,
        );
        scheduler.add_peer(1, true, None);
        scheduler.add_peer(2, true, None);
        scheduler.set_have(&1, all(32));
        let link_bytes_per_sec = 2_000_000.0 / 8.0;
        let batch_secs = 8.0 * 1024.0 * 1024.0 / link_bytes_per_sec;
        let mut now = 0.0;
        let mut batch = scheduler.next_requests(now);
        while !batch.is_empty() {
            for step in 1..=10 {
                let during = now + batch_secs * f64::from(step) / 10.0;
                assert!(
                    scheduler.slow_peers(during).is_empty(),
                    "dropped at {during} s"
                );
            }
            now += batch_secs;
            for request in &batch {
                scheduler.on_chunk(&request.peer, request.index);
            }
            batch = scheduler.next_requests(now);
        }
        assert!(scheduler.is_complete());
    }

    #[test]
    fn silent_peer_is_dropped_and_its_chunks_requeued() {
        let config = SchedulerConfig {
            requests_per_peer: 2,
            chunk_bytes: 64 * 1024,
            ..SchedulerConfig::default()
        };
        let mut scheduler = Scheduler::new(0u32, vec![0], chunks(4), &[], config, 0.0);
        scheduler.add_peer(1, true, None);
        scheduler.add_peer(2, true, None);
        scheduler.prove(&1);
        scheduler.prove(&2);
        scheduler.set_have(&1, all(4));
        let first = scheduler.next_requests(0.0);
        assert!(first.iter().all(|r| r.peer == 1));

        // Allowed: 15 s grace plus 128 KiB owed at 32 KiB/s.
        assert!(scheduler.slow_peers(18.0).is_empty());
        assert_eq!(scheduler.slow_peers(20.0), vec![1]);
        scheduler.on_slow(&1);
        assert!(scheduler.is_excluded(&1));

        scheduler.set_have(&2, all(4));
        let second = scheduler.next_requests(20.0);
        assert_eq!(second.len(), 2);
        assert!(second.iter().all(|r| r.peer == 2));
    }

    #[test]
    fn timeouts_do_not_restart_the_wait() {
        let config = SchedulerConfig {
            requests_per_peer: 1,
            request_timeout_secs: 5.0,
            chunk_bytes: 64 * 1024,
            ..SchedulerConfig::default()
        };
        let mut scheduler = Scheduler::new(0u32, vec![0], chunks(1), &[], config, 0.0);
        scheduler.add_peer(1, true, None);
        scheduler.add_peer(2, true, None);
        scheduler.set_have(&1, all(1));
        let mut now = 0.0;
        scheduler.next_requests(now);
        while scheduler.slow_peers(now).is_empty() {
            now += 1.0;
            for (peer, index) in scheduler.expired(now) {
                scheduler.on_failed(&peer, index);
            }
            scheduler.next_requests(now);
            assert!(
                now < 30.0,
                "a peer that only times out was never judged slow"
            );
        }
        assert_eq!(scheduler.slow_peers(now), vec![1]);
    }

    #[test]
    fn only_peer_is_kept_even_when_slow() {
        let mut scheduler = Scheduler::new(
            0u32,
            vec![0],
            chunks(2),
            &[],
            SchedulerConfig::default(),
            0.0,
        );
        scheduler.add_peer(1, true, None);
        scheduler.set_have(&1, all(2));
        scheduler.next_requests(0.0);
        assert!(scheduler.slow_peers(10_000.0).is_empty());
    }

    #[test]
    fn answering_peer_restarts_its_wait() {
        let config = SchedulerConfig {
            requests_per_peer: 1,
            chunk_bytes: 64 * 1024,
            ..SchedulerConfig::default()
        };
        let mut scheduler = Scheduler::new(0u32, vec![0], chunks(3), &[], config, 0.0);
        scheduler.add_peer(1, true, None);
        scheduler.add_peer(2, true, None);
        scheduler.set_have(&1, all(3));
        let mut now = 0.0;
        let mut batch = scheduler.next_requests(now);
        while !batch.is_empty() {
            // Each chunk takes 16 s: slow for one chunk, but under the
            // 17 s allowed for one 64 KiB chunk.
            now += 16.0;
            assert!(scheduler.slow_peers(now).is_empty(), "dropped at {now} s");
            for request in &batch {
                scheduler.on_chunk(&request.peer, request.index);
            }
            batch = scheduler.next_requests(now);
        }
        assert!(scheduler.is_complete());
    }

    pub(super) fn chunks(n: usize) -> Vec<Hash> {
        (0..n).map(|i| Hash::of(&i.to_le_bytes())).collect()
    }

    pub(super) fn all(n: usize) -> Vec<u8> {
        bitmap::from_fn(n, |_| true)
    }

    #[test]
    fn chunk_held_on_site_is_not_fetched_over_wan() {
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
        scheduler.set_have(&2, bitmap::from_fn(4, |i| i < 3));
        let requests = scheduler.next_requests(0.0);
        let same_site: Vec<usize> = requests
            .iter()
            .filter(|r| !r.cross_site)
            .map(|r| r.index)
            .collect();
        let cross_site: Vec<usize> = requests
            .iter()
            .filter(|r| r.cross_site)
            .map(|r| r.index)
            .collect();
        // Peer 2 is on probation, so it gets one of its three chunks now;
        // the other two wait for it instead of crossing the WAN.
        assert_eq!(same_site.len(), 1);
        assert!(same_site[0] < 3);
        assert_eq!(cross_site, vec![3]);
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
        scheduler.prove(&2);
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
        scheduler.prove(&1);
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

    /// A scheduler for member `me` of a two-member site, with a remote
    /// peer 99 holding all `n` chunks.
    fn two_member_site(me: u32, n: usize, config: SchedulerConfig) -> Scheduler<u32> {
        let key = |i: u32| vec![i as u8; 4];
        let other = 1 - me;
        let mut scheduler = Scheduler::new(me, key(me), chunks(n), &[], config, 0.0);
        scheduler.add_peer(other, true, Some(key(other)));
        scheduler.add_peer(99, false, None);
        scheduler.set_have(&99, all(n));
        scheduler
    }

    fn test_config() -> SchedulerConfig {
        SchedulerConfig {
            requests_per_peer: 64,
            stall_secs: 10.0,
            idle_takeover_secs: 30.0,
            ..SchedulerConfig::default()
        }
    }

    #[test]
    fn next_member_takes_over_when_behind() {
        for me in 0..2u32 {
            let mut scheduler = two_member_site(me, 16, test_config());

            // Only chunks ranked first for this member cross the WAN.
            let early = scheduler.next_requests(0.0);
            assert!(!early.is_empty(), "member {me} fetched nothing");
            assert!(early.len() < 16, "member {me} took every chunk");

            // This member delivers its chunks at 12 s while the other one
            // brought nothing since the start: it takes over the rest.
            for request in &early {
                scheduler.on_chunk(&request.peer, request.index);
            }
            let rest = scheduler.next_requests(12.0);
            assert_eq!(rest.len(), 16 - early.len());
            assert!(rest.iter().all(|r| r.cross_site));
        }
    }

    #[test]
    fn no_takeover_while_whole_site_waits() {
        let mut scheduler = two_member_site(0, 16, test_config());
        let early = scheduler.next_requests(0.0);
        assert!(!early.is_empty());

        // A slow shared link: no member brought anything yet, so the other
        // member is not behind and keeps its chunks until the site idles.
        assert!(scheduler.next_requests(29.0).is_empty());
        let rest = scheduler.next_requests(30.0);
        assert_eq!(rest.len(), 16 - early.len());
    }

    #[test]
    fn member_progress_delays_takeover() {
        let mut scheduler = two_member_site(0, 16, test_config());
        let early = scheduler.next_requests(0.0);
        for request in &early {
            scheduler.on_chunk(&request.peer, request.index);
        }

        // The other member announces a chunk of its own at 11 s: it is not
        // behind, so this member takes nothing over.
        let theirs = (0..16)
            .find(|i| !scheduler.is_done(*i))
            .expect("a chunk left");
        scheduler.set_have(&1, bitmap::from_fn(16, |i| i == theirs));
        let requests = scheduler.next_requests(11.0);
        assert!(requests.iter().all(|r| !r.cross_site), "{requests:?}");
        assert_eq!(requests.len(), 1);
    }

    #[test]
    fn departed_member_is_taken_over_at_once() {
        let mut scheduler = two_member_site(0, 16, test_config());
        let early = scheduler.next_requests(0.0);
        scheduler.remove_peer(&1);
        let rest = scheduler.next_requests(0.0);
        assert_eq!(rest.len(), 16 - early.len());
    }

    #[test]
    fn cross_site_requests_use_wan_timeout() {
        let mut scheduler = two_member_site(0, 16, test_config());
        let early = scheduler.next_requests(0.0);
        assert!(scheduler.expired(61.0).is_empty());
        assert_eq!(scheduler.expired(301.0).len(), early.len());
    }

    /// Runs two members of one site where the other member gains nothing
    /// while this one finishes its own chunks at 30 s; returns whether this
    /// member took over any of the other's chunks by 60 s.
    fn takes_over_quiet_member(other_reports_fetching: bool) -> bool {
        let config = SchedulerConfig {
            stall_secs: 10.0,
            requests_per_peer: 64,
            ..SchedulerConfig::default()
        };
        let mut scheduler = Scheduler::new(0u32, vec![0; 4], chunks(32), &[], config, 0.0);
        scheduler.add_peer(1, true, Some(vec![1; 4]));
        scheduler.add_peer(99, false, None);
        scheduler.set_have(&99, all(32));
        let mine = scheduler.next_requests(0.0);
        assert!(!mine.is_empty() && mine.len() < 32);
        for request in &mine {
            scheduler.on_chunk(&99, request.index);
        }
        for second in 30..=60 {
            if other_reports_fetching {
                scheduler.set_fetching(&1, true);
            }
            if scheduler
                .next_requests(f64::from(second))
                .iter()
                .any(|r| r.cross_site)
            {
                return true;
            }
        }
        false
    }

    #[test]
    fn member_busy_on_the_wan_is_not_taken_over() {
        assert!(!takes_over_quiet_member(true));
    }

    #[test]
    fn quiet_idle_member_is_taken_over() {
        assert!(takes_over_quiet_member(false));
    }

    #[test]
    fn cross_site_requests_are_capped_over_all_peers() {
        let config = SchedulerConfig {
            max_cross_site_in_flight: 3,
            ..SchedulerConfig::default()
        };
        let mut scheduler = Scheduler::new(0u32, vec![0], chunks(32), &[], config, 0.0);
        for peer in [1, 2, 3] {
            scheduler.add_peer(peer, false, None);
            scheduler.set_have(&peer, all(32));
        }
        scheduler.add_peer(4, true, None);
        scheduler.prove(&4);
        // The same-site peer has half, so the other half may cross sites.
        scheduler.set_have(&4, bitmap::from_fn(32, |i| i < 16));
        let requests = scheduler.next_requests(0.0);
        let cross = requests.iter().filter(|r| r.cross_site).count();
        assert_eq!(cross, 3, "{requests:?}");
        // Same-site requests are not capped by it.
        assert_eq!(requests.len() - cross, 8);
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
