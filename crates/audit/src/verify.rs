//! Checking a store: every hash, every link, every checkpoint signature, and the tail.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::Path;

use ed25519_dalek::VerifyingKey;

use crate::error::{Error, Result};
use crate::record::{parse_hash, Checkpoint, Hash, GENESIS};
use crate::store::{Order, Query, Store};

/// How far from its position a moved record is still recognised.
const MOVE_WINDOW: u64 = 16;
/// Problems listed per stream before the rest are only counted (a renumbering breaks every
/// record after it).
const MAX_PROBLEMS_PER_STREAM: usize = 50;

/// One thing wrong, naming the record when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub stream: String,
    pub seq: Option<u64>,
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "stream {} seq {}: {}", self.stream, seq, self.what),
            None => write!(f, "stream {}: {}", self.stream, self.what),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamSummary {
    pub stream: String,
    pub records: u64,
    pub last_seq: u64,
    pub checkpoints: u64,
    /// Newest seq covered by a valid checkpoint; records after it are chained but not signed.
    pub sealed_seq: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub streams: Vec<StreamSummary>,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "PROBLEM {p}")?;
        }
        for s in &self.streams {
            writeln!(
                f,
                "stream {}: {} records (seq 1..={}), {} checkpoints, sealed through seq {}{}",
                s.stream,
                s.records,
                s.last_seq,
                s.checkpoints,
                s.sealed_seq,
                if s.last_seq > s.sealed_seq {
                    format!(" ({} newer records not yet sealed)", s.last_seq - s.sealed_seq)
                } else {
                    String::new()
                }
            )?;
        }
        if self.ok() {
            write!(f, "OK: {} streams verified", self.streams.len())
        } else {
            write!(f, "FAILED: {} problems", self.problems.len())
        }
    }
}

/// What `verify` trusts besides the records themselves.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Keys whose checkpoint signatures count; a checkpoint signed by any other key is a problem.
    pub trusted_keys: Vec<VerifyingKey>,
    /// Checkpoints kept outside the store (`checkpoint_file`), compared with the store's.
    pub checkpoint_file: Option<std::path::PathBuf>,
}

/// Reads a checkpoint file: one JSON checkpoint per line.
pub fn read_checkpoint_file(path: &Path) -> Result<Vec<Checkpoint>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("reading checkpoint file", path, e)),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| Error::Store(format!("{} line {}: {e}", path.display(), i + 1)))
        })
        .collect()
}

struct StreamCheck<'a> {
    stream: &'a str,
    problems: Vec<Problem>,
    dropped: usize,
}

impl StreamCheck<'_> {
    fn problem(&mut self, seq: Option<u64>, what: String) {
        if self.problems.len() < MAX_PROBLEMS_PER_STREAM {
            self.problems.push(Problem {
                stream: self.stream.to_owned(),
                seq,
                what,
            });
        } else {
            self.dropped += 1;
        }
    }
}

/// Verifies every stream in the store.
pub fn verify_store(store: &mut dyn Store, opts: &VerifyOptions) -> Result<Report> {
    let file_cps = match &opts.checkpoint_file {
        Some(p) => read_checkpoint_file(p)?,
        None => Vec::new(),
    };
    let mut streams = store.streams()?;
    for cp in &file_cps {
        if !streams.contains(&cp.stream) {
            streams.push(cp.stream.clone());
        }
    }
    let mut report = Report::default();
    for stream in streams {
        let from_file: Vec<&Checkpoint> = file_cps.iter().filter(|c| c.stream == stream).collect();
        let (summary, problems) = verify_stream(store, &stream, &from_file, opts)?;
        report.streams.push(summary);
        report.problems.extend(problems);
    }
    Ok(report)
}

