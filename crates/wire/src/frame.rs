//! Frame boundaries. A frame is a one-byte tag, a big-endian i32 length that counts
//! itself, and a body; the startup-phase packets have no tag.

use crate::{Error, Result};

/// PostgreSQL refuses any message over MaxAllocSize - 1 bytes; so do we.
pub const MAX_MESSAGE_LEN: usize = 0x3fff_ffff;
/// PostgreSQL's own bound on a startup packet.
pub const MAX_STARTUP_LEN: usize = 10_000;

/// Where the next frame in a buffer lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    /// Bytes of the whole frame, tag and length included.
    pub total: usize,
}

impl Header {
    pub fn body<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        &frame[5..self.total]
    }
}

/// Reads the header at the front of `buf`: `Ok(None)` when fewer than five bytes are there.
/// The frame itself may still be incomplete; compare `total` with the buffer length.
pub fn peek(buf: &[u8], max: usize) -> Result<Option<Header>> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(Error::BadLength(len as i64));
    }
    let len = len as usize;
    if len > max {
        return Err(Error::TooLong { len, max });
    }
    Ok(Some(Header { tag: buf[0], total: len + 1 }))
}

/// Length of the untagged startup-phase packet at the front of `buf`, if its length word
/// is complete.
pub fn peek_startup(buf: &[u8]) -> Result<Option<usize>> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 || len as usize > MAX_STARTUP_LEN {
        return Err(Error::BadLength(len as i64));
    }
    Ok(Some(len as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bounds() {
        assert_eq!(peek(b"Q\0\0", 100), Ok(None));
        assert_eq!(peek(b"Q\0\0\0\x04", 100), Ok(Some(Header { tag: b'Q', total: 5 })));
        assert_eq!(peek(b"Q\0\0\0\x03", 100), Err(Error::BadLength(3)));
        assert_eq!(peek(b"Q\xff\xff\xff\xff", 100), Err(Error::BadLength(-1)));
        assert!(matches!(peek(b"Q\0\0\x01\0", 100), Err(Error::TooLong { len: 256, .. })));
    }

    #[test]
    fn startup_bounds() {
        assert_eq!(peek_startup(b"\0\0"), Ok(None));
        assert_eq!(peek_startup(b"\0\0\0\x08"), Ok(Some(8)));
        assert!(peek_startup(b"\0\0\0\x07").is_err());
        assert!(peek_startup(b"\x7f\0\0\0").is_err());
    }
}
