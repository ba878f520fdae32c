//! The air-gap bundle format: one file that carries the root chain, a signed
//! index, the signed objects it lists and their chunks across a network gap.
//!
//! Layout, all integers little-endian:
//!
//! ```text
//! magic "PMBUNDLE" | format version u32
//! record*          | tag u8, length u32, length bytes
//! ```
//!
//! Records come in a fixed order: every root version (tag 1, oldest first),
//! the signed [`BundleIndex`] (tag 2), the signed objects (tag 3) and the
//! chunks (tag 4), each in index order, then one end record (tag 0, length
//! 0) and nothing after it. Every length is checked against its limit before
//! the bytes are read, so a damaged length never makes a reader allocate
//! more than one chunk.
//!
//! The index lists each root and object by kind, id and the BLAKE3 hash of
//! its whole encoded envelope, and each chunk by hash and size. So once the
//! index signature verifies, every byte of the file is covered: a flipped
//! byte fails a hash, a signature or a structural check. [`BundleReader`]
//! checks the file against the index exactly (nothing extra, nothing
//! missing, no other order) while it streams records one at a time. The
//! index signature and the root chain are the caller's checks, because they
//! depend on what the caller already trusts.

pub mod reports;

use std::io::{self, Read, Write};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::actions::body_fields;
use crate::envelope::{Body, Kind, Signed, VerifyError};
use crate::hash::Hash;
use crate::limits;

/// First bytes of every bundle file.
pub const MAGIC: [u8; 8] = *b"PMBUNDLE";

/// Format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Most signed objects one bundle may carry, roots not counted.
pub const MAX_OBJECTS: usize = 16 * 1024;

/// Most chunks one bundle index may list. The index itself must also fit in
/// [`limits::MAX_ENVELOPE_BYTES`], which allows about 28 000 chunk entries.
pub const MAX_CHUNKS: usize = 64 * 1024;

const TAG_END: u8 = 0;
const TAG_ROOT: u8 = 1;
const TAG_INDEX: u8 = 2;
const TAG_OBJECT: u8 = 3;
const TAG_CHUNK: u8 = 4;

/// A root or other signed object as listed in a bundle index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// Kind of the object.
    pub kind: Kind,
    /// Object id: BLAKE3 of the payload.
    pub id: Hash,
    /// BLAKE3 of the whole encoded envelope, signatures included.
    pub envelope: Hash,
    /// Length of the encoded envelope in bytes.
    pub size: u32,
}

impl ObjectEntry {
    /// Describes `signed` as an index entry.
    pub fn of(signed: &Signed) -> Self {
        let bytes = signed.to_bytes();
        ObjectEntry {
            kind: signed.kind,
            id: signed.id(),
            envelope: Hash::of(&bytes),
            size: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        }
    }
}

/// A chunk as listed in a bundle index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    /// BLAKE3 of the chunk bytes.
    pub hash: Hash,
    /// Length of the chunk in bytes.
    pub size: u32,
}

/// Body of a signed bundle index, signed by the `patch` role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleIndex {
    /// Fleet the bundle is for; it must match the importing node's root.
    pub fleet: String,
    /// Version of the index, only growing; the signer uses unix seconds.
    pub revision: u64,
    /// When the bundle was signed; importing nodes compare it with their
    /// clock.
    pub issued: Timestamp,
    /// After this time the bundle is not imported.
    pub expires: Timestamp,
    /// Id of the previous bundle's index when this one leaves out what that
    /// bundle carried.
    pub since: Option<Hash>,
    /// Root versions in the file, oldest first.
    pub roots: Vec<ObjectEntry>,
    /// Signed objects in the file, in file order.
    pub objects: Vec<ObjectEntry>,
    /// Chunks in the file, in file order.
    pub chunks: Vec<ChunkEntry>,
}

body_fields!(BundleIndex, Kind::BundleIndex, |this| format!(
    "bundle/{}",
    this.fleet
));

