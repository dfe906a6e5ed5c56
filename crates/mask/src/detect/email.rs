//! Email addresses: a conservative local part, `@`, and a dotted domain whose last label
//! is alphabetic.

use std::ops::Range;

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

pub fn find(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(off) = memchr::memchr(b'@', &b[from..]) {
        let at = from + off;
        let mut start = at;
        while start > 0 && is_local(b[start - 1]) {
            start -= 1;
        }
        // A leading dot belongs to the surrounding text, not the address.
        while start < at && b[start] == b'.' {
            start += 1;
        }
        let mut end = at + 1;
        while end < b.len() && is_domain(b[end]) {
            end += 1;
        }
        // Sentence punctuation after the address.
        while end > at + 1 && matches!(b[end - 1], b'.' | b'-') {
            end -= 1;
        }
        if valid_local(&b[start..at]) && valid_domain(&b[at + 1..end]) {
            out.push(start..end);
            from = end;
        } else {
            from = at + 1;
        }
    }
    out
}

fn valid_local(l: &[u8]) -> bool {
    !l.is_empty()
        && l.len() <= 64
        && l[0] != b'.'
        && l[l.len() - 1] != b'.'
        && !l.windows(2).any(|w| w == b"..")
}

fn valid_domain(d: &[u8]) -> bool {
    if d.is_empty() || d.len() > 253 {
        return false;
    }
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for label in d.split(|&c| c == b'.') {
        if label.is_empty()
            || label.len() > 63
            || label[0] == b'-'
            || label[label.len() - 1] == b'-'
        {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2 && last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic)
}
