//! IPv4 and IPv6 addresses, located by shape and confirmed by the standard library's
//! parsers (which reject out-of-range and zero-prefixed octets).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

fn is_v4(c: u8) -> bool {
    c.is_ascii_digit() || c == b'.'
}

fn is_v6(c: u8) -> bool {
    c.is_ascii_hexdigit() || c == b':' || c == b'.'
}

pub fn find(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let prev_ok =
            i == 0 || !(b[i - 1].is_ascii_alphanumeric() || matches!(b[i - 1], b'.' | b':'));
        if prev_ok && is_v6(b[i]) && b[i] != b'.' {
            if let Some(end) = v6_at(b, i).or_else(|| v4_at(b, i)) {
                out.push(i..end);
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

fn run(b: &[u8], start: usize, f: fn(u8) -> bool) -> usize {
    let mut j = start;
    while j < b.len() && f(b[j]) {
        j += 1;
    }
    j
}

fn followed_by_word(b: &[u8], j: usize) -> bool {
    b.get(j)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn v4_at(b: &[u8], start: usize) -> Option<usize> {
    let mut end = run(b, start, is_v4);
    if followed_by_word(b, end) {
        return None;
    }
    if end > start && b[end - 1] == b'.' {
        end -= 1;
    }
    let s = std::str::from_utf8(&b[start..end]).ok()?;
    s.parse::<Ipv4Addr>().ok().map(|_| end)
}

fn v6_at(b: &[u8], start: usize) -> Option<usize> {
    let mut end = run(b, start, is_v6);
    if followed_by_word(b, end) {
        return None;
    }
    if end > start && b[end - 1] == b'.' {
        end -= 1;
    }
    // A trailing lone colon is punctuation ("addr: fe80::1:").
    if end >= start + 2 && b[end - 1] == b':' && b[end - 2] != b':' {
        end -= 1;
    }
    let span = &b[start..end];
    if span.iter().filter(|&&c| c == b':').count() < 2 || !span.iter().any(u8::is_ascii_hexdigit) {
        return None;
    }
    let s = std::str::from_utf8(span).ok()?;
    s.parse::<Ipv6Addr>().ok().map(|_| end)
}
