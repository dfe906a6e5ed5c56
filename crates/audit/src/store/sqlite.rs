//! The embedded store: one SQLite file in WAL mode.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension as _};

use super::{Param, Query, Store, CHECKPOINTS, RECORDS, RECORD_COLUMNS, SESSIONS};
use crate::error::{Error, Result};
use super::parse_stored_hash;
use crate::record::{Checkpoint, HashHex, Record, RecordRef};

pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Records are ~500 bytes; 16 KiB pages (instead of 4) cut the writer's CPU per record
        // by about a sixth: fewer page splits and page fetches per batch. Only a new file
        // takes it; an existing store keeps its page size.
        conn.pragma_update(None, "page_size", 16384)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // The journal already guards against a process crash; NORMAL keeps commits cheap.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Records are appended at the end of the tree, so the same few pages change in every
        // batch; checkpointing less often writes each of them to the database file once per
        // checkpoint instead of over and over (the WAL may reach ~40 MB between checkpoints).
        conn.pragma_update(None, "wal_autocheckpoint", 2_500)?; // pages
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {RECORDS} (
                stream TEXT NOT NULL,
                seq INTEGER NOT NULL,
                at TEXT NOT NULL,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL,
                kind TEXT NOT NULL,
                session TEXT,
                event TEXT NOT NULL,
                PRIMARY KEY (stream, seq)
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (
                stream TEXT NOT NULL,
                seq INTEGER NOT NULL,
                at TEXT NOT NULL,
                hash TEXT NOT NULL,
                key TEXT NOT NULL,
                signature TEXT NOT NULL,
                PRIMARY KEY (stream, seq)
            );"
        ))?;
        add_session_spans(&conn)?;
        Ok(SqliteStore { conn })
    }

    /// Direct access, for tests and maintenance.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// A session's records are found through the span of sequence numbers it covers, kept per
/// session rather than per record: an index entry per record cost the writer about a tenth
/// of its time. A store made before the spans existed gets them from its records, once.
fn add_session_spans(conn: &Connection) -> Result<()> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        params![SESSIONS],
        |row| row.get(0),
    )?;
    if exists {
        return Ok(());
    }
    conn.execute_batch(&format!(
        "BEGIN;
        CREATE TABLE {SESSIONS} (
            stream TEXT NOT NULL,
            session TEXT NOT NULL,
            first_seq INTEGER NOT NULL,
            last_seq INTEGER NOT NULL,
            PRIMARY KEY (stream, session)
        ) WITHOUT ROWID;
        INSERT INTO {SESSIONS} SELECT stream, session, min(seq), max(seq) FROM {RECORDS}
            WHERE session IS NOT NULL GROUP BY stream, session;
        DROP INDEX IF EXISTS {RECORDS}_session;
        COMMIT;"
    ))?;
    Ok(())
}

/// Picks one session's records: within its spans, so the primary key narrows the scan.
fn session_clause() -> String {
    format!(
        "stream IN (SELECT stream FROM {SESSIONS} WHERE session = #) \
         AND seq >= (SELECT min(first_seq) FROM {SESSIONS} WHERE session = #) \
         AND seq <= (SELECT max(last_seq) FROM {SESSIONS} WHERE session = #) AND session = #"
    )
}

fn seq_i64(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| Error::Store(format!("sequence number {seq} out of range")))
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Record, String, String)> {
    let seq: i64 = row.get(1)?;
    Ok((
        Record {
            stream: row.get(0)?,
            seq: seq as u64,
            at: row.get(2)?,
            prev_hash: [0; 32],
            hash: [0; 32],
            kind: row.get(5)?,
            session: row.get(6)?,
            event: row.get(7)?,
        },
        row.get(3)?,
        row.get(4)?,
    ))
}

fn finish(parts: (Record, String, String)) -> Result<Record> {
    let (mut r, prev, hash) = parts;
    r.prev_hash = parse_stored_hash(&prev);
    r.hash = parse_stored_hash(&hash);
    Ok(r)
}

