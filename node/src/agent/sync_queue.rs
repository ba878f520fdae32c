//! Per-peer queue of outbound sync requests.
//!
//! The sync protocol accepts at most `limits::MAX_SYNC_STREAMS` streams per
//! connection and drops inbound streams past that unread. A node keeps at
//! most `limits::MAX_SYNC_REQUESTS_IN_FLIGHT` requests in flight to one
//! peer and queues the rest, so two honest peers never fill each other's
//! streams, however many objects, downloads or reports they exchange.

use std::collections::{HashMap, VecDeque};

use libp2p::PeerId;

/// Requests that may wait for one peer. One full summary turns into 64
/// object fetches (4096 ids in batches of 64), so this leaves room for
/// several summaries plus the periodic requests.
pub(super) const MAX_WAITING_PER_PEER: usize = 256;

/// Decision of [`SyncQueue::admit`] on a request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission<R> {
    /// Send it now. It counts as in flight.
    Send(R),
    /// It waits until a request in flight to the peer ends.
    Queued,
    /// The peer's queue is full, so the request is returned unsent.
    Full(R),
}

#[derive(Debug)]
struct PeerQueue<R> {
    in_flight: usize,
    waiting: VecDeque<R>,
}

/// Outbound sync requests in flight and waiting, by peer.
#[derive(Debug)]
pub(super) struct SyncQueue<R> {
    max_in_flight: usize,
    peers: HashMap<PeerId, PeerQueue<R>>,
}

impl<R> SyncQueue<R> {
    /// Creates a queue that keeps at most `max_in_flight` requests in flight per
    /// peer.
    pub fn new(max_in_flight: usize) -> Self {
        SyncQueue {
            max_in_flight: max_in_flight.max(1),
            peers: HashMap::new(),
        }
    }

    /// Decides whether `request` to `peer` goes out now or waits.
    pub fn admit(&mut self, peer: PeerId, request: R) -> Admission<R> {
        let queue = self.peers.entry(peer).or_insert_with(|| PeerQueue {
            in_flight: 0,
            waiting: VecDeque::new(),
        });
        if queue.in_flight < self.max_in_flight && queue.waiting.is_empty() {
            queue.in_flight += 1;
            return Admission::Send(request);
        }
        if queue.waiting.len() >= MAX_WAITING_PER_PEER {
            return Admission::Full(request);
        }
        queue.waiting.push_back(request);
        Admission::Queued
    }

    /// Records that a request in flight to `peer` ended (with a response
    /// or a failure) and returns the oldest waiting request, now in flight.
    pub fn end(&mut self, peer: PeerId) -> Option<R> {
        let queue = self.peers.get_mut(&peer)?;
        queue.in_flight = queue.in_flight.saturating_sub(1);
        let next = if queue.in_flight < self.max_in_flight {
            queue.waiting.pop_front()
        } else {
            None
        };
        if next.is_some() {
            queue.in_flight += 1;
        }
        if queue.in_flight == 0 && queue.waiting.is_empty() {
            self.peers.remove(&peer);
        }
        next
    }

    /// Removes and returns the requests still waiting for `peer`, oldest
    /// first. Requests in flight stay counted until they end.
    pub fn drain_waiting(&mut self, peer: PeerId) -> Vec<R> {
        let Some(queue) = self.peers.get_mut(&peer) else {
            return Vec::new();
        };
        let waiting: Vec<R> = queue.waiting.drain(..).collect();
        if queue.in_flight == 0 {
            self.peers.remove(&peer);
        }
        waiting
    }

    /// Requests in flight to `peer`.
    #[cfg(test)]
    pub fn in_flight(&self, peer: &PeerId) -> usize {
        self.peers.get(peer).map_or(0, |q| q.in_flight)
    }

    /// Requests waiting for `peer`.
    #[cfg(test)]
    pub fn waiting(&self, peer: &PeerId) -> usize {
        self.peers.get(peer).map_or(0, |q| q.waiting.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_past_the_limit_wait_in_order() {
        let peer = PeerId::random();
        let mut queue = SyncQueue::new(2);
        assert_eq!(queue.admit(peer, 1), Admission::Send(1));
        assert_eq!(queue.admit(peer, 2), Admission::Send(2));
        assert_eq!(queue.admit(peer, 3), Admission::Queued);
        assert_eq!(queue.admit(peer, 4), Admission::Queued);
        assert_eq!(queue.in_flight(&peer), 2);
        assert_eq!(queue.waiting(&peer), 2);

        assert_eq!(queue.end(peer), Some(3));
        assert_eq!(queue.in_flight(&peer), 2);
        assert_eq!(queue.end(peer), Some(4));
        assert_eq!(queue.end(peer), None);
        assert_eq!(queue.in_flight(&peer), 1);
    }

    #[test]
    fn peers_have_separate_limits() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut queue = SyncQueue::new(1);
        assert_eq!(queue.admit(a, "a1"), Admission::Send("a1"));
        assert_eq!(queue.admit(a, "a2"), Admission::Queued);
        assert_eq!(queue.admit(b, "b1"), Admission::Send("b1"));
        assert_eq!(queue.end(b), None);
        assert_eq!(queue.waiting(&a), 1);
    }

    #[test]
    fn new_request_does_not_overtake_waiting_ones() {
        let peer = PeerId::random();
        let mut queue = SyncQueue::new(1);
        assert_eq!(queue.admit(peer, 1), Admission::Send(1));
        assert_eq!(queue.admit(peer, 2), Admission::Queued);
        // The request in flight failed, but 2 goes out first.
        assert_eq!(queue.end(peer), Some(2));
        assert_eq!(queue.admit(peer, 3), Admission::Queued);
        assert_eq!(queue.end(peer), Some(3));
    }

    #[test]
    fn full_queue_returns_the_request() {
        let peer = PeerId::random();
        let mut queue = SyncQueue::new(1);
        assert_eq!(queue.admit(peer, 0), Admission::Send(0));
        for i in 1..=MAX_WAITING_PER_PEER {
            assert_eq!(queue.admit(peer, i), Admission::Queued);
        }
        assert_eq!(queue.admit(peer, 9999), Admission::Full(9999));
        assert_eq!(queue.waiting(&peer), MAX_WAITING_PER_PEER);
    }

    #[test]
    fn drained_peer_keeps_its_requests_in_flight() {
        let peer = PeerId::random();
        let mut queue = SyncQueue::new(1);
        assert_eq!(queue.admit(peer, 1), Admission::Send(1));
        assert_eq!(queue.admit(peer, 2), Admission::Queued);
        assert_eq!(queue.admit(peer, 3), Admission::Queued);
        assert_eq!(queue.drain_waiting(peer), vec![2, 3]);
        assert_eq!(queue.in_flight(&peer), 1);
        // A reconnected peer's new request waits for the old one to end.
        assert_eq!(queue.admit(peer, 4), Admission::Queued);
        assert_eq!(queue.end(peer), Some(4));
        assert_eq!(queue.end(peer), None);
        assert!(queue.peers.is_empty(), "idle peers are forgotten");
    }

    #[test]
    fn end_without_request_in_flight_changes_nothing() {
        let peer = PeerId::random();
        let mut queue: SyncQueue<u8> = SyncQueue::new(4);
        assert_eq!(queue.end(peer), None);
        assert_eq!(queue.in_flight(&peer), 0);
        assert!(queue.peers.is_empty());
    }
}
