//! PostgreSQL protocol v3 on the wire: length-bounded frame reading, typed views of the
//! messages the gateway must understand, builders for the few it writes itself, and
//! SCRAM-SHA-256 / MD5 authentication. Frames the gateway does not change are never
//! re-encoded: callers forward the original bytes.
#![forbid(unsafe_code)]

pub mod auth;
pub mod backend;
pub mod frontend;
mod frame;
mod write;

pub use frame::{peek, peek_startup, Header, MAX_MESSAGE_LEN, MAX_STARTUP_LEN};
pub use write::Builder;

/// One error type for the crate. Messages describe the protocol fault, never payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid message length {0}")]
    BadLength(i64),
    #[error("message of {len} bytes is over the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("malformed {0} message")]
    Malformed(&'static str),
    #[error("unsupported protocol version {0}.{1}")]
    UnsupportedVersion(u16, u16),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A cursor over a message body for the typed views.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn fail<T>(&self) -> Result<T> {
        Err(Error::Malformed(self.what))
    }

    pub(crate) fn cstr(&mut self) -> Result<&'a [u8]> {
        match self.buf.iter().position(|&b| b == 0) {
            Some(i) => {
                let s = &self.buf[..i];
                self.buf = &self.buf[i + 1..];
                Ok(s)
            }
            None => self.fail(),
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        match self.buf.split_first() {
            Some((b, rest)) => {
                self.buf = rest;
                Ok(*b)
            }
            None => self.fail(),
        }
    }

    pub(crate) fn i16(&mut self) -> Result<i16> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self) -> Result<i32> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return self.fail();
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}
