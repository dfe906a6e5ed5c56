//! Rewriting of whole DataRow messages. Unmasked columns are copied in runs, masked
//! values are written straight into the output buffer, and the message length is patched
//! at the end, so a reused `out` needs no allocation per row.

use crate::plan::Plan;
use crate::value::{mask_value, Outcome};
use crate::Error;

/// What happened to one row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Values replaced (including those that became NULL).
    pub masked: u32,
    /// Of those, values that became NULL.
    pub nulled: u32,
    /// Substrings replaced in content-scanning columns.
    pub matches: u32,
}

impl Stats {
    /// True when the rewritten message differs from the input.
    pub fn changed(&self) -> bool {
        self.masked > 0
    }
}

/// Running per-column counts of masked values, for audit records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub per_column: Vec<u64>,
    pub rows: u64,
}

impl Tally {
    pub fn new(columns: usize) -> Self {
        Tally {
            per_column: vec![0; columns],
            rows: 0,
        }
    }
}

const HEADER: usize = 7;

/// Rewrites one DataRow message (`'D'`, length, column count, values) into `out`,
/// appending the whole rewritten message. On error nothing is appended.
pub fn rewrite_data_row(plan: &Plan, frame: &[u8], out: &mut Vec<u8>) -> Result<Stats, Error> {
    rewrite(plan, frame, out, None)
}

/// As [`rewrite_data_row`], also counting masked values per column into `tally`.
pub fn rewrite_data_row_tally(
    plan: &Plan,
    frame: &[u8],
    out: &mut Vec<u8>,
    tally: &mut Tally,
) -> Result<Stats, Error> {
    if tally.per_column.len() != plan.columns.len() {
        tally.per_column.resize(plan.columns.len(), 0);
    }
    tally.rows += 1;
    rewrite(plan, frame, out, Some(&mut tally.per_column))
}

fn rewrite(
    plan: &Plan,
    frame: &[u8],
    out: &mut Vec<u8>,
    per_column: Option<&mut Vec<u64>>,
) -> Result<Stats, Error> {
    let start = out.len();
    let r = rewrite_inner(plan, frame, out, per_column);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn read_i32(frame: &[u8], at: usize) -> Option<i32> {
    let b = frame.get(at..at + 4)?;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn rewrite_inner(
    plan: &Plan,
    frame: &[u8],
    out: &mut Vec<u8>,
    mut per_column: Option<&mut Vec<u64>>,
) -> Result<Stats, Error> {
    if frame.len() < HEADER || frame[0] != b'D' {
        return Err(Error::MalformedRow("not a DataRow"));
    }
    let len = read_i32(frame, 1).ok_or(Error::MalformedRow("truncated header"))?;
    if usize::try_from(len).ok().and_then(|l| l.checked_add(1)) != Some(frame.len()) {
        return Err(Error::MalformedRow("length field does not match the frame"));
    }
    let ncols = i16::from_be_bytes([frame[5], frame[6]]);
    let ncols = usize::try_from(ncols).map_err(|_| Error::MalformedRow("negative column count"))?;
    if ncols != plan.columns.len() {
        return Err(Error::ColumnCount {
            expected: plan.columns.len(),
            found: ncols,
        });
    }

    let start = out.len();
    out.reserve(frame.len() + 64);
    let mut stats = Stats::default();
    // frame[copied..] has not yet been written to `out`.
    let mut copied = 0;
    let mut pos = HEADER;
    for (i, col) in plan.columns.iter().enumerate() {
        let vlen = read_i32(frame, pos).ok_or(Error::MalformedRow("truncated value length"))?;
        let hdr = pos;
        pos += 4;
        if vlen == -1 {
            continue;
        }
        let vlen =
            usize::try_from(vlen).map_err(|_| Error::MalformedRow("negative value length"))?;
        let end = pos
            .checked_add(vlen)
            .filter(|&e| e <= frame.len())
            .ok_or(Error::MalformedRow("value runs past the frame"))?;
        let Some(mask) = col else {
            pos = end;
            continue;
        };
        out.extend_from_slice(&frame[copied..hdr]);
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let replaced = match mask_value(mask, mask.format, &plan.key, &frame[pos..end], out) {
            Outcome::Unchanged => {
                out.truncate(len_at);
                copied = hdr;
                false
            }
            Outcome::Null => {
                out.truncate(len_at);
                out.extend_from_slice(&(-1i32).to_be_bytes());
                stats.nulled += 1;
                true
            }
            Outcome::Written { matches } => {
                let n = i32::try_from(out.len() - len_at - 4).map_err(|_| Error::TooLong)?;
                out[len_at..len_at + 4].copy_from_slice(&n.to_be_bytes());
                stats.matches += matches;
                true
            }
        };
        if replaced {
            copied = end;
            stats.masked += 1;
            if let Some(pc) = per_column.as_deref_mut() {
                pc[i] += 1;
            }
        }
        pos = end;
    }
    if pos != frame.len() {
        return Err(Error::MalformedRow("trailing bytes after the last value"));
    }
    out.extend_from_slice(&frame[copied..]);
    let total = i32::try_from(out.len() - start - 1).map_err(|_| Error::TooLong)?;
    out[start + 1..start + 5].copy_from_slice(&total.to_be_bytes());
    Ok(stats)
}