fn verify_stream(
    store: &mut dyn Store,
    stream: &str,
    file_cps: &[&Checkpoint],
    opts: &VerifyOptions,
) -> Result<(StreamSummary, Vec<Problem>)> {
    let mut check = StreamCheck {
        stream,
        problems: Vec::new(),
        dropped: 0,
    };
    let mut summary = StreamSummary {
        stream: stream.to_owned(),
        ..Default::default()
    };

    // Checkpoints by seq: the store's, plus any only the checkpoint file still has.
    let mut cps: BTreeMap<u64, Checkpoint> = BTreeMap::new();
    for cp in store.checkpoints(stream)? {
        cps.insert(cp.seq, cp);
    }
    for cp in file_cps {
        match cps.get(&cp.seq) {
            Some(existing) if existing.hash == cp.hash && existing.signature == cp.signature => {}
            Some(_) => check.problem(
                Some(cp.seq),
                "checkpoint in the store differs from the one in the checkpoint file".into(),
            ),
            None => {
                check.problem(Some(cp.seq), "checkpoint in the checkpoint file is missing from the store".into());
                cps.insert(cp.seq, (*cp).clone());
            }
        }
    }
    summary.checkpoints = cps.len() as u64;
    let cp_seqs: HashSet<u64> = cps.keys().copied().collect();
    let mut hashes_at_cps: HashMap<u64, Hash> = HashMap::new();

    let mut expected = 1u64;
    let mut prev_hash = GENESIS;
    let mut prev_had_problem = false;
    let mut prev_shift: Option<i128> = None;
    let mut prev_self_ok = true;
    // Recent (seq, hash) pairs, to recognise records shifted by an insertion.
    let mut recent: VecDeque<(u64, Hash)> = VecDeque::new();
    let query = Query {
        stream: Some(stream.to_owned()),
        order: Order::Chain,
        ..Default::default()
    };
    store.scan(&query, &mut |r| {
        summary.records += 1;
        summary.last_seq = r.seq;
        let mut gap = false;
        if r.seq < expected {
            check.problem(Some(r.seq), "sequence number appears more than once".into());
        } else if r.seq > expected {
            gap = true;
            let what = if r.seq == expected + 1 {
                "record missing (deleted)".to_owned()
            } else {
                format!("records {expected}..={} missing (deleted)", r.seq - 1)
            };
            check.problem(Some(expected), what);
        }
        let mut has_problem = false;
        let mut shift = None;
        if r.computed_hash_at(r.seq) != r.hash {
            has_problem = true;
            let lo = r.seq.saturating_sub(MOVE_WINDOW).max(1);
            let written_as = (lo..=r.seq + MOVE_WINDOW).find(|&d| d != r.seq && r.computed_hash_at(d) == r.hash);
            shift = written_as.map(|d| r.seq as i128 - d as i128);
            match written_as {
                // Same renumbering as the record before, still linked: already reported.
                Some(_) if shift == prev_shift && r.prev_hash == prev_hash => {}
                Some(d) if d < r.seq && prev_self_ok && recent.iter().any(|&(s, h)| s == d - 1 && h == r.prev_hash) => {
                    let what = if d + 1 == r.seq {
                        format!("record inserted: the record now at seq {} was written as seq {d} and follows seq {} directly (later records renumbered too)", r.seq, d - 1)
                    } else {
                        format!(
                            "records inserted up to seq {}: the record now at seq {} was written as seq {d} and follows seq {} directly",
                            r.seq - 1,
                            r.seq,
                            d - 1
                        )
                    };
                    check.problem(Some(d), what);
                }
                Some(d) => check.problem(
                    Some(r.seq),
                    format!("record was written as seq {d} (records reordered, or one deleted or inserted before it)"),
                ),
                None => check.problem(Some(r.seq), "content does not match its hash (record edited)".into()),
            }
        } else if !gap && r.seq >= expected && r.prev_hash != prev_hash && !prev_had_problem {
            has_problem = true;
            check.problem(
                Some(r.seq),
                format!(
                    "does not follow seq {}: its prev_hash differs from that record's hash (seq {} was altered and rehashed, or this one was replaced)",
                    r.seq.saturating_sub(1),
                    r.seq.saturating_sub(1)
                ),
            );
        }
        if cp_seqs.contains(&r.seq) {
            hashes_at_cps.insert(r.seq, r.hash);
        }
        prev_had_problem = has_problem;
        prev_shift = shift;
        prev_self_ok = shift.is_none() && r.computed_hash_at(r.seq) == r.hash;
        prev_hash = r.hash;
        expected = expected.max(r.seq + 1);
        recent.push_back((r.seq, r.hash));
        if recent.len() > (2 * MOVE_WINDOW) as usize {
            recent.pop_front();
        }
        Ok(true)
    })?;

    for cp in cps.values() {
        let signer = match cp.check_signature() {
            Ok(k) => k,
            Err(why) => {
                check.problem(Some(cp.seq), format!("checkpoint is not valid: {why}"));
                continue;
            }
        };
        if !opts.trusted_keys.contains(&signer) {
            check.problem(Some(cp.seq), format!("checkpoint signed by untrusted key {}", cp.key));
            continue;
        }
        if cp.seq > summary.last_seq {
            check.problem(
                Some(summary.last_seq + 1),
                format!(
                    "store truncated: it ends at seq {} but a signed checkpoint covers seq {} (records {}..={} deleted)",
                    summary.last_seq,
                    cp.seq,
                    summary.last_seq + 1,
                    cp.seq
                ),
            );
            continue;
        }
        match (hashes_at_cps.get(&cp.seq), parse_hash(&cp.hash)) {
            (Some(h), Ok(signed)) if *h == signed => summary.sealed_seq = summary.sealed_seq.max(cp.seq),
            (Some(_), _) => check.problem(
                Some(cp.seq),
                "record does not match the hash its checkpoint signed (altered after sealing)".into(),
            ),
            (None, _) => check.problem(Some(cp.seq), "record covered by a checkpoint is missing".into()),
        }
    }
    if check.dropped > 0 {
        let dropped = check.dropped;
        check.dropped = 0;
        check.problems.push(Problem {
            stream: stream.to_owned(),
            seq: None,
            what: format!("{dropped} further problems not listed"),
        });
    }
    Ok((summary, check.problems))
}
