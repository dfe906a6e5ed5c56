//! Payment card numbers: 13–19 digits, optionally grouped with one kind of separator
//! (space or dash), passing the Luhn check and starting with a known issuer prefix.

use super::{is_alnum, left_boundary, right_boundary};
use std::ops::Range;

const MAX_DIGITS: usize = 19;

pub fn find(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || !left_boundary(b, i) {
            i += 1;
            continue;
        }
        let end = scan_run(b, i);
        if right_boundary(b, end) && is_card(&b[i..end]) {
            out.push(i..end);
        } else {
            // A run of space-separated numbers may hide a card written without
            // separators; try each separator-free group on its own.
            let mut g = i;
            while g < end {
                let mut ge = g;
                while ge < end && b[ge].is_ascii_digit() {
                    ge += 1;
                }
                if (g, ge) != (i, end) && right_boundary(b, ge) && is_card(&b[g..ge]) {
                    out.push(g..ge);
                }
                g = ge + 1;
            }
        }
        i = end.max(i + 1);
    }
    out
}

/// End of a run of digits joined by single separators, all separators the same.
fn scan_run(b: &[u8], start: usize) -> usize {
    let mut sep = None;
    let mut j = start;
    loop {
        if j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        } else if j + 1 < b.len()
            && matches!(b[j], b' ' | b'-')
            && b[j + 1].is_ascii_digit()
            && sep.is_none_or(|s| s == b[j])
        {
            sep = Some(b[j]);
            j += 1;
        } else {
            return j;
        }
    }
}

/// `candidate` holds digits and separators only.
pub(crate) fn is_card(candidate: &[u8]) -> bool {
    let mut digits = [0u8; MAX_DIGITS];
    let mut n = 0;
    for &c in candidate {
        if c.is_ascii_digit() {
            if n == MAX_DIGITS {
                return false;
            }
            digits[n] = c - b'0';
            n += 1;
        } else if is_alnum(c) {
            return false;
        }
    }
    let d = &digits[..n];
    (13..=MAX_DIGITS).contains(&n) && known_issuer(d) && luhn(d)
}

pub(crate) fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum % 10 == 0
}

fn prefix(d: &[u8], k: usize) -> u32 {
    d.iter().take(k).fold(0, |acc, &x| acc * 10 + u32::from(x))
}

fn known_issuer(d: &[u8]) -> bool {
    let n = d.len();
    let (p2, p3, p4, p6) = (prefix(d, 2), prefix(d, 3), prefix(d, 4), prefix(d, 6));
    let visa = d[0] == 4 && matches!(n, 13 | 16 | 19);
    let amex = matches!(p2, 34 | 37) && n == 15;
    let mastercard = ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && n == 16;
    let long = (16..=19).contains(&n);
    let discover =
        (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622_126..=622_925).contains(&p6))
            && long;
    let unionpay = p2 == 62 && long;
    let jcb = (3528..=3589).contains(&p4) && long;
    let diners =
        ((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39)) && (14..=19).contains(&n);
    visa || amex || mastercard || discover || unionpay || jcb || diners
}
