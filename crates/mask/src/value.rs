//! Masking of one value, given its column's mask, type and wire format. The result is
//! appended to the caller's buffer; nothing is allocated unless a value actually changes
//! (and, for most types and strategies, not even then).

use crate::plan::{ColumnMask, Format};
use crate::strategy::{write_hex, HashKey, Strategy};
use crate::types::{Class, TextLimit};
use std::borrow::Cow;
use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The original bytes stand; nothing was appended.
    Unchanged,
    /// The replacement was appended; `matches` counts replaced substrings (1 for a whole value).
    Written { matches: u32 },
    /// The value becomes NULL; nothing was appended.
    Null,
}

pub(crate) fn mask_value(
    m: &ColumnMask,
    format: Format,
    key: &HashKey,
    v: &[u8],
    out: &mut Vec<u8>,
) -> Outcome {
    let start = out.len();
    let class = Class::of(m.type_oid, m.typmod);
    let r = if m.scan {
        scan(m, class, format, key, v, out)
    } else {
        whole(&m.strategy, class, format, key, v, out)
    };
    if !matches!(r, Outcome::Written { .. }) {
        out.truncate(start);
    }
    r
}

const WRITTEN: Outcome = Outcome::Written { matches: 1 };

fn whole(
    s: &Strategy,
    class: Class,
    format: Format,
    key: &HashKey,
    v: &[u8],
    out: &mut Vec<u8>,
) -> Outcome {
    if *s == Strategy::Null {
        return Outcome::Null;
    }
    let start = out.len();
    match class {
        Class::Text(limit) => {
            let Ok(text) = std::str::from_utf8(v) else {
                return Outcome::Null;
            };
            // char(n) pads with blanks that carry no meaning.
            let text = if matches!(limit, TextLimit::Exact(_)) {
                text.trim_end_matches(' ')
            } else {
                text
            };
            s.write_text(key, text, out);
            apply_limit(limit, out, start);
            WRITTEN
        }
        Class::Json | Class::Jsonb => {
            let binary_jsonb = class == Class::Jsonb && format == Format::Binary;
            let Some(body) = json_body(v, binary_jsonb) else {
                return Outcome::Null;
            };
            let Ok(text) = std::str::from_utf8(body) else {
                return Outcome::Null;
            };
            let src = json_source(text);
            if binary_jsonb {
                out.push(1);
            }
            out.push(b'"');
            let mid = out.len();
            s.write_text(key, &src, out);
            escape_json_tail(out, mid);
            out.push(b'"');
            WRITTEN
        }
        Class::Bytea => bytea(s, format, key, v, out),
        Class::Uuid => {
            let Strategy::Hash { .. } = s else {
                return Outcome::Null;
            };
            let mut canon = [0u8; 36];
            let canon: &[u8] = match format {
                Format::Text => v,
                Format::Binary => match <&[u8; 16]>::try_from(v) {
                    Ok(raw) => {
                        format_uuid(raw, &mut canon);
                        &canon
                    }
                    Err(_) => return Outcome::Null,
                },
            };
            let d = key.digest(&[canon]);
            let mut u = [0u8; 16];
            u.copy_from_slice(&d[..16]);
            // Version 8 (custom), RFC 4122 variant: a well-formed UUID.
            u[6] = (u[6] & 0x0f) | 0x80;
            u[8] = (u[8] & 0x3f) | 0x80;
            match format {
                Format::Text => {
                    let mut buf = [0u8; 36];
                    format_uuid(&u, &mut buf);
                    out.extend_from_slice(&buf);
                }
                Format::Binary => out.extend_from_slice(&u),
            }
            WRITTEN
        }
        Class::Int(width) => {
            let Strategy::Hash { .. } = s else {
                return Outcome::Null;
            };
            let mut buf = [0u8; 20];
            let canon: &[u8] = match format {
                Format::Text => v,
                Format::Binary => match decode_int(v, width) {
                    Some(n) => format_i64(n, &mut buf),
                    None => return Outcome::Null,
                },
            };
            let d = key.digest(&[canon]);
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&d[..8]);
            let bits = u64::from_be_bytes(raw);
            let n: i64 = match width {
                2 => i64::from((bits & 0x7fff) as i16),
                4 => i64::from((bits & 0x7fff_ffff) as i32),
                _ => (bits & 0x7fff_ffff_ffff_ffff) as i64,
            };
            match format {
                Format::Text => out.extend_from_slice(format_i64(n, &mut buf)),
                Format::Binary => out.extend_from_slice(&n.to_be_bytes()[8 - usize::from(width)..]),
            }
            WRITTEN
        }
        Class::Inet { cidr } => {
            // Text only: a binary inet would first need decoding to its canonical text.
            if !matches!(s, Strategy::Hash { .. }) || format == Format::Binary {
                return Outcome::Null;
            }
            // A stable private-range IPv4 address stands in for any address.
            let d = key.digest(&[v]);
            let mut buf = [0u8; 20];
            out.extend_from_slice(b"10.");
            for (i, &octet) in d[..3].iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(format_i64(i64::from(octet), &mut buf));
            }
            if cidr {
                out.extend_from_slice(b"/32");
            }
            WRITTEN
        }
        Class::Opaque => Outcome::Null,
    }
}

