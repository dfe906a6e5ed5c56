//! Records, their hash chain, and signed checkpoints.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

pub type Hash = [u8; 32];

/// The `prev_hash` of the first record of a stream.
pub const GENESIS: Hash = [0; 32];

const RECORD_DOMAIN: &[u8] = b"drawbridge-audit-record-v1";
const CHECKPOINT_DOMAIN: &[u8] = b"drawbridge-audit-checkpoint-v1";

/// One link of a stream's chain. `event` is the exact JSON text that was hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub stream: String,
    pub seq: u64,
    /// RFC 3339 UTC with microseconds.
    pub at: String,
    pub prev_hash: Hash,
    pub hash: Hash,
    /// Not hashed: copies of `event` fields kept in their own columns for searching.
    pub kind: String,
    pub session: Option<String>,
    pub event: String,
}

/// A record's fields borrowed from wherever they live: what the stores write and the journal
/// holds. The writer gets records in this form straight from the journal line, without an
/// owned copy of each field.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub stream: &'a str,
    pub seq: u64,
    pub at: &'a str,
    pub prev_hash: &'a Hash,
    pub hash: &'a Hash,
    pub kind: &'a str,
    pub session: Option<&'a str>,
    pub event: &'a str,
}

/// Where `at` and `event` ended up in a written line.
pub(crate) struct LineSpans {
    pub(crate) at: std::ops::Range<usize>,
    pub(crate) event: std::ops::Range<usize>,
}

impl RecordRef<'_> {
    pub fn to_record(&self) -> Record {
        Record {
            stream: self.stream.to_owned(),
            seq: self.seq,
            at: self.at.to_owned(),
            prev_hash: *self.prev_hash,
            hash: *self.hash,
            kind: self.kind.to_owned(),
            session: self.session.map(str::to_owned),
            event: self.event.to_owned(),
        }
    }

    /// [`Record::to_json_line`] appended to `out`, without the allocations of formatting.
    pub(crate) fn write_json_line(&self, out: &mut String) -> LineSpans {
        out.push_str("{\"stream\":");
        if self.stream.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            out.push('"');
            out.push_str(self.stream);
            out.push('"');
        } else {
            // Serialising a string cannot fail.
            out.push_str(&serde_json::to_string(self.stream).unwrap_or_default());
        }
        out.push_str(",\"seq\":");
        out.push_str(itoa::Buffer::new().format(self.seq));
        out.push_str(",\"at\":\"");
        let at = out.len();
        out.push_str(self.at);
        let at = at..out.len();
        out.push_str("\",\"prev_hash\":\"");
        out.push_str(HashHex::new(self.prev_hash).as_str());
        out.push_str("\",\"hash\":\"");
        out.push_str(HashHex::new(self.hash).as_str());
        out.push_str("\",\"event\":");
        let event = out.len();
        out.push_str(self.event);
        let event = event..out.len();
        out.push('}');
        LineSpans { at, event }
    }
}

/// A hash as lower-case hex, on the stack: `hex::encode` builds its string a char at a time,
/// which showed up in profiles of the audit path.
pub(crate) struct HashHex([u8; 64]);

