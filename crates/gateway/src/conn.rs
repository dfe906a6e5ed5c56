//! A byte stream with a read buffer that yields whole frames. Frames come back as slices
//! of the buffer so the relay can forward them without copying or re-encoding.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Error;
use wire::Header;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type BoxIo = Box<dyn Io>;

const READ_CHUNK: usize = 16 * 1024;

/// Reads frames from any async reader.
pub struct Frames<R> {
    pub io: R,
    pub buf: BytesMut,
    max: usize,
}

impl<R: AsyncRead + Unpin> Frames<R> {
    pub fn new(io: R, max: usize) -> Self {
        Frames { io, buf: BytesMut::with_capacity(READ_CHUNK), max }
    }

    pub fn with_buffer(io: R, buf: BytesMut, max: usize) -> Self {
        Frames { io, buf, max }
    }

    /// Reads more bytes; `Ok(false)` on a clean end of stream.
    pub async fn fill(&mut self) -> Result<bool, Error> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        Ok(self.io.read_buf(&mut self.buf).await? > 0)
    }

    /// Header of the next frame if it is complete in the buffer.
    pub fn complete(&mut self) -> Result<Option<Header>, Error> {
        match wire::peek(&self.buf, self.max)? {
            Some(h) if h.total <= self.buf.len() => Ok(Some(h)),
            Some(h) => {
                self.buf.reserve(h.total - self.buf.len());
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Waits for one whole frame and takes it out of the buffer.
    pub async fn next(&mut self) -> Result<Option<(Header, BytesMut)>, Error> {
        loop {
            if let Some(h) = self.complete()? {
                return Ok(Some((h, self.buf.split_to(h.total))));
            }
            if !self.fill().await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(Error::Protocol(wire::Error::Malformed("truncated frame")))
                };
            }
        }
    }

    /// Waits for one untagged startup packet.
    pub async fn next_startup(&mut self) -> Result<Option<BytesMut>, Error> {
        loop {
            if let Some(len) = wire::peek_startup(&self.buf)? {
                if len <= self.buf.len() {
                    return Ok(Some(self.buf.split_to(len)));
                }
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    pub fn consume(&mut self, n: usize) {
        self.buf.advance(n);
    }
}

pub async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> Result<(), Error> {
    w.write_all(bytes).await?;
    Ok(())
}
