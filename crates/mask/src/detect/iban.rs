//! International bank account numbers: country code, check digits, a length fixed per
//! country, and the ISO 7064 mod-97 checksum. Accepts the compact form and the printed
//! form in groups of four separated by single spaces.

use super::left_boundary;
use std::ops::Range;

/// IBAN length per country (registry of countries that issue IBANs).
const LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

fn expected_len(cc: &[u8]) -> Option<usize> {
    LENGTHS
        .binary_search_by(|(k, _)| k.as_slice().cmp(cc))
        .ok()
        .map(|i| LENGTHS[i].1)
}

fn is_body(c: u8) -> bool {
    c.is_ascii_digit() || c.is_ascii_uppercase()
}

pub fn find(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 15 <= b.len() {
        if let Some(end) = match_at(b, i) {
            out.push(i..end);
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

fn match_at(b: &[u8], i: usize) -> Option<usize> {
    if !(b[i].is_ascii_uppercase()
        && b[i + 1].is_ascii_uppercase()
        && b[i + 2].is_ascii_digit()
        && b[i + 3].is_ascii_digit()
        && left_boundary(b, i))
    {
        return None;
    }
    let want = expected_len(&b[i..i + 2])?;
    let mut chars = [0u8; 34];
    let mut n = 0;
    let mut j = i;
    // Printed form: groups of four, one space between groups.
    let spaced = b.get(i + 4) == Some(&b' ');
    while n < want {
        let c = *b.get(j)?;
        if is_body(c) {
            chars[n] = c;
            n += 1;
            j += 1;
        } else if spaced
            && c == b' '
            && n % 4 == 0
            && n > 0
            && b.get(j + 1).is_some_and(|&c| is_body(c))
        {
            j += 1;
        } else {
            return None;
        }
    }
    if b.get(j).is_some_and(|&c| c.is_ascii_alphanumeric()) {
        return None;
    }
    mod97(&chars[..n]).then_some(j)
}

fn mod97(iban: &[u8]) -> bool {
    let (head, tail) = iban.split_at(4);
    let mut rem: u32 = 0;
    for &c in tail.iter().chain(head) {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_sorted_for_binary_search() {
        assert!(super::LENGTHS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