impl HashHex {
    pub(crate) fn new(hash: &Hash) -> HashHex {
        let mut buf = [0; 64];
        // Cannot fail: the buffer is exactly twice the hash's length.
        let _ = hex::encode_to_slice(hash, &mut buf);
        HashHex(buf)
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn put_bytes(h: &mut Sha256, bytes: &[u8]) {
    // Length prefixes keep field boundaries unambiguous.
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// SHA-256 over a length-prefixed encoding of (stream, seq, at, prev_hash, event JSON).
pub fn record_hash(stream: &str, seq: u64, at: &str, prev_hash: &Hash, event: &str) -> Hash {
    let mut h = Sha256::new();
    h.update(RECORD_DOMAIN);
    put_bytes(&mut h, stream.as_bytes());
    h.update(seq.to_be_bytes());
    put_bytes(&mut h, at.as_bytes());
    h.update(prev_hash);
    put_bytes(&mut h, event.as_bytes());
    h.finalize().into()
}

impl Record {
    /// The hash this record's content implies, as if written at `seq`.
    pub fn computed_hash_at(&self, seq: u64) -> Hash {
        record_hash(&self.stream, seq, &self.at, &self.prev_hash, &self.event)
    }

    pub fn borrowed(&self) -> RecordRef<'_> {
        RecordRef {
            stream: &self.stream,
            seq: self.seq,
            at: &self.at,
            prev_hash: &self.prev_hash,
            hash: &self.hash,
            kind: &self.kind,
            session: self.session.as_deref(),
            event: &self.event,
        }
    }

    /// One line of the journal and of `export --format jsonl`.
    pub fn to_json_line(&self) -> String {
        let mut out = String::with_capacity(self.event.len() + 256);
        self.borrowed().write_json_line(&mut out);
        out
    }

    /// Parses a line written by [`Record::to_json_line`], keeping the event text byte-exact.
    pub fn from_json_line(line: &str) -> Result<Record> {
        #[derive(Deserialize)]
        struct Line<'a> {
            stream: String,
            seq: u64,
            at: String,
            prev_hash: String,
            hash: String,
            #[serde(borrow)]
            event: &'a serde_json::value::RawValue,
        }
        let l: Line = serde_json::from_str(line)?;
        let event = l.event.get().to_owned();
        let (kind, session) = index_fields(&event)?;
        Ok(Record {
            stream: l.stream,
            seq: l.seq,
            at: l.at,
            prev_hash: parse_hash(&l.prev_hash)?,
            hash: parse_hash(&l.hash)?,
            kind,
            session,
            event,
        })
    }
}

/// The `kind` and `session` fields of an event's JSON, whatever its variant.
pub(crate) fn index_fields(event: &str) -> Result<(String, Option<String>)> {
    #[derive(Deserialize)]
    struct Index {
        kind: String,
        session: Option<String>,
    }
    let i: Index = serde_json::from_str(event)?;
    Ok((i.kind, i.session))
}

pub(crate) fn parse_hash(text: &str) -> Result<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|e| Error::Store(format!("bad hash {text:?}: {e}")))?;
    Ok(out)
}

/// A signed statement that `stream` had `seq` records ending in `hash` at time `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub stream: String,
    pub seq: u64,
    pub at: String,
    /// Hex SHA-256 of record `seq`.
    pub hash: String,
    /// Hex ed25519 public key.
    pub key: String,
    /// Hex ed25519 signature.
    pub signature: String,
}

fn checkpoint_message(stream: &str, seq: u64, hash: &Hash, at: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + stream.len() + at.len() + 64);
    m.extend_from_slice(CHECKPOINT_DOMAIN);
    m.extend_from_slice(&(stream.len() as u64).to_be_bytes());
    m.extend_from_slice(stream.as_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&(at.len() as u64).to_be_bytes());
    m.extend_from_slice(at.as_bytes());
    m
}

impl Checkpoint {
    pub fn sign(key: &SigningKey, stream: &str, seq: u64, hash: &Hash, at: String) -> Checkpoint {
        let sig = key.sign(&checkpoint_message(stream, seq, hash, &at));
        Checkpoint {
            stream: stream.to_owned(),
            seq,
            at,
            hash: hex::encode(hash),
            key: hex::encode(key.verifying_key().as_bytes()),
            signature: hex::encode(sig.to_bytes()),
        }
    }

    /// Checks the signature against the key the checkpoint names; says what is wrong if not.
    pub fn check_signature(&self) -> std::result::Result<VerifyingKey, String> {
        let key = crate::keys::parse_public(&self.key).map_err(|e| e.to_string())?;
        let hash = parse_hash(&self.hash).map_err(|e| e.to_string())?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut sig).map_err(|e| format!("malformed signature: {e}"))?;
        key.verify(
            &checkpoint_message(&self.stream, self.seq, &hash, &self.at),
            &Signature::from_bytes(&sig),
        )
        .map_err(|_| "signature does not match".to_owned())?;
        Ok(key)
    }
}

