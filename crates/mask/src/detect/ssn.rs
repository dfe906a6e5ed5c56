//! US Social Security numbers written `AAA-GG-SSSS` (or with spaces), excluding numbers
//! the numbering plan never issues.

use super::{left_boundary, right_boundary};
use std::ops::Range;

pub fn find(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 11 <= b.len() {
        if b[i].is_ascii_digit() && left_boundary(b, i) && (i == 0 || b[i - 1] != b'-') {
            if let Some(end) = match_at(b, i) {
                out.push(i..end);
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn match_at(b: &[u8], i: usize) -> Option<usize> {
    let s = &b[i..i + 11];
    let sep = s[3];
    if !matches!(sep, b'-' | b' ') || s[6] != sep {
        return None;
    }
    let area = digits(&s[0..3])?;
    let group = digits(&s[4..6])?;
    let serial = digits(&s[7..11])?;
    let end = i + 11;
    // Reject when the number continues, e.g. `123-45-6789-1`.
    let continues = b.get(end) == Some(&b'-') && b.get(end + 1).is_some_and(u8::is_ascii_digit);
    if !right_boundary(b, end) || continues {
        return None;
    }
    let impossible = area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0;
    // Numbers published in advertising and never valid for a person.
    let published = matches!((area, group, serial), (78, 5, 1120) | (219, 9, 9999));
    (!impossible && !published).then_some(end)
}
