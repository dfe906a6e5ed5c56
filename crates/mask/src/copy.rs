//! Rewriting of `COPY … TO STDOUT` data in text and CSV formats. Each CopyData message
//! from the server carries one row; fields are parsed, masked fields re-encoded, and all
//! other fields copied byte for byte.

use crate::data_row::Stats;
use crate::plan::{Format, Plan};
use crate::value::{mask_value, Outcome};
use crate::Error;

/// The COPY options that shape the data lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFormat {
    /// `FORMAT text`: delimiter (default tab), null string (default `\N`), backslash escapes.
    Text {
        delimiter: u8,
        null: Box<[u8]>,
        header: bool,
    },
    /// `FORMAT csv`: delimiter (default `,`), quote and escape (default `"`), null string
    /// (default empty, unquoted).
    Csv {
        delimiter: u8,
        quote: u8,
        escape: u8,
        null: Box<[u8]>,
        header: bool,
    },
}

impl CopyFormat {
    pub fn text() -> Self {
        CopyFormat::Text {
            delimiter: b'\t',
            null: b"\\N".as_slice().into(),
            header: false,
        }
    }

    pub fn csv() -> Self {
        CopyFormat::Csv {
            delimiter: b',',
            quote: b'"',
            escape: b'"',
            null: Box::default(),
            header: false,
        }
    }

    fn header(&self) -> bool {
        match self {
            CopyFormat::Text { header, .. } | CopyFormat::Csv { header, .. } => *header,
        }
    }
}

/// Rewrites the lines of one COPY, passing its header line (if any) unchanged.
#[derive(Debug, Clone)]
pub struct CopyRewriter {
    plan: Plan,
    format: CopyFormat,
    header_pending: bool,
    scratch: Scratch,
}

#[derive(Debug, Clone, Default)]
struct Scratch {
    decoded: Vec<u8>,
    masked: Vec<u8>,
}

impl CopyRewriter {
    pub fn new(plan: Plan, format: CopyFormat) -> Self {
        let header_pending = format.header();
        CopyRewriter {
            plan,
            format,
            header_pending,
            scratch: Scratch::default(),
        }
    }

    /// Rewrites the payload of one CopyData message, appending to `out`.
    pub fn rewrite(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<Stats, Error> {
        if self.header_pending {
            self.header_pending = false;
            out.extend_from_slice(line);
            return Ok(Stats::default());
        }
        rewrite_with(&self.plan, &self.format, line, out, &mut self.scratch)
    }
}

/// Rewrites one data line (header lines must not be passed here; see [`CopyRewriter`]).
/// On error nothing is appended.
pub fn rewrite_copy_line(
    plan: &Plan,
    format: &CopyFormat,
    line: &[u8],
    out: &mut Vec<u8>,
) -> Result<Stats, Error> {
    rewrite_with(plan, format, line, out, &mut Scratch::default())
}

fn rewrite_with(
    plan: &Plan,
    format: &CopyFormat,
    line: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
) -> Result<Stats, Error> {
    let start = out.len();
    let r = match format {
        CopyFormat::Text {
            delimiter, null, ..
        } => text_line(plan, *delimiter, null, line, out, scratch),
        CopyFormat::Csv {
            delimiter,
            quote,
            escape,
            null,
            ..
        } => {
            let csv = Csv {
                delimiter: *delimiter,
                quote: *quote,
                escape: *escape,
                null,
            };
            csv_line(plan, &csv, line, out, scratch)
        }
    };
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn split_terminator(line: &[u8]) -> (&[u8], &[u8]) {
    match line.strip_suffix(b"\n") {
        Some(body) => (body, b"\n"),
        None => (line, b""),
    }
}

/// What to emit for one masked field.
enum Field<'a> {
    Raw,
    Null,
    Value(&'a [u8]),
}

fn mask_field<'s>(
    plan: &Plan,
    col: usize,
    decoded: &[u8],
    masked: &'s mut Vec<u8>,
    stats: &mut Stats,
) -> Field<'s> {
    let Some(Some(m)) = plan.columns.get(col) else {
        return Field::Raw;
    };
    masked.clear();
    // COPY's text and CSV formats carry each value's text form.
    match mask_value(m, Format::Text, &plan.key, decoded, masked) {
        Outcome::Unchanged => Field::Raw,
        Outcome::Null => {
            stats.masked += 1;
            stats.nulled += 1;
            Field::Null
        }
        Outcome::Written { matches } => {
            stats.masked += 1;
            stats.matches += matches;
            Field::Value(masked)
        }
    }
}

fn is_masked(plan: &Plan, col: usize) -> bool {
    matches!(plan.columns.get(col), Some(Some(_)))
}

