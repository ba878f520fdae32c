//! Bounds on the chunk serves one peer may keep in progress.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::request_response::InboundRequestId;
use libp2p::PeerId;

/// Window in which requests rejected for being over the limit are counted.
const REJECT_WINDOW: Duration = Duration::from_secs(1);

/// Peers with rejection counts kept before counts of past windows are
/// dropped, so peers that come and go cannot grow the map without bound.
const MAX_TRACKED_PEERS: usize = 1024;

/// Chunk serves a peer may have in progress, per chunk request in flight
/// this node allows itself per download (`requests_per_peer`), so an honest
/// peer running up to this many downloads at once gets every chunk it
/// requests. A peer with more rejected requests in [`REJECT_WINDOW`] than
/// the limit is penalised for each further one. An honest peer requests a
/// rejected chunk again only after its next chunk map poll, every 0.5 s, so
/// by estimate it reaches that only with more than six downloads from this
/// node at once.
// NOTE: the limit counts chunks, not bytes, so a peer may make the node
// hold up to `requests_per_peer * 4` chunks of the largest chunk size.
pub(super) const SERVE_SLOTS_PER_REQUEST: usize = 4;

/// Chunk serves in progress (read, or written but not yet read by the
/// requester), by inbound request, so one peer cannot make the node hold an
/// unbounded number of chunks in memory.
#[derive(Debug, Default)]
pub(in crate::agent) struct ServeSlots {
    by_request: HashMap<InboundRequestId, PeerId>,
    by_peer: HashMap<PeerId, usize>,
    /// Start of the current window and the requests rejected in it, by
    /// peer.
    rejected: HashMap<PeerId, (Instant, usize)>,
}

impl ServeSlots {
    /// Serves in progress for `peer`.
    pub fn count(&self, peer: &PeerId) -> usize {
        self.by_peer.get(peer).copied().unwrap_or(0)
    }

    /// Records a serve that started.
    pub fn start(&mut self, request: InboundRequestId, peer: PeerId) {
        if self.by_request.insert(request, peer).is_none() {
            *self.by_peer.entry(peer).or_default() += 1;
        }
    }

    /// Records a request rejected at `now` and returns how many `peer` had
    /// rejected in the current window, this one included.
    pub fn reject(&mut self, peer: PeerId, now: Instant) -> usize {
        if self.rejected.len() > MAX_TRACKED_PEERS {
            self.rejected
                .retain(|_, (start, _)| now.duration_since(*start) <= REJECT_WINDOW);
        }
        let entry = self.rejected.entry(peer).or_insert((now, 0));
        if now.duration_since(entry.0) > REJECT_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1
    }

    /// Records a serve that ended: sent, or failed, which includes a closed
    /// connection (request-response reports `ConnectionClosed` for each).
    pub fn finish(&mut self, request: InboundRequestId) {
        let Some(peer) = self.by_request.remove(&request) else {
            return;
        };
        if let Some(count) = self.by_peer.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                self.by_peer.remove(&peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_count_per_window() {
        let mut slots = ServeSlots::default();
        let peer = PeerId::random();
        let start = Instant::now();
        assert_eq!(slots.reject(peer, start), 1);
        assert_eq!(slots.reject(peer, start + Duration::from_millis(500)), 2);
        assert_eq!(
            slots.reject(PeerId::random(), start),
            1,
            "counts are per peer"
        );
        let next_window = start + REJECT_WINDOW + Duration::from_millis(1);
        assert_eq!(slots.reject(peer, next_window), 1);
    }

    #[test]
    fn old_windows_are_dropped_when_many_peers_come() {
        let mut slots = ServeSlots::default();
        let start = Instant::now();
        for _ in 0..=MAX_TRACKED_PEERS {
            slots.reject(PeerId::random(), start);
        }
        slots.reject(PeerId::random(), start + REJECT_WINDOW * 2);
        assert_eq!(slots.rejected.len(), 1);
    }
}