fn scan(
    m: &ColumnMask,
    class: Class,
    format: Format,
    key: &HashKey,
    v: &[u8],
    out: &mut Vec<u8>,
) -> Outcome {
    let s = &m.strategy;
    match class {
        Class::Text(limit) => {
            let Ok(text) = std::str::from_utf8(v) else {
                return Outcome::Null;
            };
            let ranges = m.detectors.find(text);
            if ranges.is_empty() {
                return Outcome::Unchanged;
            }
            if *s == Strategy::Null {
                return Outcome::Null;
            }
            let start = out.len();
            let n = splice(s, key, text, &ranges, false, out);
            apply_limit(limit, out, start);
            Outcome::Written { matches: n }
        }
        Class::Json | Class::Jsonb => {
            let binary_jsonb = class == Class::Jsonb && format == Format::Binary;
            let Some(body) = json_body(v, binary_jsonb) else {
                return Outcome::Null;
            };
            let Ok(text) = std::str::from_utf8(body) else {
                return Outcome::Null;
            };
            let ranges = m.detectors.find(text);
            if ranges.is_empty() {
                return Outcome::Unchanged;
            }
            if *s == Strategy::Null {
                return Outcome::Null;
            }
            // A finding outside a string literal (a card number stored as a JSON number)
            // cannot be replaced in place and stay valid JSON.
            if !all_inside_strings(text.as_bytes(), &ranges) {
                return whole(s, class, format, key, v, out);
            }
            if binary_jsonb {
                out.push(1);
            }
            let n = splice(s, key, text, &ranges, true, out);
            Outcome::Written { matches: n }
        }
        // Hex or escaped bytes hide their content from the detectors.
        Class::Bytea => whole(s, class, format, key, v, out),
        _ => match (format, std::str::from_utf8(v)) {
            (Format::Text, Ok(text)) => {
                if m.detectors.find(text).is_empty() {
                    Outcome::Unchanged
                } else {
                    whole(s, class, format, key, v, out)
                }
            }
            // Binary values of other types cannot be inspected: never pass them unseen.
            _ => whole(s, class, format, key, v, out),
        },
    }
}

/// Copies `text` with each range replaced; returns the number of replacements.
fn splice(
    s: &Strategy,
    key: &HashKey,
    text: &str,
    ranges: &[Range<usize>],
    json: bool,
    out: &mut Vec<u8>,
) -> u32 {
    let mut pos = 0;
    for r in ranges {
        out.extend_from_slice(&text.as_bytes()[pos..r.start]);
        let mid = out.len();
        s.write_text(key, &text[r.clone()], out);
        if json {
            escape_json_tail(out, mid);
        }
        pos = r.end;
    }
    out.extend_from_slice(&text.as_bytes()[pos..]);
    u32::try_from(ranges.len()).unwrap_or(u32::MAX)
}

