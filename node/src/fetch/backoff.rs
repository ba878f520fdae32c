//! Pausing a download after this node failed to store one of its chunks
//! (full disk, chunk quota reached), as pure decision code.
//!
//! Without a pause the node would fetch the same chunks again at once, fail
//! to store them again and log every failure, tens of times a second, for
//! as long as the disk stays full. The pause doubles with each failure that
//! ends one, up to a cap, and ends early when the caller learns that space
//! returned. Time is a monotonic number of seconds passed in by the caller.

/// Pause after the first failure to store a chunk, in seconds.
pub const FIRST_PAUSE_SECS: f64 = 1.0;

/// Longest pause, in seconds: once space returns, the download resumes at
/// most this long afterwards even when nothing tells the node.
pub const MAX_PAUSE_SECS: f64 = 30.0;

/// Store-failure backoff of one download.
#[derive(Clone, Debug, Default)]
pub struct StoreBackoff {
    /// Pauses started since the last stored chunk.
    failures: u32,
    /// End of the current pause, if any.
    paused_until: Option<f64>,
}

impl StoreBackoff {
    /// Records a failure to store a chunk at `now`. Returns the pause in
    /// seconds when this failure starts a new pause, and `None` when a
    /// pause is already running: requests sent before it began may still
    /// fail, and they neither lengthen it nor need another log line.
    pub fn on_store_failed(&mut self, now: f64) -> Option<f64> {
        if self.is_paused(now) {
            return None;
        }
        let exponent = self.failures.min(16) as i32;
        let pause = (FIRST_PAUSE_SECS * 2f64.powi(exponent)).min(MAX_PAUSE_SECS);
        self.failures = self.failures.saturating_add(1);
        self.paused_until = Some(now + pause);
        Some(pause)
    }

    /// Records a stored chunk: the next failure starts again at the first
    /// pause.
    pub fn on_stored(&mut self) {
        self.failures = 0;
        self.paused_until = None;
    }

    /// Ends the current pause at once, because space may have returned. The
    /// failure count stays, so a false alarm does not shorten later pauses.
    pub fn resume(&mut self) {
        self.paused_until = None;
    }

    /// Whether no chunk requests may be sent at `now`.
    pub fn is_paused(&self, now: f64) -> bool {
        self.paused_until.is_some_and(|until| now < until)
    }

    /// Seconds left in the current pause at `now`; zero when not paused.
    pub fn remaining(&self, now: f64) -> f64 {
        self.paused_until
            .map_or(0.0, |until| (until - now).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap() {
        let mut backoff = StoreBackoff::default();
        let mut now = 0.0;
        let mut pauses = Vec::new();
        for _ in 0..8 {
            let pause = backoff.on_store_failed(now).expect("a new pause starts");
            pauses.push(pause);
            assert!(backoff.is_paused(now + pause - 0.01));
            now += pause;
            assert!(!backoff.is_paused(now), "still paused at {now} s");
        }
        assert_eq!(pauses, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
    }

    #[test]
    fn failures_during_a_pause_start_no_new_one() {
        let mut backoff = StoreBackoff::default();
        assert_eq!(backoff.on_store_failed(10.0), Some(1.0));
        // Requests already in flight fail during the pause.
        for _ in 0..7 {
            assert_eq!(backoff.on_store_failed(10.5), None);
        }
        assert_eq!(backoff.remaining(10.5), 0.5);
        assert_eq!(backoff.on_store_failed(11.0), Some(2.0));
    }

    #[test]
    fn stored_chunk_resets_the_pause() {
        let mut backoff = StoreBackoff::default();
        backoff.on_store_failed(0.0);
        backoff.on_store_failed(1.0);
        backoff.on_stored();
        assert!(!backoff.is_paused(1.5));
        assert_eq!(backoff.on_store_failed(2.0), Some(1.0));
    }

    #[test]
    fn resume_ends_the_pause_but_keeps_the_growth() {
        let mut backoff = StoreBackoff::default();
        backoff.on_store_failed(0.0);
        backoff.on_store_failed(1.0);
        assert!(backoff.is_paused(2.0));
        backoff.resume();
        assert!(!backoff.is_paused(2.0));
        assert_eq!(backoff.remaining(2.0), 0.0);
        assert_eq!(backoff.on_store_failed(2.0), Some(4.0));
    }
}
