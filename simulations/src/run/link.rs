//! Flow-level link model: processor sharing on one link, and max-min fair
//! shares of a shared uplink.
//!
//! A link with capacity `C` bytes/s and `n` active flows gives each flow
//! `C / n`. Instead of updating every flow when `n` changes, the link keeps
//! its cumulative service per flow (`service`, bytes one flow would have
//! received since the start) and each flow finishes when `service` reaches
//! the value it had at the flow's start plus the flow's size. A start,
//! finish or capacity change costs O(log n).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Total order on finite `f64` for heap keys.
#[derive(Clone, Copy, Debug)]
pub struct Key(pub f64);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// One processor-sharing link.
#[derive(Debug, Default)]
pub struct Link {
    /// Capacity in bytes per second.
    capacity: f64,
    /// Service per flow accumulated since the start, in bytes.
    service: f64,
    /// Time `service` was last brought up to date.
    updated: f64,
    /// Active flows.
    active: usize,
    /// Finish thresholds (in `service` bytes) with flow ids; cancelled
    /// flows stay until they reach the top and are skipped there.
    finishes: BinaryHeap<Reverse<(Key, u64)>>,
    /// Bumped whenever the next finish time may have changed, so stale
    /// wake-ups can be told apart.
    pub generation: u64,
}

impl Link {
    /// A link of `capacity` bytes per second.
    pub fn new(capacity: f64) -> Self {
        Link {
            capacity,
            ..Link::default()
        }
    }

    /// Rate each active flow gets, in bytes per second.
    pub fn rate_per_flow(&self) -> f64 {
        if self.active == 0 {
            self.capacity
        } else {
            self.capacity / self.active as f64
        }
    }

    /// Capacity in bytes per second.
    pub fn capacity(&self) -> f64 {
        self.capacity
    }

    /// Number of active flows.
    pub fn active(&self) -> usize {
        self.active
    }

    /// Brings the per-flow service up to `now`.
    pub fn advance(&mut self, now: f64) {
        if self.active > 0 && now > self.updated {
            self.service += self.rate_per_flow() * (now - self.updated);
        }
        self.updated = self.updated.max(now);
    }

    /// Sets a new capacity from `now` on.
    pub fn set_capacity(&mut self, now: f64, capacity: f64) {
        self.advance(now);
        self.capacity = capacity;
        self.generation += 1;
    }

    /// Starts flow `id` of `bytes` at `now`; returns the service value at
    /// which it finishes, which `progress` needs later.
    pub fn start(&mut self, now: f64, id: u64, bytes: f64) -> f64 {
        self.advance(now);
        let finish = self.service + bytes;
        self.finishes.push(Reverse((Key(finish), id)));
        self.active += 1;
        self.generation += 1;
        finish
    }

    /// Removes an active flow that will not finish (its ends went away).
    /// The caller must skip its id when `pop_finished` returns it.
    pub fn cancel(&mut self, now: f64) {
        self.advance(now);
        self.active = self.active.saturating_sub(1);
        self.generation += 1;
    }

    /// Bytes a flow ending at `finish` and of `bytes` has received by `now`.
    pub fn progress(&mut self, now: f64, finish: f64, bytes: f64) -> f64 {
        self.advance(now);
        (bytes - (finish - self.service)).clamp(0.0, bytes)
    }

    /// When the next flow finishes, if any flow is active and the link has
    /// capacity. Cancelled flows still in the heap may make this early,
    /// which only costs a wake-up.
    pub fn next_finish(&self) -> Option<f64> {
        let Reverse((Key(finish), _)) = self.finishes.peek()?;
        if self.active == 0 || self.capacity <= 0.0 {
            return None;
        }
        let left = (finish - self.service).max(0.0);
        Some(self.updated + left / self.rate_per_flow())
    }

    /// Pops the next flow whose threshold `service` has reached at `now`.
    /// Returns cancelled ids too; the caller knows which ones those are.
    pub fn pop_finished(&mut self, now: f64) -> Option<u64> {
        self.advance(now);
        let Reverse((Key(finish), id)) = *self.finishes.peek()?;
        // Allow for rounding in the time the caller computed.
        if finish <= self.service + 1e-6 * finish.max(1.0) {
            self.finishes.pop();
            self.generation += 1;
            Some(id)
        } else {
            None
        }
    }

    /// Marks a popped flow as no longer active (it finished normally).
    pub fn finish(&mut self) {
        self.active = self.active.saturating_sub(1);
    }
}

/// Max-min fair shares of one link of `capacity` among users that each
/// want at most `demands[i]` (progressive filling): users wanting less
/// than an equal share get what they want, and the rest is split equally.
pub fn max_min_shares(capacity: f64, demands: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by(|a, b| demands[*a].total_cmp(&demands[*b]));
    let mut shares = vec![0.0; demands.len()];
    let mut left = capacity;
    for (done, &user) in order.iter().enumerate() {
        let equal = left / (order.len() - done) as f64;
        let share = demands[user].min(equal);
        shares[user] = share;
        left -= share;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_flows_finish_together() {
        let mut link = Link::new(100.0);
        link.start(0.0, 1, 100.0);
        link.start(0.0, 2, 100.0);
        // Two flows of 100 bytes at 50 bytes/s each.
        assert_eq!(link.next_finish(), Some(2.0));
        assert_eq!(link.pop_finished(2.0), Some(1));
        link.finish();
        assert_eq!(link.pop_finished(2.0), Some(2));
        link.finish();
        assert_eq!(link.active(), 0);
    }

    #[test]
    fn late_flow_shares_the_rest() {
        let mut link = Link::new(100.0);
        link.start(0.0, 1, 100.0);
        // Alone for 0.5 s (50 bytes), then shared at 50 bytes/s each:
        // flow 1 needs 1 s more.
        link.start(0.5, 2, 100.0);
        assert_eq!(link.next_finish(), Some(1.5));
        assert_eq!(link.pop_finished(1.5), Some(1));
        link.finish();
        // Flow 2 got 50 bytes while shared, then runs alone at 100 bytes/s.
        assert_eq!(link.next_finish(), Some(2.0));
    }

    #[test]
    fn cancelled_flow_frees_its_share() {
        let mut link = Link::new(100.0);
        let finish = link.start(0.0, 1, 100.0);
        link.start(0.0, 2, 100.0);
        assert_eq!(link.progress(1.0, finish, 100.0), 50.0);
        link.cancel(1.0);
        // Flow 2 has 50 bytes left at the full 100 bytes/s.
        let next = link.next_finish().expect("flow 2 is active");
        assert!((next - 1.5).abs() < 1e-9, "{next}");
    }

    #[test]
    fn zero_capacity_stops_flows() {
        let mut link = Link::new(100.0);
        link.start(0.0, 1, 100.0);
        link.set_capacity(0.5, 0.0);
        assert_eq!(link.next_finish(), None);
        link.set_capacity(10.0, 100.0);
        assert_eq!(link.next_finish(), Some(10.5));
    }

    #[test]
    fn max_min_gives_small_demands_in_full() {
        let shares = max_min_shares(100.0, &[10.0, 80.0, 80.0]);
        assert_eq!(shares, vec![10.0, 45.0, 45.0]);
    }

    #[test]
    fn max_min_caps_at_demand_when_capacity_is_ample() {
        let shares = max_min_shares(1000.0, &[10.0, 20.0]);
        assert_eq!(shares, vec![10.0, 20.0]);
    }
}
