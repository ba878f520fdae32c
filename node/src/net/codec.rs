//! Framing of the two request-response protocols.
//!
//! Every frame is a 4-byte big-endian length followed by the body. The
//! length is checked against the protocol's limit before any body byte is
//! read, so a peer cannot make a node buffer more than one frame's limit.
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
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
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

/// Codec of `/patchmesh/sync/1`.
#[derive(Clone, Default)]
pub struct SyncCodec;

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncRequest> {
        let body = read_frame(io, limits::MAX_CONTROL_FRAME_BYTES, wire::SYNC_PROTOCOL).await?;
        wire::decode_sync(&body).map_err(invalid)
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
        request: SyncRequest,
    ) -> io::Result<()> {
        write_frame(io, &[&wire::encode_sync(&request)]).await
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
            TAG_DATA => {
                let mut body = vec![0u8; len - 1];
                io.read_exact(&mut body).await?;
                Ok(ChunkReply::Data(body))
            }
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