fn text_line(
    plan: &Plan,
    delim: u8,
    null: &[u8],
    line: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
) -> Result<Stats, Error> {
    let (body, term) = split_terminator(line);
    if body == b"\\." {
        out.extend_from_slice(line);
        return Ok(Stats::default());
    }
    let mut stats = Stats::default();
    let mut col = 0;
    let mut i = 0;
    loop {
        // Find the field's end: the next delimiter not preceded by an escaping backslash.
        let fstart = i;
        while i < body.len() && body[i] != delim {
            i += if body[i] == b'\\' { 2 } else { 1 };
        }
        if i > body.len() {
            return Err(Error::MalformedCopy("line ends inside an escape"));
        }
        let raw = &body[fstart..i];
        if col > 0 {
            out.push(delim);
        }
        if !is_masked(plan, col) || raw == null {
            out.extend_from_slice(raw);
        } else {
            unescape_text(raw, &mut scratch.decoded);
            match mask_field(plan, col, &scratch.decoded, &mut scratch.masked, &mut stats) {
                Field::Raw => out.extend_from_slice(raw),
                Field::Null => out.extend_from_slice(null),
                Field::Value(v) => escape_text(v, delim, out),
            }
        }
        col += 1;
        if i == body.len() {
            break;
        }
        i += 1;
    }
    if col != plan.columns.len() {
        return Err(Error::FieldCount {
            expected: plan.columns.len(),
            found: col,
        });
    }
    out.extend_from_slice(term);
    Ok(stats)
}

fn unescape_text(raw: &[u8], dst: &mut Vec<u8>) {
    dst.clear();
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c != b'\\' || i + 1 == raw.len() {
            dst.push(c);
            i += 1;
            continue;
        }
        let e = raw[i + 1];
        i += 2;
        match e {
            b'b' => dst.push(0x08),
            b'f' => dst.push(0x0c),
            b'n' => dst.push(b'\n'),
            b'r' => dst.push(b'\r'),
            b't' => dst.push(b'\t'),
            b'v' => dst.push(0x0b),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                let mut k = 0;
                while k < 2 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                    v = v * 8 + u32::from(raw[i] - b'0');
                    i += 1;
                    k += 1;
                }
                dst.push((v & 0xff) as u8);
            }
            b'x' if i < raw.len() && raw[i].is_ascii_hexdigit() => {
                let mut v = 0u32;
                let mut k = 0;
                while k < 2 && i < raw.len() && raw[i].is_ascii_hexdigit() {
                    v = v * 16 + (raw[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    k += 1;
                }
                dst.push((v & 0xff) as u8);
            }
            other => dst.push(other),
        }
    }
}

fn escape_text(v: &[u8], delim: u8, out: &mut Vec<u8>) {
    for &c in v {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0b => out.extend_from_slice(b"\\v"),
            c if c == delim => {
                out.push(b'\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

struct Csv<'a> {
    delimiter: u8,
    quote: u8,
    escape: u8,
    null: &'a [u8],
}

fn csv_line(
    plan: &Plan,
    csv: &Csv<'_>,
    line: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
) -> Result<Stats, Error> {
    let (body, term) = split_terminator(line);
    let mut stats = Stats::default();
    let mut col = 0;
    let mut i = 0;
    loop {
        let fstart = i;
        let quoted = body.get(i) == Some(&csv.quote);
        let masked = is_masked(plan, col);
        if masked {
            scratch.decoded.clear();
        }
        if quoted {
            i += 1;
            loop {
                let c = *body
                    .get(i)
                    .ok_or(Error::MalformedCopy("unterminated quoted field"))?;
                let next = body.get(i + 1).copied();
                if c == csv.escape
                    && csv.escape != csv.quote
                    && (next == Some(csv.quote) || next == Some(csv.escape))
                {
                    if masked {
                        scratch.decoded.push(body[i + 1]);
                    }
                    i += 2;
                } else if c == csv.quote {
                    if csv.escape == csv.quote && next == Some(csv.quote) {
                        if masked {
                            scratch.decoded.push(c);
                        }
                        i += 2;
                    } else {
                        i += 1;
                        break;
                    }
                } else {
                    if masked {
                        scratch.decoded.push(c);
                    }
                    i += 1;
                }
            }
            if i < body.len() && body[i] != csv.delimiter {
                return Err(Error::MalformedCopy("data after a closing quote"));
            }
        } else {
            i = memchr::memchr(csv.delimiter, &body[i..]).map_or(body.len(), |k| i + k);
            if masked {
                scratch.decoded.extend_from_slice(&body[fstart..i]);
            }
        }
        let raw = &body[fstart..i];
        if col > 0 {
            out.push(csv.delimiter);
        }
        let is_null = !quoted && raw == csv.null;
        if !masked || is_null {
            out.extend_from_slice(raw);
        } else {
            match mask_field(plan, col, &scratch.decoded, &mut scratch.masked, &mut stats) {
                Field::Raw => out.extend_from_slice(raw),
                Field::Null => out.extend_from_slice(csv.null),
                Field::Value(v) => quote_csv(v, csv, out),
            }
        }
        col += 1;
        if i >= body.len() {
            break;
        }
        i += 1;
    }
    if col != plan.columns.len() {
        return Err(Error::FieldCount {
            expected: plan.columns.len(),
            found: col,
        });
    }
    out.extend_from_slice(term);
    Ok(stats)
}

/// Masked values are always quoted, so none can be mistaken for the null string.
fn quote_csv(v: &[u8], csv: &Csv<'_>, out: &mut Vec<u8>) {
    out.push(csv.quote);
    for &c in v {
        if c == csv.quote || c == csv.escape {
            out.push(csv.escape);
        }
        out.push(c);
    }
    out.push(csv.quote);
}
