//! The report file that carries node reports back across an air gap:
//! `patchmesh-node reports export` writes it and an observer on the admin's
//! side imports it.
//!
//! Layout, integers little-endian: magic `PMREPORT`, format version u32,
//! report count u32, then per report its length u32 and the bytes of one
//! [`SignedReport`]. Nothing may follow. Each report carries its node's own
//! signature, so the file needs none; [`ReportBundle::verify`] checks each.

use crate::limits;
use crate::report::{NodeReport, ReportError, SignedReport};

/// First bytes of every report file.
pub const MAGIC: [u8; 8] = *b"PMREPORT";

/// Format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Most reports one file may carry.
pub const MAX_REPORTS: usize = 100_000;

/// Largest report file: every report at its size limit would be far more,
/// so this caps the whole file instead (256 MiB).
pub const MAX_FILE_BYTES: usize = 256 * 1024 * 1024;

/// Signed node reports to carry across a gap, as encoded report bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportBundle {
    /// Bytes of each [`SignedReport`].
    pub reports: Vec<Vec<u8>>,
}

/// Error for a rejected report file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportFileError {
    /// The file ends early.
    #[error("report file is truncated at byte {offset} (expected {expected})")]
    Truncated {
        /// Length of the file.
        offset: usize,
        /// Item expected next.
        expected: &'static str,
    },
    /// The file does not start with [`MAGIC`].
    #[error("not a patchmesh report file (expected magic \"PMREPORT\")")]
    BadMagic,
    /// The format version is not [`FORMAT_VERSION`].
    #[error("report file format version {0} is not supported (expected {FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    /// A size exceeds its limit.
    #[error("{what} at byte {offset} is {size}, over the limit of {limit}")]
    Oversize {
        /// Offset of the field.
        offset: usize,
        /// Measured quantity.
        what: &'static str,
        /// Size found.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// Bytes follow the last report.
    #[error("unexpected data after the last report at byte {offset}")]
    TrailingData {
        /// Offset of the first extra byte.
        offset: usize,
    },
    /// One report failed its checks.
    #[error("report {position} (at byte {offset}) is rejected: {source}")]
    Report {
        /// Position in the file, from 0.
        position: usize,
        /// Offset of its bytes.
        offset: usize,
        /// Why.
        source: ReportError,
    },
}

impl ReportBundle {
    /// Encodes the file.
    pub fn encode(&self) -> Vec<u8> {
        let total: usize = self.reports.iter().map(|r| r.len() + 4).sum();
        let mut bytes = Vec::with_capacity(16 + total);
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(self.reports.len() as u32).to_le_bytes());
        for report in &self.reports {
            bytes.extend_from_slice(&(report.len() as u32).to_le_bytes());
            bytes.extend_from_slice(report);
        }
        bytes
    }

    /// Parses a file, checking every count and length against its limit
    /// before it is used. Report signatures are checked by
    /// [`ReportBundle::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ReportFileError> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(ReportFileError::Oversize {
                offset: 0,
                what: "report file size",
                size: bytes.len(),
                limit: MAX_FILE_BYTES,
            });
        }
        let mut cursor = Cursor { bytes, offset: 0 };
        if cursor.take(8, "the magic")? != MAGIC {
            return Err(ReportFileError::BadMagic);
        }
        let version = cursor.u32("the format version")?;
        if version != FORMAT_VERSION {
            return Err(ReportFileError::UnsupportedVersion(version));
        }
        let count_offset = cursor.offset;
        let count = cursor.u32("the report count")? as usize;
        if count > MAX_REPORTS {
            return Err(ReportFileError::Oversize {
                offset: count_offset,
                what: "report count",
                size: count,
                limit: MAX_REPORTS,
            });
        }

        let mut reports = Vec::new();
        for _ in 0..count {
            let len_offset = cursor.offset;
            let len = cursor.u32("a report length")? as usize;
            if len > limits::MAX_REPORT_BYTES {
                return Err(ReportFileError::Oversize {
                    offset: len_offset,
                    what: "report length",
                    size: len,
                    limit: limits::MAX_REPORT_BYTES,
                });
            }
            reports.push(cursor.take(len, "report bytes")?.to_vec());
        }
        if cursor.offset != bytes.len() {
            return Err(ReportFileError::TrailingData {
                offset: cursor.offset,
            });
        }
        Ok(ReportBundle { reports })
    }

    /// Verifies every report's node signature and returns the reports in
    /// file order; the error names the first one that fails.
    pub fn verify(&self) -> Result<Vec<(SignedReport, NodeReport)>, ReportFileError> {
        let mut offset = 16;
        let mut verified = Vec::with_capacity(self.reports.len());
        for (position, bytes) in self.reports.iter().enumerate() {
            offset += 4;
            let report =
                SignedReport::verify_bytes(bytes).map_err(|source| ReportFileError::Report {
                    position,
                    offset,
                    source,
                })?;
            verified.push(report);
            offset += bytes.len();
        }
        Ok(verified)
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize, expected: &'static str) -> Result<&'a [u8], ReportFileError> {
        let end = self
            .offset
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(ReportFileError::Truncated {
                offset: self.bytes.len(),
                expected,
            });
        };
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    fn u32(&mut self, expected: &'static str) -> Result<u32, ReportFileError> {
        let bytes = self.take(4, expected)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use libp2p_identity::Keypair;

    use super::*;

    fn signed_report(seq: u64) -> Vec<u8> {
        let keypair = Keypair::generate_ed25519();
        let report = NodeReport {
            peer: keypair.public().to_peer_id().to_base58(),
            host: format!("pc-{seq}"),
            site: "ship".into(),
            groups: vec![],
            seq,
            time: Timestamp::UNIX_EPOCH,
            agent_version: "0".into(),
            patches: vec![],
            stale: None,
        };
        SignedReport::sign(&report, &keypair).to_bytes()
    }

    fn file() -> Vec<u8> {
        ReportBundle {
            reports: vec![signed_report(1), signed_report(2)],
        }
        .encode()
    }

    #[test]
    fn round_trip_verifies() {
        let decoded = ReportBundle::decode(&file()).expect("decodes");
        let reports = decoded.verify().expect("verifies");
        let hosts: Vec<&str> = reports.iter().map(|(_, r)| r.host.as_str()).collect();
        assert_eq!(hosts, ["pc-1", "pc-2"]);
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = file();
        for cut in 0..bytes.len() {
            let err = ReportBundle::decode(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, ReportFileError::Truncated { offset, .. } if offset == cut),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let bytes = file();
        for position in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x01;
            let result = ReportBundle::decode(&damaged).and_then(|b| b.verify());
            assert!(result.is_err(), "flip at {position} was accepted");
        }
    }

    #[test]
    fn oversized_count_is_rejected_before_reading() {
        let mut bytes = file();
        bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = ReportBundle::decode(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                ReportFileError::Oversize {
                    what: "report count",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = file();
        bytes.push(0);
        let err = ReportBundle::decode(&bytes).unwrap_err();
        assert!(matches!(err, ReportFileError::TrailingData { .. }), "{err}");
    }
}