/// Error reading or writing a bundle. Offsets count bytes from the
/// start of the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The underlying reader or writer failed.
    #[error("bundle I/O failed at byte {offset}: {source}")]
    Io {
        /// Offset of the failed operation.
        offset: u64,
        /// I/O error.
        source: io::Error,
    },
    /// The file ends early.
    #[error("bundle is truncated at byte {offset} (expected {expected}); the copy is incomplete")]
    Truncated {
        /// Length of the file that was read.
        offset: u64,
        /// Item expected next.
        expected: &'static str,
    },
    /// The file does not start with [`MAGIC`].
    #[error("not a patchmesh bundle (expected magic \"PMBUNDLE\", found {found:?})")]
    BadMagic {
        /// The first bytes found.
        found: String,
    },
    /// The format version is not [`FORMAT_VERSION`].
    #[error("bundle format version {version} is not supported (expected {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// Version found.
        version: u32,
    },
    /// A length field or a list exceeds its limit.
    #[error("{what} at byte {offset} is {size}, over the limit of {limit}")]
    Oversize {
        /// Offset of the record with the length field.
        offset: u64,
        /// Measured quantity.
        what: &'static str,
        /// Declared size.
        size: u64,
        /// Limit.
        limit: u64,
    },
    /// A record of another type than the layout allows here.
    #[error("unexpected record type {tag} at byte {offset} (expected {expected})")]
    UnexpectedRecord {
        /// Offset of the record.
        offset: u64,
        /// Tag found.
        tag: u8,
        /// Record expected here.
        expected: &'static str,
    },
    /// A record does not decode.
    #[error("malformed {what} at byte {offset}: {source}")]
    Malformed {
        /// Offset of the record.
        offset: u64,
        /// Decoded item.
        what: &'static str,
        /// Decoder error.
        source: VerifyError,
    },
    /// A record is not one the index lists at this position.
    #[error("{what} at byte {offset} does not match the index: {detail}")]
    NotInIndex {
        /// Offset of the record.
        offset: u64,
        /// Record description.
        what: String,
        /// Difference from the index entry.
        detail: String,
    },
    /// The index lists more items than the file holds.
    #[error("bundle holds {found} {what} but its index lists {listed}")]
    Missing {
        /// Missing item type.
        what: &'static str,
        /// Items found.
        found: usize,
        /// Items listed.
        listed: usize,
    },
    /// Bytes follow the end record.
    #[error("unexpected data after the end of the bundle at byte {offset}")]
    TrailingData {
        /// Offset of the first extra byte.
        offset: u64,
    },
    /// Items were written or read in another order than the index lists.
    #[error("bundle items out of index order: {0}")]
    OutOfOrder(String),
}

/// Counts bytes moved through a reader or writer, for error offsets.
struct Counted<T> {
    inner: T,
    offset: u64,
}

/// Streams a bundle and checks it against its index.
///
/// [`BundleReader::open`] reads the roots and the index. Then
/// [`BundleReader::next_object`] returns each object and
/// [`BundleReader::next_chunk`] each chunk, holding at most one in memory,
/// and [`BundleReader::finish`] checks the end record.
pub struct BundleReader<R> {
    input: Counted<R>,
    roots: Vec<Signed>,
    index: Signed,
    body: BundleIndex,
    objects_read: usize,
    chunks_read: usize,
    /// A record header read ahead while looking for the next object.
    pending: Option<(u64, u8, u32)>,
}

impl<R: Read> BundleReader<R> {
    /// Reads the header, the root records and the index, and checks every
    /// root against the index.
    pub fn open(reader: R) -> Result<Self, BundleError> {
        let mut input = Counted {
            inner: reader,
            offset: 0,
        };
        let mut magic = [0u8; 8];
        input.read_exact(&mut magic, "the bundle magic")?;
        if magic != MAGIC {
            return Err(BundleError::BadMagic {
                found: String::from_utf8_lossy(&magic).into_owned(),
            });
        }
        let mut version = [0u8; 4];
        input.read_exact(&mut version, "the format version")?;
        let version = u32::from_le_bytes(version);
        if version != FORMAT_VERSION {
            return Err(BundleError::UnsupportedVersion { version });
        }

        // Roots come first, then exactly one index record.
        let mut roots = Vec::new();
        let (index_offset, index_bytes) = loop {
            let (offset, tag, len) = input.read_header("a root or the index record")?;
            match tag {
                TAG_ROOT if roots.len() < limits::MAX_ROOT_HOPS => {
                    let bytes = input.read_envelope(offset, len, "root")?;
                    roots.push((offset, bytes));
                }
                TAG_ROOT => {
                    return Err(BundleError::Oversize {
                        offset,
                        what: "root count",
                        size: roots.len() as u64 + 1,
                        limit: limits::MAX_ROOT_HOPS as u64,
                    })
                }
                TAG_INDEX => break (offset, input.read_envelope(offset, len, "index")?),
                tag => {
                    return Err(BundleError::UnexpectedRecord {
                        offset,
                        tag,
                        expected: "a root or the index record",
                    })
                }
            }
        };

        let index = decode_envelope(index_offset, &index_bytes, "bundle index")?;
        let body: BundleIndex = index
            .decode_body()
            .map_err(|source| BundleError::Malformed {
                offset: index_offset,
                what: "bundle index",
                source,
            })?;
        check_counts(index_offset, &body)?;
        if roots.len() != body.roots.len() {
            return Err(BundleError::NotInIndex {
                offset: index_offset,
                what: "root chain".into(),
                detail: format!(
                    "{} root record(s) precede the index, which lists {}",
                    roots.len(),
                    body.roots.len()
                ),
            });
        }
        let mut decoded_roots = Vec::with_capacity(roots.len());
        for ((offset, bytes), entry) in roots.iter().zip(&body.roots) {
            let signed = decode_envelope(*offset, bytes, "root")?;
            check_entry(*offset, bytes, &signed, entry)?;
            decoded_roots.push(signed);
        }

        Ok(BundleReader {
            input,
            roots: decoded_roots,
            index,
            body,
            objects_read: 0,
            chunks_read: 0,
            pending: None,
        })
    }

