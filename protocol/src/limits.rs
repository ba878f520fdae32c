//! Hard size limits applied to everything that arrives from a peer or a file,
//! before it is decoded, stored or forwarded.

/// Largest encoded signed object (envelope with payload and signatures).
/// A manifest of a 4 GiB patch in 1 MiB chunks is about 130 KiB.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;

/// Most signatures one envelope may carry.
pub const MAX_SIGNATURES: usize = 32;

/// Largest chunk size a manifest may declare, in bytes.
pub const MAX_CHUNK_BYTES: u32 = 4 * 1024 * 1024;

/// Smallest chunk size a manifest may declare, in bytes.
pub const MIN_CHUNK_BYTES: u32 = 16 * 1024;

/// Default chunk size, in bytes.
pub const DEFAULT_CHUNK_BYTES: u32 = 1024 * 1024;

/// Largest payload a manifest may declare, in bytes (16 GiB).
pub const MAX_PATCH_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// Most chunks one manifest may list.
pub const MAX_CHUNKS: usize = 32 * 1024;

/// Largest frame of the request-response protocols other than chunk data.
pub const MAX_CONTROL_FRAME_BYTES: usize = 2 * 1024 * 1024;

/// Sync requests a node keeps in flight to one peer. Further requests wait
/// in a queue until one of these ends.
pub const MAX_SYNC_REQUESTS_IN_FLIGHT: usize = 4;

/// Sync streams one connection may have open at once, inbound and outbound
/// together: room for both peers' requests in flight plus 2 streams still
/// closing. The node drops inbound streams past it unread, so it buffers at
/// most this many sync frames of up to [`MAX_CONTROL_FRAME_BYTES`] each
/// (20 MiB) per connection.
pub const MAX_SYNC_STREAMS: usize = 2 * MAX_SYNC_REQUESTS_IN_FLIGHT + 2;

/// Largest chunk response frame: one chunk plus framing.
pub const MAX_CHUNK_FRAME_BYTES: usize = MAX_CHUNK_BYTES as usize + 1024;

/// Most object ids in one anti-entropy summary or fetch request.
pub const MAX_SUMMARY_ENTRIES: usize = 4096;

/// Maximum root rotations a node trusts past its pinned root, at runtime
/// and when it loads its stored chain, and maximum roots in one bundle. A
/// node that reaches the limit needs a newer pinned root to go further.
pub const MAX_ROOT_HOPS: usize = 1024;

/// Largest signed node report, in bytes.
pub const MAX_REPORT_BYTES: usize = 256 * 1024;

/// Longest name, version, host, site or group string.
pub const MAX_NAME_LEN: usize = 128;

/// Most peers listed in one peer-exchange reply.
pub const MAX_PEER_RECORDS: usize = 256;

/// Most signed reports in one reply to a node asking an observer. Replies
/// must also fit [`MAX_CONTROL_FRAME_BYTES`]; reports are about 1 KiB each.
pub const MAX_REPORTS_PER_REPLY: usize = 1024;

/// Largest signed node inventory update, in bytes. Estimate: a package
/// encodes to about 40 bytes, so 4000 packages take about 160 KiB and the
/// limit leaves room for six times that.
pub const MAX_INVENTORY_BYTES: usize = 1024 * 1024;

/// Most packages one inventory may list, or one delta may change.
pub const MAX_INVENTORY_PACKAGES: usize = 16 * 1024;

/// Maximum length in bytes of an operating system field (`PRETTY_NAME`, kernel release) in an
/// inventory.
pub const MAX_INVENTORY_TEXT_LEN: usize = 256;