fn json_body(v: &[u8], binary_jsonb: bool) -> Option<&[u8]> {
    if binary_jsonb {
        // Binary jsonb is a version byte (1) and the text form.
        match v.split_first() {
            Some((1, rest)) => Some(rest),
            _ => None,
        }
    } else {
        Some(v)
    }
}

/// A JSON string value is masked by its contents, so `"a@b.c"` hashes like `a@b.c`.
fn json_source(text: &str) -> Cow<'_, str> {
    let t = text.trim();
    if t.starts_with('"') {
        if let Ok(s) = serde_json::from_str::<String>(t) {
            return Cow::Owned(s);
        }
    }
    Cow::Borrowed(text)
}

fn needs_json_escape(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// Escapes `out[mid..]` for use inside a JSON string literal.
fn escape_json_tail(out: &mut Vec<u8>, mid: usize) {
    if !out[mid..].iter().any(|&b| needs_json_escape(b)) {
        return;
    }
    let raw = out.split_off(mid);
    for b in raw {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            c if c < 0x20 => {
                out.extend_from_slice(b"\\u00");
                write_hex(&[c], 2, out);
            }
            c => out.push(c),
        }
    }
}

/// True when every range lies within the contents of one JSON string literal.
fn all_inside_strings(b: &[u8], ranges: &[Range<usize>]) -> bool {
    let mut in_str = false;
    let mut escaped = false;
    let mut next = 0;
    let mut open: Option<usize> = None; // end of the range currently being checked
    for (i, &c) in b.iter().enumerate() {
        if let Some(end) = open {
            if i >= end {
                // Ending inside an escape would orphan its backslash.
                if escaped {
                    return false;
                }
                open = None;
                next += 1;
            }
        }
        if open.is_none() {
            if let Some(r) = ranges.get(next) {
                if r.start == i {
                    if !in_str || escaped {
                        return false;
                    }
                    open = Some(r.end);
                }
            } else {
                return true;
            }
        }
        if in_str {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                if open.is_some() {
                    return false;
                }
                in_str = false;
            }
        } else if c == b'"' {
            in_str = true;
        }
    }
    match open {
        // A range reaching the end of the text ran past the closing quote.
        Some(_) => false,
        None => next >= ranges.len(),
    }
}

fn apply_limit(limit: TextLimit, out: &mut Vec<u8>, start: usize) {
    match limit {
        TextLimit::None => {}
        TextLimit::MaxChars(n) => truncate_chars(out, start, n),
        TextLimit::Exact(n) => {
            truncate_chars(out, start, n);
            let have = char_count(&out[start..]);
            out.resize(out.len() + (n - have.min(n)), b' ');
        }
        TextLimit::MaxBytes(n) => {
            if out.len() - start > n {
                let mut cut = start + n;
                while cut > start && is_continuation(out[cut]) {
                    cut -= 1;
                }
                out.truncate(cut);
            }
        }
    }
}

fn is_continuation(b: u8) -> bool {
    b & 0xc0 == 0x80
}

fn char_count(b: &[u8]) -> usize {
    b.iter().filter(|&&c| !is_continuation(c)).count()
}

fn truncate_chars(out: &mut Vec<u8>, start: usize, n: usize) {
    let mut seen = 0;
    for i in start..out.len() {
        if !is_continuation(out[i]) {
            if seen == n {
                out.truncate(i);
                return;
            }
            seen += 1;
        }
    }
}

