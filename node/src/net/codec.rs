//! Framing of the two request-response protocols.
//!
//! Every frame is a 4-byte big-endian length followed by the body. The
//! length is checked against the protocol's limit before any body byte is
//! read, so a peer cannot make a node buffer more than one frame's limit.
//! The body buffer grows with the bytes that actually arrive, so a length
//! that promises more than the peer sends costs no memory.
//! Chunk responses skip postcard: a 1-byte tag followed by raw chunk bytes,
//! since that path moves every byte of every patch.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::StreamProtocol;
use patchmesh_protocol::limits;
use patchmesh_protocol::wire::{self, ChunkRequest, SyncRequest, SyncResponse};
use patchmesh_protocol::Hash;

async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    limit: usize,
    protocol: &'static str,
) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{protocol} frame of {len} bytes exceeds the limit of {limit} bytes"),
        ));
    }
    read_body(io, len, protocol).await
}

/// Bytes the body buffer grows by at first; later it doubles, up to the
/// frame's length.
const READ_STEP: usize = 64 * 1024;

/// Reads a body of exactly `len` bytes. Fails with `UnexpectedEof` naming
/// the byte counts when the stream ends first.
async fn read_body<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    len: usize,
    protocol: &'static str,
) -> io::Result<Vec<u8>> {
    let mut body: Vec<u8> = Vec::new();
    while body.len() < len {
        if body.len() == body.capacity() {
            let grow = body.capacity().max(READ_STEP).min(len - body.len());
            body.reserve_exact(grow);
        }
        let start = body.len();
        let end = body.capacity().min(len);
        body.resize(end, 0);
        let read = io.read(&mut body[start..]).await?;
        body.truncate(start + read);
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{protocol} frame cut short: the stream ended after {start} of {len} body bytes"
                ),
            ));
        }
    }
    Ok(body)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, parts: &[&[u8]]) -> io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    io.write_all(&len.to_be_bytes()).await?;
    for part in parts {
        io.write_all(part).await?;
    }
    io.close().await
}

fn invalid(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

/// A sync request as read from a peer: decoded, or the reason it was not.
#[derive(Debug)]
pub enum SyncInbound {
    /// A well-formed request.
    Request(SyncRequest),
    /// A frame over the limit, cut short, or whose body does not decode.
    /// Request-response 0.30 passes read errors of inbound streams to no
    /// one, so they come back as a value that the agent logs and penalises.
    Malformed(String),
}

/// Codec of `/patchmesh/sync/1`.
#[derive(Clone, Default)]
pub struct SyncCodec;

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncInbound;
    type Response = SyncResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncInbound> {
        let body = match read_frame(io, limits::MAX_CONTROL_FRAME_BYTES, wire::SYNC_PROTOCOL).await
        {
            Ok(body) => body,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ) =>
            {
                return Ok(SyncInbound::Malformed(error.to_string()));
            }
            Err(error) => return Err(error),
        };
        Ok(match wire::decode_sync(&body) {
            Ok(request) => SyncInbound::Request(request),
            Err(error) => SyncInbound::Malformed(error.to_string()),
        })
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncResponse> {
        let body = read_frame(io, limits::MAX_CONTROL_FRAME_BYTES, wire::SYNC_PROTOCOL).await?;
        wire::decode_sync(&body).map_err(invalid)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: SyncInbound,
    ) -> io::Result<()> {
        match request {
            SyncInbound::Request(request) => write_frame(io, &[&wire::encode_sync(&request)]).await,
            SyncInbound::Malformed(reason) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a malformed sync request is never sent: {reason}"),
            )),
        }
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: SyncResponse,
    ) -> io::Result<()> {
        write_frame(io, &[&wire::encode_sync(&response)]).await
    }
}

/// Reply of the chunk protocol.
#[derive(Debug)]
pub enum ChunkReply {
    /// The chunk's bytes (not yet verified by the receiver).
    Data(Vec<u8>),
    /// The responder does not hold the chunk.
    Missing,
}

const TAG_DATA: u8 = 0;
const TAG_MISSING: u8 = 1;

/// Codec of `/patchmesh/chunk/1`.
#[derive(Clone, Default)]
pub struct ChunkCodec;

impl request_response::Codec for ChunkCodec {
    type Protocol = StreamProtocol;
    type Request = ChunkRequest;
    type Response = ChunkReply;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<ChunkRequest> {
        let body = read_frame(io, 32, wire::CHUNK_PROTOCOL).await?;
        let hash: [u8; 32] = body
            .try_into()
            .map_err(|_| invalid("chunk request is not a 32-byte hash"))?;
        Ok(ChunkRequest { hash: Hash(hash) })
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<ChunkReply> {
        // The tag is read on its own so the chunk bytes land in their final
        // buffer without a copy.
        let mut head = [0u8; 5];
        io.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > limits::MAX_CHUNK_FRAME_BYTES {
            return Err(invalid(format!(
                "{} frame of {len} bytes exceeds the limit of {} bytes",
                wire::CHUNK_PROTOCOL,
                limits::MAX_CHUNK_FRAME_BYTES
            )));
        }
        if len == 0 {
            return Err(invalid(format!(
                "{} frame is empty (expected a tag byte)",
                wire::CHUNK_PROTOCOL
            )));
        }
        match head[4] {
            TAG_DATA => Ok(ChunkReply::Data(
                read_body(io, len - 1, wire::CHUNK_PROTOCOL).await?,
            )),
            TAG_MISSING if len == 1 => Ok(ChunkReply::Missing),
            _ => Err(invalid("chunk response has an unknown tag")),
        }
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: ChunkRequest,
    ) -> io::Result<()> {
        write_frame(io, &[&request.hash.0]).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: ChunkReply,
    ) -> io::Result<()> {
        match response {
            ChunkReply::Data(bytes) => write_frame(io, &[&[TAG_DATA], &bytes]).await,
            ChunkReply::Missing => write_frame(io, &[&[TAG_MISSING]]).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;

    fn frame(len: u32, body: &[u8]) -> Cursor<Vec<u8>> {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(body);
        Cursor::new(bytes)
    }

    #[test]
    fn whole_frame_is_read() {
        let body: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut io = frame(body.len() as u32, &body);
        let read = block_on(read_frame(&mut io, 1 << 20, "test")).expect("frame reads");
        assert_eq!(read, body);
    }

    #[test]
    fn frame_cut_short_names_the_counts() {
        let mut io = frame(1000, &[7u8; 500]);
        let error = block_on(read_frame(&mut io, 4096, "test")).expect_err("frame is cut short");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            error.to_string().contains("500 of 1000"),
            "error does not name the counts: {error}"
        );
    }

    #[test]
    fn frame_over_the_limit_is_rejected_before_its_body() {
        let mut io = frame(4097, &[]);
        let error = block_on(read_frame(&mut io, 4096, "test")).expect_err("frame is too large");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("4097"), "{error}");
    }
}
