//! Everything a node keeps on disk: chunk files and the sled metadata
//! database.

pub mod chunks;
pub mod meta;

pub use chunks::{ChunkError, ChunkStore};
pub use meta::{MetaError, MetaStore, StoredReport};
