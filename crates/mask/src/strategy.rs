//! Masking strategies and the keyed hash behind `hash`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const DEFAULT_PLACEHOLDER: &str = "[REDACTED]";

/// How a sensitive value (or a detected substring) is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// A fixed placeholder.
    Redact { placeholder: Box<str> },
    /// The last `keep` characters stay, the others become `mask`. A value of `keep`
    /// characters or fewer is masked entirely.
    Partial { keep: usize, mask: char },
    /// Lowercase hex of HMAC-SHA256(key, value), cut to `hex_len` (1..=64) characters.
    Hash { hex_len: usize },
    /// SQL NULL. In content-scanning mode a value with any detection becomes NULL.
    Null,
}

impl Strategy {
    pub fn redact() -> Self {
        Strategy::Redact {
            placeholder: DEFAULT_PLACEHOLDER.into(),
        }
    }

    pub fn partial(keep: usize) -> Self {
        Strategy::Partial { keep, mask: '*' }
    }

    pub fn hash(hex_len: usize) -> Result<Self, crate::Error> {
        if !(1..=64).contains(&hex_len) {
            return Err(crate::Error::BadOption(
                "hash length must be 1..=64 hex characters",
            ));
        }
        Ok(Strategy::Hash { hex_len })
    }

    /// Appends the replacement for `src` to `out` as UTF-8 text. Not for `Null`.
    pub(crate) fn write_text(&self, key: &HashKey, src: &str, out: &mut Vec<u8>) {
        match self {
            Strategy::Redact { placeholder } => out.extend_from_slice(placeholder.as_bytes()),
            Strategy::Partial { keep, mask } => write_partial(src, *keep, *mask, out),
            Strategy::Hash { hex_len } => key.write_hex(src.as_bytes(), *hex_len, out),
            Strategy::Null => {}
        }
    }
}

fn write_partial(src: &str, keep: usize, mask: char, out: &mut Vec<u8>) {
    let n = src.chars().count();
    let hidden = if n > keep { n - keep } else { n };
    let mut buf = [0u8; 4];
    let m = mask.encode_utf8(&mut buf).as_bytes();
    for _ in 0..hidden {
        out.extend_from_slice(m);
    }
    if let Some((idx, _)) = src.char_indices().nth(hidden) {
        out.extend_from_slice(&src.as_bytes()[idx..]);
    }
}

/// The secret key of the `hash` strategy, with its HMAC state precomputed.
#[derive(Clone)]
pub struct HashKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

impl HashKey {
    pub fn new(key: &[u8]) -> Result<Self, crate::Error> {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .map_err(|_| crate::Error::BadOption("hash key"))?;
        Ok(HashKey { mac })
    }

    pub(crate) fn digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = self.mac.clone();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    pub(crate) fn write_hex(&self, src: &[u8], hex_len: usize, out: &mut Vec<u8>) {
        let d = self.digest(&[src]);
        write_hex(&d, hex_len.min(64), out);
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn write_hex(bytes: &[u8], hex_len: usize, out: &mut Vec<u8>) {
    for (i, &b) in bytes.iter().enumerate() {
        if 2 * i >= hex_len {
            break;
        }
        out.push(HEX[usize::from(b >> 4)]);
        if 2 * i + 1 < hex_len {
            out.push(HEX[usize::from(b & 0xf)]);
        }
    }
}
