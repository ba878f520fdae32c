//! Hello sequence numbers. This module has the counter this node stamps its
//! hellos with, and the rule that keeps only the newest hello of each peer.
//!
//! A hello request and the reply to another hello travel on separate
//! streams, so a hello made before the sender's WAN duty changed can
//! arrive after a newer one. Without the rule it would overwrite the
//! newer flag until the next change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use patchmesh_protocol::wire::Hello;

use super::peers::PeerEntry;

/// Counter of this node's hello sequence numbers.
#[derive(Debug)]
pub(super) struct HelloSeq(AtomicU64);

impl HelloSeq {
    /// Creates a counter that starts at the current Unix time in
    /// milliseconds, so the hellos of a restarted node rank above those of
    /// its previous run unless the system clock went back.
    pub fn starting_now() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        HelloSeq(AtomicU64::new(millis))
    }

    /// Returns the next sequence number, above every one returned before.
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A hello not stored because it is not newer than the stored one.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct StaleHello {
    /// Sequence number of the ignored hello.
    pub seq: u64,
    /// Sequence number of the stored hello.
    pub stored_seq: u64,
}

impl PeerEntry {
    /// Stores `hello` as the peer's introduction unless the stored one has
    /// the same or a higher sequence number.
    pub fn store_hello(&mut self, hello: Hello) -> Result<(), StaleHello> {
        if let Some(stored) = &self.hello {
            if hello.seq <= stored.seq {
                return Err(StaleHello {
                    seq: hello.seq,
                    stored_seq: stored.seq,
                });
            }
        }
        self.hello = Some(hello);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(seq: u64, wan: bool) -> Hello {
        Hello {
            host: "branch-1".into(),
            site: "branch".into(),
            wan,
            seq,
            ..Hello::default()
        }
    }

    fn stored_wan(entry: &PeerEntry) -> Option<bool> {
        entry.hello.as_ref().map(|stored| stored.wan)
    }

    #[test]
    fn first_hello_is_stored() {
        let mut entry = PeerEntry::default();
        assert_eq!(entry.store_hello(hello(7, true)), Ok(()));
        assert_eq!(stored_wan(&entry), Some(true));
    }

    #[test]
    fn reply_overtaken_by_newer_hello_is_ignored() {
        // The peer replied to a hello (without WAN duty), then gained WAN
        // duty and sent a new hello. The new one arrives first.
        let sender = HelloSeq::starting_now();
        let reply = hello(sender.next(), false);
        let newer = hello(sender.next(), true);

        let mut entry = PeerEntry::default();
        assert_eq!(entry.store_hello(newer.clone()), Ok(()));
        assert_eq!(
            entry.store_hello(reply.clone()),
            Err(StaleHello {
                seq: reply.seq,
                stored_seq: newer.seq,
            })
        );
        assert_eq!(
            stored_wan(&entry),
            Some(true),
            "older hello overwrote WAN duty"
        );
    }

    #[test]
    fn newer_hello_replaces_stored_one() {
        let mut entry = PeerEntry::default();
        assert_eq!(entry.store_hello(hello(10, true)), Ok(()));
        assert_eq!(entry.store_hello(hello(11, false)), Ok(()));
        assert_eq!(stored_wan(&entry), Some(false));
    }

    #[test]
    fn repeated_sequence_number_is_ignored() {
        let mut entry = PeerEntry::default();
        assert_eq!(entry.store_hello(hello(10, true)), Ok(()));
        assert_eq!(
            entry.store_hello(hello(10, false)),
            Err(StaleHello {
                seq: 10,
                stored_seq: 10
            })
        );
        assert_eq!(stored_wan(&entry), Some(true));
    }

    #[test]
    fn counter_starts_at_current_time_and_rises() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("system clock is before 1970")
            .as_millis() as u64;

        let counter = HelloSeq::starting_now();
        let first = counter.next();
        let second = counter.next();

        assert!(first > before, "first number {first} not above {before}");
        assert!(second > first, "second number {second} not above {first}");
    }

    #[test]
    fn restarted_counter_ranks_above_earlier_run() {
        let earlier = HelloSeq::starting_now();
        let last_of_earlier_run = earlier.next();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let restarted = HelloSeq::starting_now();
        assert!(restarted.next() > last_of_earlier_run);
    }
}
