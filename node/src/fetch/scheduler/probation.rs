//! Probation of same-site peers that have not yet delivered a chunk in a
//! download.
//!
//! A peer may claim every chunk and never reply. Filled up to
//! `requests_per_peer` at once, one such peer held every chunk of a small
//! download until the request timeout. The next such peer in order then took
//! them all again, so 20 of them stalled a download for 20 minutes. Now
//! a same-site peer gets at most [`PROBATION_REQUESTS`] in flight until it
//! delivers a verified chunk, peers on probation take turns in a rotating
//! order, and a chunk that a peer on probation has owed for
//! [`REASSIGN_AFTER_SECS`] is requested again from another same-site peer
//! that has it, proven peers first.
// NOTE: peers of other sites are not on probation. With one request each,
// the slow-peer floor (grace plus the owed bytes at 32 KiB/s) would drop an
// honest peer whose single chunk waits behind the site's other WAN
// requests on a shared 2 Mbit/s link. So a hostile peer of another site
// may hold up to `requests_per_peer` WAN requests until that floor drops it.

use std::collections::BTreeMap;
use std::fmt::Debug;

use patchmesh_protocol::wire::bitmap;

use super::{PeerState, Request, Scheduler};

/// Requests in flight a same-site peer on probation may have.
pub const PROBATION_REQUESTS: usize = 1;

/// Seconds after which a chunk owed by a peer on probation is requested
/// again from another peer. A 256 KiB chunk takes about 1 s on a 2 Mbit/s
/// link, so an honest peer mostly delivers first.
pub const REASSIGN_AFTER_SECS: f64 = 2.0;

impl<P: Ord + Clone + Debug> Scheduler<P> {
    /// Ends the probation of `peer` as if it had delivered a chunk, for
    /// tests about proven peers.
    #[cfg(test)]
    pub(super) fn prove(&mut self, peer: &P) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.delivered = true;
        }
    }

    /// Requests in flight `state` may have.
    pub(super) fn request_limit(&self, state: &PeerState) -> usize {
        if state.same_site && !state.delivered {
            PROBATION_REQUESTS.min(self.config.requests_per_peer)
        } else {
            self.config.requests_per_peer
        }
    }

    /// Peers in the order they are offered chunks: same site first, then
    /// proven before peers on probation, each group in an order that
    /// rotates by one on every call.
    pub(super) fn request_order(&mut self) -> Vec<P> {
        let mut order: Vec<P> = self.peers.keys().cloned().collect();
        if !order.is_empty() {
            let turn = self.rotation % order.len();
            order.rotate_left(turn);
        }
        self.rotation = self.rotation.wrapping_add(1);
        order.sort_by_key(|peer| {
            let state = &self.peers[peer];
            (!state.same_site, !state.delivered)
        });
        order
    }

    /// Adds to `out` a request to another same-site peer for each chunk a
    /// peer on probation has owed for longer than [`REASSIGN_AFTER_SECS`].
    /// The first request stays open and either reply is used. The owing
    /// peer's wait goes on, so the slow-peer rule still drops it.
    pub(super) fn reassign_stalled(&mut self, now: f64, order: &[P], out: &mut Vec<Request<P>>) {
        let stalled: Vec<(usize, P)> = self
            .in_flight
            .iter()
            .filter(|(index, flight)| {
                !flight.cross_site
                    && now - flight.sent_at > REASSIGN_AFTER_SECS
                    && !out.iter().any(|request| request.index == **index)
                    && self.peers.get(&flight.peer).is_some_and(|s| !s.delivered)
            })
            .map(|(index, flight)| (*index, flight.peer.clone()))
            .collect();
        if stalled.is_empty() {
            return;
        }
        let mut free: BTreeMap<P, usize> = BTreeMap::new();
        for (peer, state) in &self.peers {
            if state.excluded || !state.same_site {
                continue;
            }
            let asked = out.iter().filter(|request| &request.peer == peer).count();
            let slots = self
                .request_limit(state)
                .saturating_sub(state.in_flight + asked);
            free.insert(peer.clone(), slots);
        }
        for (index, holder) in stalled {
            let target = order.iter().find(|peer| {
                **peer != holder
                    && free.get(*peer).is_some_and(|slots| *slots > 0)
                    && bitmap::get(&self.peers[*peer].have, index)
            });
            let Some(target) = target.cloned() else {
                continue;
            };
            if let Some(slots) = free.get_mut(&target) {
                *slots -= 1;
            }
            if let Some(state) = self.peers.get_mut(&holder) {
                state.in_flight = state.in_flight.saturating_sub(1);
            }
            out.push(Request {
                peer: target,
                index,
                cross_site: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{all, chunks};
    use super::*;
    use crate::fetch::SchedulerConfig;

    /// Builds a download of `n` chunks with same-site peers 1 to `peers`,
    /// all claiming every chunk.
    fn claimed_by(n: usize, peers: u32) -> Scheduler<u32> {
        let config = SchedulerConfig {
            wan: false,
            ..SchedulerConfig::default()
        };
        let mut scheduler = Scheduler::new(0u32, vec![0], chunks(n), &[], config, 0.0);
        for peer in 1..=peers {
            scheduler.add_peer(peer, true, None);
            scheduler.set_have(&peer, all(n));
        }
        scheduler
    }

    #[test]
    fn peer_on_probation_gets_one_request() {
        let mut scheduler = claimed_by(8, 1);
        let first = scheduler.next_requests(0.0);
        assert_eq!(first.len(), 1);
        scheduler.on_chunk(&1, first[0].index);
        let next = scheduler.next_requests(0.1);
        assert_eq!(next.len(), 7, "a proven peer is filled up to its limit");
    }

    #[test]
    fn silent_claimers_cannot_hold_every_chunk() {
        // Peers 1 to 20 never reply; peer 21 is honest.
        let mut scheduler = claimed_by(8, 21);
        let honest = 21;
        let mut now = 0.0;
        while !scheduler.is_complete() && now < 30.0 {
            for request in scheduler.next_requests(now) {
                if request.peer == honest {
                    scheduler.on_chunk(&honest, request.index);
                }
            }
            for peer in scheduler.slow_peers(now) {
                scheduler.on_slow(&peer);
            }
            now += 0.25;
        }
        assert!(scheduler.is_complete(), "not complete after {now} s");
        assert!(now < 10.0, "took {now} s among silent claimers");
    }

    #[test]
    fn stalled_chunk_moves_to_a_proven_peer() {
        let mut scheduler = claimed_by(2, 2);
        let first = scheduler.next_requests(0.0);
        assert_eq!(first.len(), 2, "each peer on probation gets one chunk");
        let (silent, honest) = (first[0].clone(), first[1].clone());
        scheduler.on_chunk(&honest.peer, honest.index);
        assert!(scheduler.next_requests(1.0).is_empty(), "too early to move");
        let moved = scheduler.next_requests(2.5);
        assert_eq!(
            moved,
            vec![Request {
                peer: honest.peer,
                index: silent.index,
                cross_site: false
            }]
        );
        scheduler.on_chunk(&honest.peer, silent.index);
        assert!(scheduler.is_complete());
    }
}