    /// Root versions carried, oldest first, matched against the index but
    /// not verified.
    pub fn roots(&self) -> &[Signed] {
        &self.roots
    }

    /// The signed index, not verified.
    pub fn index(&self) -> &Signed {
        &self.index
    }

    /// The decoded index body.
    pub fn body(&self) -> &BundleIndex {
        &self.body
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.input.offset
    }

    /// Reads the next signed object; `None` after the last one the index
    /// lists. Its envelope hash, id and kind match its index entry.
    pub fn next_object(&mut self) -> Result<Option<Signed>, BundleError> {
        let (offset, tag, len) = self.next_header("an object record")?;
        if tag != TAG_OBJECT {
            self.pending = Some((offset, tag, len));
            if self.objects_read < self.body.objects.len() {
                return Err(BundleError::Missing {
                    what: "object(s)",
                    found: self.objects_read,
                    listed: self.body.objects.len(),
                });
            }
            return Ok(None);
        }
        let Some(entry) = self.body.objects.get(self.objects_read) else {
            return Err(BundleError::NotInIndex {
                offset,
                what: "object record".into(),
                detail: format!("the index lists only {} object(s)", self.body.objects.len()),
            });
        };
        let bytes = self.input.read_envelope(offset, len, "object")?;
        let signed = decode_envelope(offset, &bytes, "signed object")?;
        check_entry(offset, &bytes, &signed, entry)?;
        self.objects_read += 1;
        Ok(Some(signed))
    }

    /// Reads the next chunk; `None` after the last one the index lists.
    /// Every object must be read first. The bytes hash to the entry returned
    /// with them.
    pub fn next_chunk(&mut self) -> Result<Option<(ChunkEntry, Vec<u8>)>, BundleError> {
        if self.objects_read < self.body.objects.len() {
            return Err(BundleError::OutOfOrder(
                "chunks can only be read after every object".into(),
            ));
        }
        let (offset, tag, len) = self.next_header("a chunk record")?;
        if tag != TAG_CHUNK {
            self.pending = Some((offset, tag, len));
            if tag == TAG_OBJECT {
                return Err(BundleError::NotInIndex {
                    offset,
                    what: "object record".into(),
                    detail: format!("the index lists only {} object(s)", self.body.objects.len()),
                });
            }
            if self.chunks_read < self.body.chunks.len() {
                return Err(BundleError::Missing {
                    what: "chunk(s)",
                    found: self.chunks_read,
                    listed: self.body.chunks.len(),
                });
            }
            return Ok(None);
        }
        let Some(entry) = self.body.chunks.get(self.chunks_read).copied() else {
            return Err(BundleError::NotInIndex {
                offset,
                what: "chunk record".into(),
                detail: format!("the index lists only {} chunk(s)", self.body.chunks.len()),
            });
        };
        if len != entry.size {
            return Err(BundleError::NotInIndex {
                offset,
                what: format!("chunk {}", entry.hash.short()),
                detail: format!("{len} bytes, the index lists {}", entry.size),
            });
        }
        let bytes = self
            .input
            .read_body(offset, len, limits::MAX_CHUNK_BYTES, "chunk")?;
        let actual = Hash::of(&bytes);
        if actual != entry.hash {
            return Err(BundleError::NotInIndex {
                offset,
                what: format!("chunk {}", entry.hash.short()),
                detail: format!("its bytes hash to {}", actual.short()),
            });
        }
        self.chunks_read += 1;
        Ok(Some((entry, bytes)))
    }

