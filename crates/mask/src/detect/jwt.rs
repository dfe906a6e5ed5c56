//! JSON Web Tokens: three base64url segments whose header decodes to a JSON object with
//! an `alg` member and whose payload decodes to a JSON object.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use memchr::memmem::Finder;
use std::ops::Range;
use std::sync::LazyLock;

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

pub fn find(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    // Every JSON object header encodes to a segment starting `eyJ` (`{"`).
    static FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"eyJ"));
    while let Some(off) = FINDER.find(&b[from..]) {
        let i = from + off;
        let prev_ok = i == 0 || !(is_b64url(b[i - 1]) || b[i - 1] == b'.');
        match prev_ok.then(|| match_at(b, i)).flatten() {
            Some(end) => {
                out.push(i..end);
                from = end;
            }
            None => from = i + 1,
        }
    }
    out
}

fn segment(b: &[u8], start: usize) -> usize {
    let mut j = start;
    while j < b.len() && is_b64url(b[j]) {
        j += 1;
    }
    j
}

fn match_at(b: &[u8], i: usize) -> Option<usize> {
    let h_end = segment(b, i);
    if b.get(h_end) != Some(&b'.') {
        return None;
    }
    let p_end = segment(b, h_end + 1);
    if p_end == h_end + 1 || b.get(p_end) != Some(&b'.') {
        return None;
    }
    // The signature may be empty for unsecured tokens.
    let s_end = segment(b, p_end + 1);
    if b.get(s_end) == Some(&b'.') {
        return None;
    }
    let header = URL_SAFE_NO_PAD.decode(&b[i..h_end]).ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    if !header.get("alg").is_some_and(serde_json::Value::is_string) {
        return None;
    }
    let payload = URL_SAFE_NO_PAD.decode(&b[h_end + 1..p_end]).ok()?;
    let first = payload.iter().find(|c| !c.is_ascii_whitespace())?;
    (*first == b'{').then_some(s_end)
}