fn bytea(s: &Strategy, format: Format, key: &HashKey, v: &[u8], out: &mut Vec<u8>) -> Outcome {
    let decoded;
    let raw: &[u8] = match format {
        Format::Binary => v,
        Format::Text => match v.strip_prefix(b"\\x") {
            Some(hex) => match decode_hex(hex) {
                Some(d) => {
                    decoded = d;
                    &decoded
                }
                None => return Outcome::Null,
            },
            // Legacy escape output: masked as the text it is.
            None => v,
        },
    };
    let mut replacement = Vec::new();
    match s {
        Strategy::Redact { placeholder } => replacement.extend_from_slice(placeholder.as_bytes()),
        Strategy::Partial { keep, mask } => {
            let hidden = if raw.len() > *keep {
                raw.len() - keep
            } else {
                raw.len()
            };
            let mut buf = [0u8; 4];
            let m = mask.encode_utf8(&mut buf).as_bytes();
            for _ in 0..hidden {
                replacement.extend_from_slice(m);
            }
            replacement.extend_from_slice(&raw[hidden..]);
        }
        Strategy::Hash { hex_len } => key.write_hex(raw, *hex_len, &mut replacement),
        Strategy::Null => return Outcome::Null,
    }
    match format {
        Format::Binary => out.extend_from_slice(&replacement),
        Format::Text => {
            out.extend_from_slice(b"\\x");
            write_hex(&replacement, replacement.len() * 2, out);
        }
    }
    WRITTEN
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    fn nib(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if hex.len() % 2 != 0 {
        return None;
    }
    hex.chunks_exact(2)
        .map(|p| Some(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}

fn decode_int(v: &[u8], width: u8) -> Option<i64> {
    match (width, v.len()) {
        (2, 2) => Some(i64::from(i16::from_be_bytes([v[0], v[1]]))),
        (4, 4) => Some(i64::from(i32::from_be_bytes([v[0], v[1], v[2], v[3]]))),
        (8, 8) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(v);
            Some(i64::from_be_bytes(a))
        }
        _ => None,
    }
}

fn format_i64(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let neg = n < 0;
    let mut u = n.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if neg {
        // i64::MIN has 19 digits, so a slot remains for the sign.
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

fn format_uuid(u: &[u8; 16], buf: &mut [u8; 36]) {
    let mut j = 0;
    for (i, &b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            buf[j] = b'-';
            j += 1;
        }
        buf[j] = b"0123456789abcdef"[usize::from(b >> 4)];
        buf[j + 1] = b"0123456789abcdef"[usize::from(b & 0xf)];
        j += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_formatting() {
        let mut b = [0u8; 20];
        assert_eq!(format_i64(0, &mut b), b"0");
        assert_eq!(format_i64(-42, &mut b), b"-42");
        assert_eq!(
            format_i64(i64::MIN, &mut b),
            i64::MIN.to_string().as_bytes()
        );
        assert_eq!(
            format_i64(i64::MAX, &mut b),
            i64::MAX.to_string().as_bytes()
        );
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn json_string_membership() {
        let t = br#"{"a": "x 4111111111111111 y", "b": 4111111111111111}"#;
        assert!(all_inside_strings(t, &[9..25]));
        assert!(!all_inside_strings(t, &[35..51]));
        assert!(!all_inside_strings(t, &[9..25, 35..51]));
        // A range that swallows the closing quote.
        assert!(!all_inside_strings(br#"{"k": "abc"}"#, &[7..11]));
    }

    #[test]
    fn limits() {
        let mut v = "héllo".as_bytes().to_vec();
        truncate_chars(&mut v, 0, 2);
        assert_eq!(v, "hé".as_bytes());
        let mut v = b"ab".to_vec();
        apply_limit(TextLimit::Exact(4), &mut v, 0);
        assert_eq!(v, b"ab  ");
        let mut v = "ééé".as_bytes().to_vec();
        apply_limit(TextLimit::MaxBytes(3), &mut v, 0);
        assert_eq!(v, "é".as_bytes());
    }
}
