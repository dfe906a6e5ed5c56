//! Where requests and grants live: one trait, an embedded and a shared implementation.
//!
//! Rows keep the full value as JSON plus the columns that queries filter on. Every change goes
//! through `update_*`, which reads, changes and writes one row inside a locking transaction, so
//! two gateways sharing a store can't both consume the same use or decide the same request.

mod postgres;
mod sqlite;

use chrono::{DateTime, Utc};

use crate::config::{Config, StoreKind};
use crate::error::Result;
use crate::model::{ApprovalEvent, Grant, Mode, Request, State};

pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;

pub(crate) const REQUESTS: &str = "drawbridge_approval_requests";
pub(crate) const GRANTS: &str = "drawbridge_approval_grants";

/// Which requests to list; newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub state: Option<State>,
    pub agent: Option<String>,
    pub target: Option<String>,
    pub limit: Option<u32>,
}

/// A change to one stored value; returns the event to record, or an error to leave it as it was.
pub type RequestChange<'a> = &'a mut dyn FnMut(&mut Request) -> Result<ApprovalEvent>;
pub type GrantChange<'a> = &'a mut dyn FnMut(&mut Grant) -> Result<ApprovalEvent>;

pub trait Store: Send {
    fn insert_request(&mut self, request: &Request) -> Result<()>;
    fn get_request(&mut self, id: &str) -> Result<Option<Request>>;
    fn list_requests(&mut self, filter: &Filter) -> Result<Vec<Request>>;
    /// Ids of requests with this fingerprint, mode and stored state, oldest first.
    fn find_by_fingerprint(
        &mut self,
        fingerprint: &str,
        mode: Mode,
        state: State,
    ) -> Result<Vec<String>>;
    /// Ids of pending or approved requests whose deadline is at or before `now`.
    fn due(&mut self, now: DateTime<Utc>) -> Result<Vec<String>>;
    /// Applies `change` atomically; nothing is written when it fails.
    fn update_request(
        &mut self,
        id: &str,
        change: RequestChange<'_>,
    ) -> Result<(Request, ApprovalEvent)>;

    fn insert_grant(&mut self, grant: &Grant) -> Result<()>;
    fn get_grant(&mut self, id: &str) -> Result<Option<Grant>>;
    /// All grants (newest first), or only those active at `active_at` (revoked ones excluded).
    fn list_grants(&mut self, active_at: Option<DateTime<Utc>>) -> Result<Vec<Grant>>;
    fn update_grant(&mut self, id: &str, change: GrantChange<'_>)
        -> Result<(Grant, ApprovalEvent)>;
}

/// Opens the configured store, creating its tables on first start. Blocking: keep it off async
/// worker threads (the PostgreSQL client runs its own runtime).
pub fn open(config: &Config) -> Result<Box<dyn Store>> {
    Ok(match config.store {
        StoreKind::Sqlite => Box::new(SqliteStore::open(&config.sqlite_path)?),
        StoreKind::Postgres => Box::new(PostgresStore::connect(&config.postgres_url()?)?),
    })
}

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// ` WHERE … ORDER BY created_ms DESC LIMIT …` with placeholders `{mark}1`, `{mark}2`, ….
pub(crate) fn filter_sql(filter: &Filter, mark: char) -> (String, Vec<String>) {
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    for (column, value) in [
        ("state", filter.state.map(|s| s.as_str().to_owned())),
        ("agent", filter.agent.clone()),
        ("target", filter.target.clone()),
    ] {
        if let Some(v) = value {
            params.push(v);
            clauses.push(format!("{column} = {mark}{}", params.len()));
        }
    }
    let mut sql = String::new();
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(" ORDER BY created_ms DESC, id");
    sql.push_str(&format!(" LIMIT {}", filter.limit.unwrap_or(1000)));
    (sql, params)
}
