//! The node's clock: the system clock, or a test clock that starts at an
//! offset and runs faster, so days of soak pass in seconds in tests.

use std::time::Instant;

use jiff::{SignedDuration, Timestamp};

use crate::config::ClockConfig;

/// Source of "now" for every time decision of the node.
#[derive(Clone, Debug)]
pub struct Clock {
    start_real: Instant,
    start: Timestamp,
    speed: f64,
    name: &'static str,
}

impl Clock {
    /// The plain system clock.
    pub fn system() -> Self {
        Self::from_config(&ClockConfig::default())
    }

    /// A clock as configured; the system clock for the default config.
    pub fn from_config(config: &ClockConfig) -> Self {
        let is_test = config.offset_secs != 0 || config.speed != 1.0;
        Clock {
            start_real: Instant::now(),
            start: Timestamp::now() + SignedDuration::from_secs(config.offset_secs),
            speed: config.speed,
            name: if is_test {
                "test clock"
            } else {
                "system clock"
            },
        }
    }

    /// Current time.
    pub fn now(&self) -> Timestamp {
        let elapsed = self.start_real.elapsed().as_secs_f64() * self.speed;
        self.start + SignedDuration::from_secs_f64(elapsed)
    }

    /// Which clock this is, for messages ("system clock" or "test clock").
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Real time that passes while `test_secs` pass on this clock.
    pub fn real_duration(&self, test_secs: f64) -> std::time::Duration {
        std::time::Duration::from_secs_f64((test_secs / self.speed).max(0.0))
    }
}
