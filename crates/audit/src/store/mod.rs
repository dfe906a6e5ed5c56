//! Where records live after the journal: one trait, an embedded and a shared implementation.

mod postgres;
mod sqlite;

use std::path::Path;

use crate::config::{Config, StoreKind};
use crate::error::Result;
use crate::record::{Checkpoint, Record, RecordRef};

pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;

/// Table names; prefixed so the shared store can live in an application database.
pub(crate) const RECORDS: &str = "drawbridge_audit_records";
pub(crate) const CHECKPOINTS: &str = "drawbridge_audit_checkpoints";
/// The embedded store's map from a session to the span of sequence numbers holding it.
pub(crate) const SESSIONS: &str = "drawbridge_audit_sessions";

/// Order of scanned records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// By stream, then sequence number: the chain order `verify` needs.
    #[default]
    Chain,
    /// Oldest first across streams.
    Time,
    /// Newest first within one stream (used for `tail`).
    ChainDesc,
}

/// Which records to scan. Times are RFC 3339 UTC strings in the stored format.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub stream: Option<String>,
    pub after_seq: Option<u64>,
    pub session: Option<String>,
    pub kind: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub order: Order,
    pub limit: Option<u64>,
}

pub(crate) enum Param {
    Text(String),
    Int(i64),
}

impl Query {
    /// ` WHERE … ORDER BY … LIMIT …` with placeholders `{mark}1`, `{mark}2`, …; `session`
    /// is the clause that picks one session's records, its parameter written `#`.
    pub(crate) fn sql(&self, mark: char, session: &str) -> (String, Vec<Param>) {
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        let mut add = |clause: &str, p: Param| {
            params.push(p);
            clauses.push(clause.replace('#', &format!("{mark}{}", params.len())));
        };
        if let Some(s) = &self.stream {
            add("stream = #", Param::Text(s.clone()));
        }
        if let Some(n) = self.after_seq {
            add("seq > #", Param::Int(i64::try_from(n).unwrap_or(i64::MAX)));
        }
        if let Some(s) = &self.session {
            add(session, Param::Text(s.clone()));
        }
        if let Some(k) = &self.kind {
            add("kind = #", Param::Text(k.clone()));
        }
        if let Some(t) = &self.since {
            add("at >= #", Param::Text(t.clone()));
        }
        if let Some(t) = &self.until {
            add("at < #", Param::Text(t.clone()));
        }
        let mut sql = String::new();
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(match self.order {
            Order::Chain => " ORDER BY stream, seq",
            Order::Time => " ORDER BY at, stream, seq",
            Order::ChainDesc => " ORDER BY stream, seq DESC",
        });
        if let Some(n) = self.limit {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        (sql, params)
    }
}

/// A malformed stored hash becomes a value no record hashes to, so `verify` reports the
/// record instead of stopping.
pub(crate) fn parse_stored_hash(text: &str) -> crate::record::Hash {
    crate::record::parse_hash(text).unwrap_or([0xff; 32])
}

pub(crate) const RECORD_COLUMNS: &str = "stream, seq, at, prev_hash, hash, kind, session, event";

/// A place records are kept. Inserts are idempotent by (stream, seq).
pub trait Store: Send {
    /// Writes all records in one transaction; ones already present are left alone.
    fn insert(&mut self, records: &[RecordRef<'_>]) -> Result<()>;
    fn last_record(&mut self, stream: &str) -> Result<Option<Record>>;
    fn insert_checkpoint(&mut self, cp: &Checkpoint) -> Result<()>;
    /// All checkpoints of a stream, oldest first.
    fn checkpoints(&mut self, stream: &str) -> Result<Vec<Checkpoint>>;
    /// Streams with records or checkpoints.
    fn streams(&mut self) -> Result<Vec<String>>;
    /// Calls `f` for each matching record until it returns `Ok(false)`.
    fn scan(&mut self, query: &Query, f: &mut dyn FnMut(Record) -> Result<bool>) -> Result<()>;
    /// Re-establishes a lost connection; stores without connections need nothing.
    fn reconnect(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Opens (and on first use creates) the configured store.
pub fn open(cfg: &Config, base_dir: &Path) -> Result<Box<dyn Store>> {
    Ok(match cfg.store {
        StoreKind::Sqlite => Box::new(SqliteStore::open(&cfg.resolve(base_dir, &cfg.sqlite_path))?),
        StoreKind::Postgres => Box::new(PostgresStore::connect(&cfg.postgres_url()?)?),
    })
}
