//! The bulk protocol of [`super::RelayClient`]. One client writes bytes on
//! a stream and another counts what arrives, so a test can see how much a
//! relay circuit carried before the relay cut it.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::StreamProtocol;

/// Protocol name of the bulk stream. The sender writes bytes until it has
/// written the requested count or the stream breaks, and the receiver reads
/// until the end of the stream. Nodes do not speak it. Two clients use it
/// through a relay circuit, so the relay carries every byte.
pub const BULK_PROTOCOL: &str = "/patchmesh-test/bulk/1";

/// Block size in bytes of each write of the bulk sender and each read of the
/// receiver.
const BULK_BLOCK: usize = 64 * 1024;

/// Byte counts of the bulk protocol, for assertions.
#[derive(Debug, Default)]
pub struct BulkCounters {
    /// Bytes of the blocks this client finished writing on bulk streams it
    /// opened. A block cut mid-write is not counted, so the receiver may
    /// count a little more.
    pub sent: AtomicU64,
    /// Bytes this client read on bulk streams others opened.
    pub received: AtomicU64,
}

/// Codec of the bulk protocol. The request travels as that many filler
/// bytes, and the response is the receiver's count as 8 big-endian bytes.
#[derive(Clone)]
pub(super) struct BulkCodec {
    pub(super) counters: Arc<BulkCounters>,
}

impl request_response::Codec for BulkCodec {
    type Protocol = StreamProtocol;
    /// Number of bytes to push.
    type Request = u64;
    /// Number of bytes the receiver read.
    type Response = u64;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<u64> {
        let mut block = vec![0u8; BULK_BLOCK];
        let mut total = 0u64;
        loop {
            let read = io.read(&mut block).await?;
            if read == 0 {
                return Ok(total);
            }
            total += read as u64;
            self.counters
                .received
                .fetch_add(read as u64, Ordering::Relaxed);
        }
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<u64> {
        let mut count = [0u8; 8];
        io.read_exact(&mut count).await?;
        Ok(u64::from_be_bytes(count))
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        len: u64,
    ) -> io::Result<()> {
        let block = vec![0x5Au8; BULK_BLOCK];
        let mut written = 0u64;
        while written < len {
            let size = (len - written).min(BULK_BLOCK as u64) as usize;
            io.write_all(&block[..size]).await?;
            written += size as u64;
            self.counters.sent.fetch_add(size as u64, Ordering::Relaxed);
        }
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        count: u64,
    ) -> io::Result<()> {
        io.write_all(&count.to_be_bytes()).await?;
        io.close().await
    }
}