    /// Checks that the end record follows the last chunk and that nothing
    /// follows it.
    pub fn finish(mut self) -> Result<(), BundleError> {
        if self.next_chunk()?.is_some() {
            return Err(BundleError::OutOfOrder(
                "finish called before every chunk was read".into(),
            ));
        }
        let (offset, tag, len) = self.next_header("the end record")?;
        if tag != TAG_END || len != 0 {
            return Err(BundleError::UnexpectedRecord {
                offset,
                tag,
                expected: "the end record",
            });
        }
        let mut extra = [0u8; 1];
        match self.input.inner.read(&mut extra) {
            Ok(0) => Ok(()),
            Ok(_) => Err(BundleError::TrailingData {
                offset: self.input.offset,
            }),
            Err(source) => Err(BundleError::Io {
                offset: self.input.offset,
                source,
            }),
        }
    }

    fn next_header(&mut self, expected: &'static str) -> Result<(u64, u8, u32), BundleError> {
        match self.pending.take() {
            Some(header) => Ok(header),
            None => self.input.read_header(expected),
        }
    }
}

fn check_counts(offset: u64, body: &BundleIndex) -> Result<(), BundleError> {
    let lists = [
        ("index root count", body.roots.len(), limits::MAX_ROOT_HOPS),
        ("index object count", body.objects.len(), MAX_OBJECTS),
        ("index chunk count", body.chunks.len(), MAX_CHUNKS),
    ];
    for (what, size, limit) in lists {
        if size > limit {
            return Err(BundleError::Oversize {
                offset,
                what,
                size: size as u64,
                limit: limit as u64,
            });
        }
    }
    Ok(())
}

/// Decodes an envelope and rejects any encoding other than the one this
/// code writes, so trailing or padded bytes cannot hide in a record.
fn decode_envelope(offset: u64, bytes: &[u8], what: &'static str) -> Result<Signed, BundleError> {
    let signed = Signed::from_bytes(bytes).map_err(|source| BundleError::Malformed {
        offset,
        what,
        source,
    })?;
    if signed.to_bytes() != bytes {
        return Err(BundleError::Malformed {
            offset,
            what,
            source: VerifyError::Malformed {
                what,
                reason: "bytes are not in canonical encoding".into(),
            },
        });
    }
    Ok(signed)
}

fn check_entry(
    offset: u64,
    bytes: &[u8],
    signed: &Signed,
    entry: &ObjectEntry,
) -> Result<(), BundleError> {
    let what = format!("{} {}", signed.kind, signed.id().short());
    let mismatch = |detail: String| BundleError::NotInIndex {
        offset,
        what: what.clone(),
        detail,
    };
    if signed.kind != entry.kind || signed.id() != entry.id {
        return Err(mismatch(format!(
            "the index lists {} {} here",
            entry.kind,
            entry.id.short()
        )));
    }
    let envelope = Hash::of(bytes);
    if envelope != entry.envelope || bytes.len() as u64 != u64::from(entry.size) {
        return Err(mismatch(format!(
            "its envelope ({} bytes) hashes to {}, the index lists {} bytes hashing to {}",
            bytes.len(),
            envelope.short(),
            entry.size,
            entry.envelope.short()
        )));
    }
    Ok(())
}

impl<R: Read> Counted<R> {
    fn read_exact(&mut self, buffer: &mut [u8], expected: &'static str) -> Result<(), BundleError> {
        let mut filled = 0;
        while filled < buffer.len() {
            match self.inner.read(&mut buffer[filled..]) {
                Ok(0) => {
                    self.offset += filled as u64;
                    return Err(BundleError::Truncated {
                        offset: self.offset,
                        expected,
                    });
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(BundleError::Io {
                        offset: self.offset + filled as u64,
                        source,
                    })
                }
            }
        }
        self.offset += buffer.len() as u64;
        Ok(())
    }

    /// Reads a record header: its offset, tag and length.
    fn read_header(&mut self, expected: &'static str) -> Result<(u64, u8, u32), BundleError> {
        let offset = self.offset;
        let mut header = [0u8; 5];
        self.read_exact(&mut header, expected)?;
        let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
        Ok((offset, header[0], len))
    }

    fn read_envelope(
        &mut self,
        offset: u64,
        len: u32,
        what: &'static str,
    ) -> Result<Vec<u8>, BundleError> {
        self.read_body(offset, len, limits::MAX_ENVELOPE_BYTES as u32, what)
    }

