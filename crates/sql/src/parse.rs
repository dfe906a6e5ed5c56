//! Runs the C parser and the analysis with enough stack for the text at hand.

use crate::analyze::{self, Outcome};
use crate::{depth, Error, Limits};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Stack one tree level may take while the tree is decoded and dropped, with margin. The
/// cost depends on how the decoder was inlined into the final binary: the largest measured
/// are about 13.5 KiB with optimisation and 36 KiB without (see the crate README).
const PER_LEVEL: usize = if cfg!(debug_assertions) { 96 << 10 } else { 24 << 10 };

/// Stack for everything that does not grow with depth: the C parser, which measures the
/// stack it is given and refuses rather than overflow, our own frames, and error paths.
const BASE: usize = 512 << 10;

/// Stack needed to parse a text whose tree is at most `levels` deep.
pub(crate) const fn stack_for(levels: usize) -> usize {
    BASE + levels * PER_LEVEL
}

pub(crate) fn run(text: &str, limits: &Limits) -> Result<Outcome, Error> {
    let levels = depth::bound(text, limits.max_depth)?;
    let need = stack_for(levels);
    // Inline when the caller's thread has room: the common case, and much cheaper than a
    // thread hop. Otherwise on a thread of our own. (Not on a borrowed stack segment: the
    // C parser sizes its depth budget from the thread's real stack bounds.)
    match stacker::remaining_stack() {
        Some(left) if left >= need => parse_here(text, limits),
        _ => on_own_thread(need + (4 << 20), text, limits),
    }
}

fn on_own_thread(stack: usize, text: &str, limits: &Limits) -> Result<Outcome, Error> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("drawbridge-parse".into())
            .stack_size(stack)
            .spawn_scoped(scope, || parse_here(text, limits))
            .map_err(|e| Error::Internal(format!("cannot start a parser thread: {e}")))?
            .join()
            .map_err(|_| Error::Internal("the parser thread failed".into()))?
    })
}

fn parse_here(text: &str, limits: &Limits) -> Result<Outcome, Error> {
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        pg_query::parse(text, 0).map(|r| analyze::analyze(text, &r.protobuf))
    }));
    match parsed {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => {
            let msg = message(e);
            if msg.contains("stack depth limit exceeded") || msg.contains("nested too deeply") {
                Err(Error::TooDeep { max: limits.max_depth })
            } else {
                Err(Error::Syntax(msg))
            }
        }
        Err(_) => Err(Error::Internal("the parser failed on this text".into())),
    }
}

/// PostgreSQL's own message, without the wrapper's prefix.
pub(crate) fn message(e: pg_query::Error) -> String {
    match e {
        pg_query::Error::Parse(m) | pg_query::Error::Scan(m) => m,
        pg_query::Error::Conversion(_) => "statement text contains a zero byte".into(),
        other => other.to_string(),
    }
}
