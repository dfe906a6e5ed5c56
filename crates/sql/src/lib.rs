//! Statement analysis for Drawbridge on libpg_query (PostgreSQL's own parser).
//!
//! `Analyzer::analyze` turns a message's SQL text into [`Analysis`]: one [`Statement`] of
//! facts per statement. Oversize, too-deeply-nested and unparseable input is an error,
//! never a crash. Results are cached.
#![forbid(unsafe_code)]

mod analyze;
mod depth;
pub mod facts;
mod key;
mod lineage;
mod redact;
mod normalize;
mod parse;
mod walk;

pub use analyze::encoding_is_safe;
pub use redact::redact_secrets;
pub use facts::{
    Analysis, ColumnSource, CopyOptions, Function, Lineage, Operation, Output, Pinned, Relation, Sources, Statement, Table,
    Transaction,
};

use quick_cache::sync::Cache;
use quick_cache::Weighter;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Thread stack with which every statement within the default [`Limits`] is analysed on
/// the calling thread. A thread with less still works: a statement that might not fit then
/// runs on a short-lived thread of its own, which costs tens of microseconds.
pub const MIN_CALLER_STACK: usize = if cfg!(debug_assertions) { 128 << 20 } else { 32 << 20 };

/// Why a text could not be analysed. Every variant is a refusal reason the agent may see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("statement is {len} bytes, over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("statement nests deeper than the limit of {max}")]
    TooDeep { max: usize },
    #[error("statement could not be parsed: {0}")]
    Syntax(String),
    #[error("statement could not be analysed: {0}")]
    Internal(String),
    /// Parsed, but it would make the target read later SQL text differently from the
    /// gateway's parser.
    #[error("{0}")]
    Unsupported(String),
}

/// Input bounds.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_bytes: usize,
    /// Parse-tree levels, as bounded before parsing (roughly: operators chained at one
    /// bracket level, plus brackets, plus keywords, summed along the deepest path).
    pub max_depth: usize,
    /// Memory budget of each of the two result caches, in bytes (approximate).
    pub cache_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 1 << 20, max_depth: 1000, cache_bytes: 64 << 20 }
    }
}

#[derive(Clone)]
struct Weight;

impl<K: AsRef<str>> Weighter<K, Arc<Analysis>> for Weight {
    fn weight(&self, key: &K, val: &Arc<Analysis>) -> u64 {
        let lineage: usize = val
            .statements
            .iter()
            .filter_map(|s| s.result.as_deref())
            .flat_map(|l| &l.outputs)
            .map(|o| 48 + 64 * (o.sources().columns.len() + o.sources().rows.len()))
            .sum();
        (key.as_ref().len() + 64 + 256 * val.statements.len() + lineage) as u64
    }
}

/// Thread-safe analyser with a cache of recent results.
pub struct Analyzer {
    limits: Limits,
    /// By exact text.
    exact: Cache<String, Arc<Analysis>, Weight>,
    /// By text with literal values blanked; ranges in key coordinates.
    normalized: Cache<String, Arc<Analysis>, Weight>,
    exact_hits: AtomicU64,
    normalized_hits: AtomicU64,
    misses: AtomicU64,
}

/// Counts of how `analyze` calls were answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub exact_hits: u64,
    pub normalized_hits: u64,
    /// Parsed (including texts refused as too large, too deep or invalid).
    pub misses: u64,
}

impl Analyzer {
    pub fn new(limits: Limits) -> Self {
        let items = (limits.cache_bytes / 512).max(16) as usize;
        Analyzer {
            exact: Cache::with_weighter(items, limits.cache_bytes, Weight),
            normalized: Cache::with_weighter(items, limits.cache_bytes, Weight),
            limits,
            exact_hits: AtomicU64::new(0),
            normalized_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            exact_hits: self.exact_hits.load(Relaxed),
            normalized_hits: self.normalized_hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Analyse one message's SQL text (one or more statements).
    pub fn analyze(&self, text: &str) -> Result<Arc<Analysis>, Error> {
        self.analyze_shaped(text).map(|(a, _)| a)
    }

    /// The text with its literal values blanked, when the fast normaliser can read it. Two
    /// texts of one shape differ only in literal values.
    pub fn shape_of(&self, text: &str) -> Option<String> {
        normalize::normalize(text).map(|n| n.key)
    }

    /// Like `analyze`, and also the text's shape when its facts hold for every text of that
    /// shape (no fact depended on a literal's value), so a caller may reuse what it derived
    /// from them for any text of the same shape.
    pub fn analyze_shaped(&self, text: &str) -> Result<(Arc<Analysis>, Option<String>), Error> {
        if text.len() > self.limits.max_bytes {
            return Err(Error::TooLarge { len: text.len(), max: self.limits.max_bytes });
        }
        let normalized = normalize::normalize(text);
        if let Some(hit) = self.exact.get(text) {
            self.exact_hits.fetch_add(1, Relaxed);
            let shape = normalized.filter(|n| self.normalized.get(n.key.as_str()).is_some()).map(|n| n.key);
            return Ok((hit, shape));
        }
        if let Some(n) = &normalized {
            if let Some(shared) = self.normalized.get(n.key.as_str()) {
                self.normalized_hits.fetch_add(1, Relaxed);
                return Ok((Arc::new(n.adopt(&shared)), Some(n.key.clone())));
            }
        }
        self.misses.fetch_add(1, Relaxed);
        let outcome = parse::run(text, &self.limits)?;
        let analysis = Arc::new(outcome.analysis);
        self.exact.insert(text.to_owned(), Arc::clone(&analysis));
        // Facts that looked at a constant's value hold only for that value.
        if let (Some(n), false) = (normalized, outcome.read_constants) {
            let shared = Arc::new(n.share(&analysis));
            self.normalized.insert(n.key.clone(), shared);
            return Ok((analysis, Some(n.key)));
        }
        Ok((analysis, None))
    }

    /// Analyse without consulting or filling the caches.
    pub fn analyze_uncached(&self, text: &str) -> Result<Analysis, Error> {
        if text.len() > self.limits.max_bytes {
            return Err(Error::TooLarge { len: text.len(), max: self.limits.max_bytes });
        }
        parse::run(text, &self.limits).map(|o| o.analysis)
    }
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new(Limits::default())
    }
}

/// Stack needed to analyse any statement within `limits` without a temporary segment.
pub fn stack_needed(limits: &Limits) -> usize {
    parse::stack_for(limits.max_depth + depth::SLACK)
}
