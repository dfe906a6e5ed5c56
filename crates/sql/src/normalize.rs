//! A second cache key that ignores literal values, so `… WHERE aid = 1` and
//! `… WHERE aid = 2` share one analysis.
//!
//! The key is sound only if two texts with the same key lex to the same tokens apart
//! from constant values. The pass therefore gives up (no key; the text is parsed) on
//! everything it does not lex exactly as PostgreSQL does: comments, dollar quotes and
//! parameters, backslashes, prefixed strings (E'', U&'', B'', X'', N'', typed literals),
//! numbers touching identifier characters or dots, control characters and non-ASCII.

use crate::facts::Analysis;

/// Literal classes in the key. Control bytes never appear in a text that gets a key.
const INT: u8 = 0x01;
const DECIMAL: u8 = 0x02;
const STRING: u8 = 0x03;

/// A literal replaced in the key: where it ends in the text and in the key.
#[derive(Debug, Clone, Copy)]
struct Span {
    text_end: usize,
    key_end: usize,
}

#[derive(Debug)]
pub(crate) struct Normalized {
    pub key: String,
    spans: Vec<Span>,
}

fn ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

pub(crate) fn normalize(text: &str) -> Option<Normalized> {
    let b = text.as_bytes();
    let mut key = Vec::with_capacity(b.len());
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c >= 0x80 || (c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r')) || c == 0x7f {
            return None;
        }
        let prev = if i > 0 { b[i - 1] } else { b' ' };
        match c {
            b'\\' | b'$' => return None,
            b'-' if b.get(i + 1) == Some(&b'-') => return None,
            b'/' if b.get(i + 1) == Some(&b'*') => return None,
            b'\'' => {
                if ident_char(prev) || prev == b'&' || prev == b'\'' {
                    return None;
                }
                i += 1;
                loop {
                    match b.get(i) {
                        None => return None,
                        Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                        Some(b'\'') => break,
                        Some(&x) if x == b'\\' || x >= 0x80 || x == 0 => return None,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                spans.push(Span { text_end: i, key_end: key.len() + 1 });
                key.push(STRING);
                continue;
            }
            b'"' => {
                if prev == b'&' {
                    return None;
                }
                let start = i;
                i += 1;
                loop {
                    match b.get(i) {
                        None => return None,
                        Some(b'"') if b.get(i + 1) == Some(&b'"') => i += 2,
                        Some(b'"') => break,
                        Some(&x) if !(0x20..0x80).contains(&x) => return None,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                key.extend_from_slice(&b[start..i]);
                continue;
            }
            b'0'..=b'9' => {
                if prev == b'.' || ident_char(prev) {
                    return None;
                }
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let mut class = INT;
                if b.get(i) == Some(&b'.') {
                    if !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                        return None;
                    }
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    class = DECIMAL;
                }
                if b.get(i).is_some_and(|&n| ident_char(n) || n == b'.' || n == b'\'' || n == b'"' || n >= 0x80) {
                    return None;
                }
                spans.push(Span { text_end: i, key_end: key.len() + 1 });
                key.push(class);
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && ident_char(b[i]) {
                    i += 1;
                }
                key.extend_from_slice(&b[start..i]);
                continue;
            }
            _ => key.push(c),
        }
        i += 1;
    }
    // Only ASCII was copied.
    let key = String::from_utf8(key).ok()?;
    Some(Normalized { key, spans })
}

impl Normalized {
    /// Maps a statement boundary (never inside a literal) from text to key coordinates.
    fn to_key(&self, pos: usize) -> usize {
        let n = self.spans.partition_point(|s| s.text_end <= pos);
        match n.checked_sub(1).map(|k| self.spans[k]) {
            Some(s) => s.key_end + (pos - s.text_end),
            None => pos,
        }
    }

    fn to_text(&self, pos: usize) -> usize {
        let n = self.spans.partition_point(|s| s.key_end <= pos);
        match n.checked_sub(1).map(|k| self.spans[k]) {
            Some(s) => s.text_end + (pos - s.key_end),
            None => pos,
        }
    }

    /// The analysis with statement ranges in key coordinates, for sharing.
    pub(crate) fn share(&self, analysis: &Analysis) -> Analysis {
        let mut shared = analysis.clone();
        for st in &mut shared.statements {
            st.start = self.to_key(st.start);
            st.end = self.to_key(st.end);
        }
        shared
    }

    /// A shared analysis with statement ranges mapped back onto this text.
    pub(crate) fn adopt(&self, shared: &Analysis) -> Analysis {
        let mut own = shared.clone();
        for st in &mut own.statements {
            st.start = self.to_text(st.start);
            st.end = self.to_text(st.end);
        }
        own
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Option<String> {
        normalize(s).map(|n| n.key)
    }

    #[test]
    fn literals_collapse_by_class() {
        let a = key("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;");
        let b = key("SELECT abalance FROM pgbench_accounts WHERE aid = 7;");
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(key("SELECT 1"), key("SELECT 1.5"));
        assert_ne!(key("SELECT 1"), key("SELECT '1'"));
        assert_eq!(key("SELECT 'it''s'"), key("SELECT 'x'"));
        assert_eq!(key(r#"SELECT "a""b" FROM t1"#).unwrap(), r#"SELECT "a""b" FROM t1"#);
    }

    #[test]
    fn gives_up_on_what_it_does_not_lex_exactly() {
        for s in [
            "SELECT 1 -- c",
            "SELECT /* c */ 1",
            "SELECT $$x$$",
            "SELECT $1",
            "SELECT E'x'",
            "SELECT U&'x'",
            "SELECT U&\"x\"",
            "SELECT b'1'",
            "SELECT x'1'",
            "SELECT n'1'",
            "SELECT date'2020-01-01'",
            "SELECT 'a\\'",
            "SELECT 1e5",
            "SELECT 1.",
            "SELECT .5",
            "SELECT 0x1f",
            "SELECT 1_000",
            "SELECT 1abc",
            "SELECT 'é'",
            "SELECT 'unterminated",
            "SELECT \"unterminated",
        ] {
            assert!(key(s).is_none(), "{s}");
        }
    }

    #[test]
    fn positions_round_trip() {
        let n = normalize("SELECT 'long string'; SELECT 123456;").unwrap();
        assert_eq!(n.to_key(21), 9);
        assert_eq!(n.to_text(9), 21);
        assert_eq!(n.to_text(n.to_key(36)), 36);
    }
}
