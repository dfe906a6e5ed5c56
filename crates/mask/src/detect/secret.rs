//! Credentials with well-known shapes: API keys and tokens identified by their issuer's
//! fixed prefix and body length, and PEM-armoured private keys.

use memchr::memmem::Finder;
use std::ops::Range;
use std::sync::LazyLock;

#[derive(Clone, Copy)]
enum Body {
    Alnum,
    UpperDigit,
    AlnumUnderscore,
    AlnumDash,
    AlnumDashUnderscore,
}

impl Body {
    fn accepts(self, c: u8) -> bool {
        match self {
            Body::Alnum => c.is_ascii_alphanumeric(),
            Body::UpperDigit => c.is_ascii_uppercase() || c.is_ascii_digit(),
            Body::AlnumUnderscore => c.is_ascii_alphanumeric() || c == b'_',
            Body::AlnumDash => c.is_ascii_alphanumeric() || c == b'-',
            Body::AlnumDashUnderscore => c.is_ascii_alphanumeric() || c == b'-' || c == b'_',
        }
    }
}

struct Shape {
    prefix: &'static [u8],
    body: Body,
    min: usize,
    /// `Some(n)`: the body is exactly `n` characters.
    exact: Option<usize>,
}

const fn shape(prefix: &'static [u8], body: Body, min: usize, exact: Option<usize>) -> Shape {
    Shape {
        prefix,
        body,
        min,
        exact,
    }
}

const SHAPES: &[Shape] = &[
    // Payment-processor secret and restricted keys, webhook secrets.
    shape(b"sk_live_", Body::Alnum, 16, None),
    shape(b"sk_test_", Body::Alnum, 16, None),
    shape(b"rk_live_", Body::Alnum, 16, None),
    shape(b"rk_test_", Body::Alnum, 16, None),
    shape(b"whsec_", Body::Alnum, 24, None),
    // Cloud access key ids (long-term and temporary).
    shape(b"AKIA", Body::UpperDigit, 16, Some(16)),
    shape(b"ASIA", Body::UpperDigit, 16, Some(16)),
    // Source-hosting tokens.
    shape(b"ghp_", Body::Alnum, 36, Some(36)),
    shape(b"gho_", Body::Alnum, 36, Some(36)),
    shape(b"ghu_", Body::Alnum, 36, Some(36)),
    shape(b"ghs_", Body::Alnum, 36, Some(36)),
    shape(b"ghr_", Body::Alnum, 36, Some(36)),
    shape(b"github_pat_", Body::AlnumUnderscore, 22, None),
    shape(b"glpat-", Body::AlnumDashUnderscore, 20, None),
    // Chat workspace tokens.
    shape(b"xoxb-", Body::AlnumDash, 10, None),
    shape(b"xoxa-", Body::AlnumDash, 10, None),
    shape(b"xoxp-", Body::AlnumDash, 10, None),
    shape(b"xoxr-", Body::AlnumDash, 10, None),
    shape(b"xoxs-", Body::AlnumDash, 10, None),
    // Cloud API keys, package registry tokens, model API keys.
    shape(b"AIza", Body::AlnumDashUnderscore, 35, Some(35)),
    shape(b"npm_", Body::Alnum, 36, Some(36)),
    shape(b"sk-ant-", Body::AlnumDashUnderscore, 20, None),
    shape(b"sk-proj-", Body::AlnumDashUnderscore, 20, None),
];

/// Bytes that begin some prefix: most positions are rejected with one lookup.
const STARTS: [bool; 256] = {
    let mut t = [false; 256];
    let mut k = 0;
    while k < SHAPES.len() {
        t[SHAPES[k].prefix[0] as usize] = true;
        k += 1;
    }
    t
};

pub fn find(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    // Every prefix starts a word, so only word starts need checking.
    let mut i = 0;
    while i < b.len() {
        let word_start = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if word_start && STARTS[usize::from(b[i])] {
            let first = b[i];
            let mut shapes = SHAPES.iter().filter(|s| s.prefix[0] == first);
            if let Some(end) = shapes.find_map(|s| shape_at(s, b, i)) {
                out.push(i..end);
                i = end;
                continue;
            }
        }
        i += 1;
    }
    pem(b, &mut out);
    out.sort_unstable_by_key(|r| r.start);
    out
}

fn shape_at(s: &Shape, b: &[u8], i: usize) -> Option<usize> {
    if !b[i..].starts_with(s.prefix) {
        return None;
    }
    let body_start = i + s.prefix.len();
    let mut j = body_start;
    while j < b.len() && s.body.accepts(b[j]) {
        j += 1;
    }
    let n = j - body_start;
    (n >= s.min && s.exact.is_none_or(|e| e == n)).then_some(j)
}

const BEGIN: &[u8] = b"-----BEGIN ";
const DASHES: &[u8] = b"-----";

/// `-----BEGIN … PRIVATE KEY-----` through the matching END line. A key whose END line is
/// missing (truncated value) is masked to the end of the text.
fn pem(b: &[u8], out: &mut Vec<Range<usize>>) {
    let mut from = 0;
    static BEGIN_FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(BEGIN));
    while let Some(off) = BEGIN_FINDER.find(&b[from..]) {
        let i = from + off;
        let label_start = i + BEGIN.len();
        let label_end = match memchr::memmem::find(&b[label_start..], DASHES) {
            Some(k) if k <= 40 => label_start + k,
            _ => {
                from = label_start;
                continue;
            }
        };
        let label = &b[label_start..label_end];
        let is_private = label.ends_with(b"PRIVATE KEY")
            && label.iter().all(|c| c.is_ascii_uppercase() || *c == b' ');
        if !is_private {
            from = label_end;
            continue;
        }
        let body = label_end + DASHES.len();
        let mut end_marker = Vec::with_capacity(label.len() + 14);
        end_marker.extend_from_slice(b"-----END ");
        end_marker.extend_from_slice(label);
        end_marker.extend_from_slice(DASHES);
        let end = memchr::memmem::find(&b[body..], &end_marker)
            .map_or(b.len(), |k| body + k + end_marker.len());
        out.push(i..end);
        from = end;
    }
}