/// Now as RFC 3339 UTC with microseconds.
pub fn now_rfc3339() -> String {
    Timestamp::now().as_str().to_owned()
}

/// [`now_rfc3339`] on the stack, `2025-01-02T03:04:05.000006Z`. Every record takes one under
/// the chain's lock, where formatting through `chrono`'s general formatter cost a visible
/// share of an append.
pub(crate) struct Timestamp([u8; 27]);

impl Timestamp {
    pub(crate) fn now() -> Timestamp {
        use chrono::{Datelike as _, Timelike as _};
        let t = chrono::Utc::now();
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut v: u32| {
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, t.year().clamp(0, 9999) as u32);
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        put(17, 2, t.second());
        // A leap second shows as 59.999999 rather than widening the field.
        put(20, 6, (t.nanosecond() / 1000).min(999_999));
        Timestamp(b)
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        let event = r#"{"kind":"statement","session":"s1","text":"SELECT 1"}"#.to_owned();
        let at = "2025-01-02T03:04:05.000006Z".to_owned();
        let hash = record_hash("gw", 7, &at, &GENESIS, &event);
        Record {
            stream: "gw".into(),
            seq: 7,
            at,
            prev_hash: GENESIS,
            hash,
            kind: "statement".into(),
            session: Some("s1".into()),
            event,
        }
    }

    #[test]
    fn json_line_round_trips_byte_exact() {
        let r = sample();
        let back = Record::from_json_line(&r.to_json_line()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.computed_hash_at(7), r.hash);
        // A configured stream name may need escaping.
        let odd = Record { stream: "east \"1\"\\x".into(), ..r };
        assert_eq!(Record::from_json_line(&odd.to_json_line()).unwrap(), odd);
    }

    #[test]
    fn every_field_is_covered_by_the_hash() {
        let r = sample();
        let base = r.hash;
        assert_ne!(record_hash("gx", 7, &r.at, &GENESIS, &r.event), base);
        assert_ne!(record_hash("gw", 8, &r.at, &GENESIS, &r.event), base);
        assert_ne!(record_hash("gw", 7, "2025-01-02T03:04:05.000007Z", &GENESIS, &r.event), base);
        assert_ne!(record_hash("gw", 7, &r.at, &[1; 32], &r.event), base);
        assert_ne!(record_hash("gw", 7, &r.at, &GENESIS, r.event.replace('1', "2").as_str()), base);
        // Moving bytes between fields must change the hash too.
        assert_ne!(record_hash("g", 7, &format!("w{}", r.at), &GENESIS, &r.event), base);
    }

    #[test]
    fn timestamps_match_the_general_formatter() {
        let before = chrono::Utc::now();
        let ours = Timestamp::now();
        let after = chrono::Utc::now();
        let parsed = chrono::DateTime::parse_from_rfc3339(ours.as_str()).unwrap();
        assert!(before.timestamp_micros() <= parsed.timestamp_micros());
        assert!(parsed.timestamp_micros() <= after.timestamp_micros());
        let general = parsed.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        assert_eq!(ours.as_str(), general);
    }

    #[test]
    fn checkpoint_signature_detects_any_change() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let cp = Checkpoint::sign(&key, "gw", 10, &[3; 32], "2025-01-01T00:00:00.000000Z".into());
        assert!(cp.check_signature().is_ok());
        let mut bad = cp.clone();
        bad.seq = 11;
        assert!(bad.check_signature().is_err());
        let mut bad = cp.clone();
        bad.hash = hex::encode([4u8; 32]);
        assert!(bad.check_signature().is_err());
        let mut bad = cp;
        bad.signature.replace_range(0..2, "00");
        assert!(bad.check_signature().is_err());
    }
}
