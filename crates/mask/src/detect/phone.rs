//! Phone numbers, conservatively: international numbers written with a leading `+`
//! (E.164, 8–15 digits, optional single separators), and North American numbers
//! written in 3-3-4 groups with separators or parentheses. Bare digit runs are not
//! phone numbers here: too many identifiers look like them.

use super::{is_alnum, right_boundary};
use std::ops::Range;

fn is_sep(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.')
}

pub fn find(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let starts = c == b'+' || c == b'(' || c.is_ascii_digit();
        let prev_ok =
            i == 0 || !(is_alnum(b[i - 1]) || matches!(b[i - 1], b'+' | b'-' | b'.' | b'/' | b'_'));
        if starts && prev_ok {
            if let Some(end) = north_american(b, i).or_else(|| international(b, i)) {
                out.push(i..end);
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

fn digits_at(b: &[u8], i: usize, n: usize) -> bool {
    b.len() >= i + n && b[i..i + n].iter().all(u8::is_ascii_digit)
}

/// `[+1 |1-](AAA) EEE-LLLL`, `AAA-EEE-LLLL`, `AAA.EEE.LLLL`, `AAA EEE LLLL`.
fn north_american(b: &[u8], start: usize) -> Option<usize> {
    let mut j = start;
    if b[j] == b'+' {
        if b.get(j + 1) != Some(&b'1') {
            return None;
        }
        j += 2;
        if b.get(j).is_some_and(|&c| is_sep(c)) {
            j += 1;
        }
    } else if b[j] == b'1' && b.get(j + 1).is_some_and(|&c| is_sep(c)) {
        j += 2;
    }
    if b.get(j) == Some(&b'(') {
        if !digits_at(b, j + 1, 3) || b.get(j + 4) != Some(&b')') {
            return None;
        }
        if b[j + 1] < b'2' {
            return None;
        }
        j += 5;
        if b.get(j).is_some_and(|&c| c == b' ' || c == b'-') {
            j += 1;
        }
        if !digits_at(b, j, 3) {
            return None;
        }
        j += 3;
        b.get(j).filter(|&&c| is_sep(c))?;
    } else {
        if !digits_at(b, j, 3) || b[j] < b'2' {
            return None;
        }
        j += 3;
        let s1 = *b.get(j).filter(|&&c| is_sep(c))?;
        j += 1;
        if !digits_at(b, j, 3) {
            return None;
        }
        j += 3;
        // The same separator between both pairs of groups.
        b.get(j).filter(|&&c| c == s1)?;
    }
    // Exchange codes never start with 0 or 1.
    if b[j - 3] < b'2' {
        return None;
    }
    j += 1;
    if !digits_at(b, j, 4) {
        return None;
    }
    j += 4;
    ends_cleanly(b, j).then_some(j)
}

/// `+CC…` with 8–15 digits in groups joined by single separators.
fn international(b: &[u8], start: usize) -> Option<usize> {
    if b[start] != b'+' || !b.get(start + 1).is_some_and(|c| (b'1'..=b'9').contains(c)) {
        return None;
    }
    let mut j = start + 1;
    let mut n = 0;
    loop {
        if j < b.len() && b[j].is_ascii_digit() {
            n += 1;
            j += 1;
        } else if j + 1 < b.len() && is_sep(b[j]) && b[j + 1].is_ascii_digit() {
            j += 1;
        } else {
            break;
        }
    }
    ((8..=15).contains(&n) && right_boundary(b, j)).then_some(j)
}

/// The number must not run on into more digits (`555-123-4567-89`).
fn ends_cleanly(b: &[u8], j: usize) -> bool {
    right_boundary(b, j)
        && !(b.get(j).is_some_and(|&c| is_sep(c)) && b.get(j + 1).is_some_and(u8::is_ascii_digit))
}
