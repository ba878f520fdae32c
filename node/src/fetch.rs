//! Chunk downloads: the pure scheduler and the per-download bookkeeping the
//! agent keeps around it.

pub mod backoff;
pub mod scheduler;

pub use backoff::StoreBackoff;
pub use scheduler::{Request, Scheduler, SchedulerConfig};