    /// Reads a record body of `len` bytes after checking `len` against
    /// `limit`.
    fn read_body(
        &mut self,
        offset: u64,
        len: u32,
        limit: u32,
        what: &'static str,
    ) -> Result<Vec<u8>, BundleError> {
        if len > limit {
            return Err(BundleError::Oversize {
                offset,
                what,
                size: len.into(),
                limit: limit.into(),
            });
        }
        let mut bytes = vec![0u8; len as usize];
        self.read_exact(&mut bytes, what)?;
        Ok(bytes)
    }
}

impl<W: Write> Counted<W> {
    fn write_record(&mut self, tag: u8, bytes: &[u8]) -> Result<(), BundleError> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| BundleError::OutOfOrder(format!("record of {} bytes", bytes.len())))?;
        let mut header = [tag, 0, 0, 0, 0];
        header[1..].copy_from_slice(&len.to_le_bytes());
        self.write_all(&header)?;
        self.write_all(bytes)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), BundleError> {
        self.inner
            .write_all(bytes)
            .map_err(|source| BundleError::Io {
                offset: self.offset,
                source,
            })?;
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

/// Writes a bundle in the layout [`BundleReader`] reads, checking every
/// object and chunk against the index as it goes.
pub struct BundleWriter<W: Write> {
    output: Counted<W>,
    body: BundleIndex,
    objects_written: usize,
    chunks_written: usize,
}

impl<W: Write> BundleWriter<W> {
    /// Writes the header, `roots` and the signed `index`. The roots must be
    /// the ones the index lists, in its order.
    pub fn new(writer: W, roots: &[Signed], index: &Signed) -> Result<Self, BundleError> {
        let body: BundleIndex = index
            .decode_body()
            .map_err(|source| BundleError::Malformed {
                offset: 0,
                what: "bundle index",
                source,
            })?;
        let listed: Vec<ObjectEntry> = roots.iter().map(ObjectEntry::of).collect();
        if listed != body.roots {
            return Err(BundleError::OutOfOrder(
                "the roots given differ from the roots the index lists".into(),
            ));
        }

        let mut output = Counted {
            inner: writer,
            offset: 0,
        };
        output.write_all(&MAGIC)?;
        output.write_all(&FORMAT_VERSION.to_le_bytes())?;
        for root in roots {
            output.write_record(TAG_ROOT, &root.to_bytes())?;
        }
        output.write_record(TAG_INDEX, &index.to_bytes())?;
        Ok(BundleWriter {
            output,
            body,
            objects_written: 0,
            chunks_written: 0,
        })
    }

    /// Writes the next object; it must be the one the index lists next.
    pub fn write_object(&mut self, signed: &Signed) -> Result<(), BundleError> {
        let entry = ObjectEntry::of(signed);
        if self.body.objects.get(self.objects_written) != Some(&entry) {
            return Err(BundleError::OutOfOrder(format!(
                "{} {} is not the object the index lists next",
                signed.kind,
                signed.id().short()
            )));
        }
        self.output.write_record(TAG_OBJECT, &signed.to_bytes())?;
        self.objects_written += 1;
        Ok(())
    }

    /// Writes the next chunk, after every object; its hash and size must be
    /// the ones the index lists next.
    pub fn write_chunk(&mut self, bytes: &[u8]) -> Result<(), BundleError> {
        if self.objects_written != self.body.objects.len() {
            return Err(BundleError::OutOfOrder(format!(
                "{} of {} objects written before the first chunk",
                self.objects_written,
                self.body.objects.len()
            )));
        }
        let entry = ChunkEntry {
            hash: Hash::of(bytes),
            size: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        };
        if self.body.chunks.get(self.chunks_written) != Some(&entry) {
            return Err(BundleError::OutOfOrder(format!(
                "chunk {} is not the chunk the index lists next",
                entry.hash.short()
            )));
        }
        self.output.write_record(TAG_CHUNK, bytes)?;
        self.chunks_written += 1;
        Ok(())
    }

    /// Writes the end record once everything the index lists is written and
    /// returns the writer with the number of bytes written.
    pub fn finish(mut self) -> Result<(W, u64), BundleError> {
        if self.objects_written != self.body.objects.len()
            || self.chunks_written != self.body.chunks.len()
        {
            return Err(BundleError::OutOfOrder(format!(
                "{} of {} objects and {} of {} chunks written",
                self.objects_written,
                self.body.objects.len(),
                self.chunks_written,
                self.body.chunks.len()
            )));
        }
        self.output.write_record(TAG_END, &[])?;
        self.output
            .inner
            .flush()
            .map_err(|source| BundleError::Io {
                offset: self.output.offset,
                source,
            })?;
        Ok((self.output.inner, self.output.offset))
    }
}

#[cfg(test)]
mod tests;
