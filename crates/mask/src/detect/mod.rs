//! Detectors: each finds byte ranges of one kind of sensitive value inside a text.
//! All are validated (checksums, number plans, decodable structure) so that ordinary
//! prose and identifiers are left alone. Ranges always start and end on ASCII bytes,
//! so they are valid `str` slice bounds.

use std::ops::Range;
use std::str::FromStr;

pub mod card;
pub mod email;
pub mod iban;
pub mod ip;
pub mod jwt;
pub mod phone;
pub mod secret;
pub mod ssn;

/// A named kind of sensitive value, as written in policy files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SemanticType {
    Email,
    Phone,
    Card,
    Ssn,
    Iban,
    Ip,
    Jwt,
    /// API keys with well-known prefixes and PEM private keys.
    Secret,
}

impl SemanticType {
    pub const ALL: [SemanticType; 8] = [
        SemanticType::Email,
        SemanticType::Phone,
        SemanticType::Card,
        SemanticType::Ssn,
        SemanticType::Iban,
        SemanticType::Ip,
        SemanticType::Jwt,
        SemanticType::Secret,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SemanticType::Email => "email",
            SemanticType::Phone => "phone",
            SemanticType::Card => "card",
            SemanticType::Ssn => "ssn",
            SemanticType::Iban => "iban",
            SemanticType::Ip => "ip",
            SemanticType::Jwt => "jwt",
            SemanticType::Secret => "secret",
        }
    }

    /// Byte ranges of every occurrence in `text`, in ascending order.
    pub fn find(self, text: &str) -> Vec<Range<usize>> {
        match self {
            SemanticType::Email => email::find(text),
            SemanticType::Phone => phone::find(text),
            SemanticType::Card => card::find(text),
            SemanticType::Ssn => ssn::find(text),
            SemanticType::Iban => iban::find(text),
            SemanticType::Ip => ip::find(text),
            SemanticType::Jwt => jwt::find(text),
            SemanticType::Secret => secret::find(text),
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl FromStr for SemanticType {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SemanticType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| crate::Error::UnknownSemanticType(s.to_owned()))
    }
}

/// A set of semantic types, used by content-scanning columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Detectors(u16);

impl Detectors {
    pub const NONE: Detectors = Detectors(0);
    pub const ALL: Detectors = Detectors(0xff);

    pub fn of(types: &[SemanticType]) -> Self {
        Detectors(types.iter().fold(0, |acc, t| acc | t.bit()))
    }

    pub fn with(self, t: SemanticType) -> Self {
        Detectors(self.0 | t.bit())
    }

    pub fn contains(self, t: SemanticType) -> bool {
        self.0 & t.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = SemanticType> {
        SemanticType::ALL
            .into_iter()
            .filter(move |t| self.contains(*t))
    }

    /// Ranges found by every detector in the set, sorted, with overlaps merged.
    pub fn find(self, text: &str) -> Vec<Range<usize>> {
        let mut ranges: Vec<Range<usize>> = Vec::new();
        for t in self.iter() {
            let found = t.find(text);
            if !found.is_empty() {
                ranges.extend(found);
            }
        }
        merge(ranges)
    }
}

fn merge(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    if ranges.len() < 2 {
        return ranges;
    }
    ranges.sort_unstable_by_key(|r| (r.start, r.end));
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start < last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

pub(crate) fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// True when the byte before `i` (if any) is not an ASCII letter or digit.
pub(crate) fn left_boundary(b: &[u8], i: usize) -> bool {
    i == 0 || !is_alnum(b[i - 1])
}

/// True when the byte at `i` (if any) is not an ASCII letter or digit.
pub(crate) fn right_boundary(b: &[u8], i: usize) -> bool {
    i >= b.len() || !is_alnum(b[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_overlapping_and_disjoint() {
        assert_eq!(merge(vec![5..9, 0..2, 1..3, 8..12]), vec![0..3, 5..12]);
        assert_eq!(merge(vec![0..2, 2..4]), vec![0..2, 2..4]);
    }

    #[test]
    fn names_round_trip() {
        for t in SemanticType::ALL {
            assert_eq!(t.name().parse::<SemanticType>().unwrap(), t);
        }
        assert!("nope".parse::<SemanticType>().is_err());
        let set = Detectors::of(&[SemanticType::Card, SemanticType::Ip]);
        assert!(set.contains(SemanticType::Card) && !set.contains(SemanticType::Email));
        assert_eq!(set.iter().count(), 2);
    }
}
