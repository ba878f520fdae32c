//! Messages of the request-response protocols between nodes, and their
//! framing limits.
//!
//! Two protocols exist. `/patchmesh/sync/1` carries hellos, anti-entropy
//! summaries, object fetches, chunk availability and reports.
//! `/patchmesh/chunk/1` carries chunk data only, so bulk transfer never
//! queues behind metadata.

use serde::{Deserialize, Serialize};

use crate::envelope::Kind;
use crate::hash::Hash;
use crate::limits;

/// Protocol name of the sync protocol.
pub const SYNC_PROTOCOL: &str = "/patchmesh/sync/1";

/// Protocol name of the chunk protocol.
pub const CHUNK_PROTOCOL: &str = "/patchmesh/chunk/1";

/// Gossipsub topic for signed admin objects.
pub const OBJECTS_TOPIC: &str = "patchmesh/objects/1";

/// What a node tells a peer about itself when they connect.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Host name.
    pub host: String,
    /// Site.
    pub site: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Whether the node collects reports.
    pub observer: bool,
    /// Whether the node may fetch chunks from other sites.
    pub wan: bool,
    /// Version of `patchmesh-node`.
    pub agent_version: String,
    /// Sequence number, higher in each hello the sender makes. Nodes start
    /// it at the Unix time in milliseconds when the process starts, so it
    /// keeps rising across restarts while the clock does. Hellos and their
    /// replies travel on separate streams and may arrive out of order, so a
    /// receiver ignores a hello whose number is not above the last one it
    /// stored from that sender.
    pub seq: u64,
}

/// A peer as another node knows it, for peer exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// libp2p peer id, base58.
    pub peer: String,
    /// Multiaddrs the peer listens on.
    pub addrs: Vec<String>,
    /// The peer's site, as it introduced itself.
    pub site: String,
}

/// One entry of an anti-entropy summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSummary {
    /// Object id.
    pub id: Hash,
    /// Kind.
    pub kind: Kind,
    /// Slot within the kind.
    pub slot: String,
    /// Revision.
    pub revision: u64,
}

/// Request of the sync protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// Introduce the requester; the reply introduces the responder.
    Hello(Hello),
    /// Ask for a summary of every live object held.
    Summary,
    /// Ask for objects by id.
    Get(Vec<Hash>),
    /// Ask which chunks of a payload the responder holds.
    Have {
        /// BLAKE3 of the assembled payload.
        payload: Hash,
    },
    /// Hand over a signed node report (observers only accept it).
    Report(Vec<u8>),
    /// Ask for the peers the responder is connected to (peer exchange).
    Peers,
    /// Ask an observer for the signed reports it collected, so a node can
    /// judge rollout waves itself from reports it verifies.
    Reports,
    /// Hand over a signed inventory update
    /// ([`crate::inventory::SignedInventory`] bytes; observers only).
    Inventory(Vec<u8>),
}

/// Response of the sync protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// The responder's introduction.
    Hello(Hello),
    /// Summary of live objects.
    Summary(Vec<ObjectSummary>),
    /// Encoded [`crate::envelope::Signed`] objects, in request order, for the
    /// ids the responder holds.
    Objects(Vec<Vec<u8>>),
    /// Bitmap of held chunks, bit `i` of byte `i / 8` (LSB first) for chunk
    /// `i`; empty when the payload is unknown.
    Have(Vec<u8>),
    /// Like [`SyncResponse::Have`], plus whether the responder has chunk
    /// requests to other sites in flight, so its site peers can tell a
    /// member busy on a slow WAN link from one that stalled.
    Holding {
        /// Bitmap of held chunks, as in [`SyncResponse::Have`].
        have: Vec<u8>,
        /// Whether requests to other sites are in flight.
        fetching: bool,
    },
    /// The report was stored.
    ReportAccepted,
    /// Peers the responder is connected to, at most
    /// [`limits::MAX_PEER_RECORDS`].
    Peers(Vec<PeerRecord>),
    /// Signed reports ([`crate::report::SignedReport`] bytes), at most
    /// [`limits::MAX_REPORTS_PER_REPLY`].
    Reports(Vec<Vec<u8>>),
    /// The inventory update was stored.
    InventoryAccepted,
    /// The request was refused.
    Refused(String),
}

/// Request of the chunk protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRequest {
    /// BLAKE3 of the chunk.
    pub hash: Hash,
}

/// Why a frame was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Larger than the protocol allows.
    #[error("{protocol} frame of {size} bytes exceeds the limit of {limit} bytes")]
    Oversize {
        /// Protocol name.
        protocol: &'static str,
        /// Size announced or read.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// Not decodable.
    #[error("malformed {protocol} frame: {reason}")]
    Malformed {
        /// Protocol name.
        protocol: &'static str,
        /// Decoder message.
        reason: String,
    },
}

/// Encodes a sync message.
pub fn encode_sync<T: Serialize>(message: &T) -> Vec<u8> {
    postcard::to_allocvec(message).expect("in-memory messages always encode")
}

/// Decodes a sync message, after checking its size.
pub fn decode_sync<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, FrameError> {
    if bytes.len() > limits::MAX_CONTROL_FRAME_BYTES {
        return Err(FrameError::Oversize {
            protocol: SYNC_PROTOCOL,
            size: bytes.len(),
            limit: limits::MAX_CONTROL_FRAME_BYTES,
        });
    }
    postcard::from_bytes(bytes).map_err(|e| FrameError::Malformed {
        protocol: SYNC_PROTOCOL,
        reason: e.to_string(),
    })
}

/// Bitmap helpers for [`SyncResponse::Have`].
pub mod bitmap {
    /// Bitmap of `len` bits with the bits for which `held(i)` is true set.
    pub fn from_fn(len: usize, held: impl Fn(usize) -> bool) -> Vec<u8> {
        let mut bits = vec![0u8; len.div_ceil(8)];
        for i in 0..len {
            if held(i) {
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        bits
    }

    /// Whether bit `index` is set; false past the end.
    pub fn get(bits: &[u8], index: usize) -> bool {
        bits.get(index / 8)
            .is_some_and(|byte| byte & (1 << (index % 8)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_round_trip() {
        let request = SyncRequest::Have {
            payload: Hash::of(b"p"),
        };
        let back: SyncRequest = decode_sync(&encode_sync(&request)).expect("decodes");
        assert_eq!(back, request);
    }

    #[test]
    fn oversize_frame_is_rejected_before_decoding() {
        let bytes = vec![0u8; limits::MAX_CONTROL_FRAME_BYTES + 1];
        let err = decode_sync::<SyncRequest>(&bytes).unwrap_err();
        assert!(matches!(err, FrameError::Oversize { .. }), "{err}");
    }

    #[test]
    fn truncated_frame_is_malformed() {
        let bytes = encode_sync(&SyncRequest::Get(vec![Hash::of(b"a")]));
        let err = decode_sync::<SyncRequest>(&bytes[..bytes.len() - 3]).unwrap_err();
        assert!(matches!(err, FrameError::Malformed { .. }), "{err}");
    }

    #[test]
    fn bitmap_marks_held_chunks() {
        let bits = bitmap::from_fn(10, |i| i % 3 == 0);
        assert!(bitmap::get(&bits, 0));
        assert!(!bitmap::get(&bits, 1));
        assert!(bitmap::get(&bits, 9));
        assert!(!bitmap::get(&bits, 10));
    }
}