fn row_to_checkpoint(row: &rusqlite::Row<'_>) -> rusqlite::Result<Checkpoint> {
    let seq: i64 = row.get(1)?;
    Ok(Checkpoint {
        stream: row.get(0)?,
        seq: seq as u64,
        at: row.get(2)?,
        hash: row.get(3)?,
        key: row.get(4)?,
        signature: row.get(5)?,
    })
}

impl Store for SqliteStore {
    fn insert(&mut self, records: &[RecordRef<'_>]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT INTO {RECORDS} ({RECORD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (stream, seq) DO NOTHING"
            ))?;
            // The span of each session in this batch.
            let mut spans: HashMap<(&str, &str), (u64, u64)> = HashMap::new();
            for r in records {
                stmt.execute(params![
                    r.stream,
                    seq_i64(r.seq)?,
                    r.at,
                    HashHex::new(r.prev_hash).as_str(),
                    HashHex::new(r.hash).as_str(),
                    r.kind,
                    r.session,
                    r.event
                ])?;
                if let Some(session) = r.session {
                    let span = spans.entry((r.stream, session)).or_insert((r.seq, r.seq));
                    *span = (span.0.min(r.seq), span.1.max(r.seq));
                }
            }
            let mut span_stmt = tx.prepare_cached(&format!(
                "INSERT INTO {SESSIONS} (stream, session, first_seq, last_seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (stream, session) DO UPDATE SET
                    first_seq = min(first_seq, excluded.first_seq),
                    last_seq = max(last_seq, excluded.last_seq)"
            ))?;
            for ((stream, session), (first, last)) in spans {
                span_stmt.execute(params![stream, session, seq_i64(first)?, seq_i64(last)?])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn last_record(&mut self, stream: &str) -> Result<Option<Record>> {
        let parts = self
            .conn
            .query_row(
                &format!("SELECT {RECORD_COLUMNS} FROM {RECORDS} WHERE stream = ?1 ORDER BY seq DESC LIMIT 1"),
                params![stream],
                row_to_record,
            )
            .optional()?;
        parts.map(finish).transpose()
    }

    fn insert_checkpoint(&mut self, cp: &Checkpoint) -> Result<()> {
        self.conn.execute(
            &format!(
                "INSERT INTO {CHECKPOINTS} (stream, seq, at, hash, key, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (stream, seq) DO NOTHING"
            ),
            params![cp.stream, seq_i64(cp.seq)?, cp.at, cp.hash, cp.key, cp.signature],
        )?;
        Ok(())
    }

    fn checkpoints(&mut self, stream: &str) -> Result<Vec<Checkpoint>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT stream, seq, at, hash, key, signature FROM {CHECKPOINTS} WHERE stream = ?1 ORDER BY seq"
        ))?;
        let rows = stmt.query_map(params![stream], row_to_checkpoint)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn streams(&mut self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT stream FROM {RECORDS} GROUP BY stream UNION SELECT stream FROM {CHECKPOINTS} ORDER BY 1"
        ))?;
        let rows = stmt.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    fn scan(&mut self, query: &Query, f: &mut dyn FnMut(Record) -> Result<bool>) -> Result<()> {
        let (tail, params) = query.sql('?', &session_clause());
        let mut stmt = self.conn.prepare(&format!("SELECT {RECORD_COLUMNS} FROM {RECORDS}{tail}"))?;
        let values: Vec<rusqlite::types::Value> = params
            .into_iter()
            .map(|p| match p {
                Param::Text(s) => rusqlite::types::Value::Text(s),
                Param::Int(n) => rusqlite::types::Value::Integer(n),
            })
            .collect();
        let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
        while let Some(row) = rows.next()? {
            if !f(finish(row_to_record(row)?)?)? {
                break;
            }
        }
        Ok(())
    }
}
