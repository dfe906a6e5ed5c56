//! The shared store: PostgreSQL, for several gateways writing side by side (one stream each).

use std::time::Duration;

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row};

use super::{parse_stored_hash, Param, Query, Store, CHECKPOINTS, RECORDS, RECORD_COLUMNS};
use crate::error::{Error, Result};
use crate::record::{Checkpoint, HashHex, Record, RecordRef};

/// Serializes schema creation when several gateways start at once.
const SCHEMA_LOCK: i64 = 0x6472_6177_6175_6431;
const SCAN_CHUNK: i32 = 5000;

pub struct PostgresStore {
    url: String,
    client: Client,
}

fn connect(url: &str) -> Result<Client> {
    let mut config: postgres::Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    let mut client = config.connect(NoTls)?;
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {RECORDS} (
            stream text NOT NULL,
            seq bigint NOT NULL,
            at text NOT NULL,
            prev_hash text NOT NULL,
            hash text NOT NULL,
            kind text NOT NULL,
            session text,
            event text NOT NULL,
            PRIMARY KEY (stream, seq)
        );
        CREATE INDEX IF NOT EXISTS {RECORDS}_session ON {RECORDS} (session);
        CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (
            stream text NOT NULL,
            seq bigint NOT NULL,
            at text NOT NULL,
            hash text NOT NULL,
            key text NOT NULL,
            signature text NOT NULL,
            PRIMARY KEY (stream, seq)
        );"
    ))?;
    tx.commit()?;
    Ok(client)
}

impl PostgresStore {
    /// Connects and creates the tables on first use. Must not be called from inside an async
    /// runtime's worker (the sync client runs its own); `AuditLog` keeps it on its own thread.
    pub fn connect(url: &str) -> Result<PostgresStore> {
        Ok(PostgresStore {
            url: url.to_owned(),
            client: connect(url)?,
        })
    }

    /// Direct access, for tests and maintenance.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}

fn seq_i64(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| Error::Store(format!("sequence number {seq} out of range")))
}

fn row_to_record(row: &Row) -> Result<Record> {
    let seq: i64 = row.try_get(1)?;
    Ok(Record {
        stream: row.try_get(0)?,
        seq: seq as u64,
        at: row.try_get(2)?,
        prev_hash: parse_stored_hash(row.try_get(3)?),
        hash: parse_stored_hash(row.try_get(4)?),
        kind: row.try_get(5)?,
        session: row.try_get(6)?,
        event: row.try_get(7)?,
    })
}

impl Store for PostgresStore {
    fn insert(&mut self, records: &[RecordRef<'_>]) -> Result<()> {
        // One round trip per batch: arrays unnested server-side.
        let streams: Vec<&str> = records.iter().map(|r| r.stream).collect();
        let seqs = records.iter().map(|r| seq_i64(r.seq)).collect::<Result<Vec<i64>>>()?;
        let ats: Vec<&str> = records.iter().map(|r| r.at).collect();
        let prevs: Vec<String> = records.iter().map(|r| HashHex::new(r.prev_hash).as_str().to_owned()).collect();
        let hashes: Vec<String> = records.iter().map(|r| HashHex::new(r.hash).as_str().to_owned()).collect();
        let kinds: Vec<&str> = records.iter().map(|r| r.kind).collect();
        let sessions: Vec<Option<&str>> = records.iter().map(|r| r.session).collect();
        let events: Vec<&str> = records.iter().map(|r| r.event).collect();
        self.client.execute(
            &format!(
                "INSERT INTO {RECORDS} ({RECORD_COLUMNS})
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[],
                                      $6::text[], $7::text[], $8::text[])
                 ON CONFLICT (stream, seq) DO NOTHING"
            ),
            &[&streams, &seqs, &ats, &prevs, &hashes, &kinds, &sessions, &events],
        )?;
        Ok(())
    }

    fn last_record(&mut self, stream: &str) -> Result<Option<Record>> {
        let row = self.client.query_opt(
            &format!("SELECT {RECORD_COLUMNS} FROM {RECORDS} WHERE stream = $1 ORDER BY seq DESC LIMIT 1"),
            &[&stream],
        )?;
        row.as_ref().map(row_to_record).transpose()
    }

    fn insert_checkpoint(&mut self, cp: &Checkpoint) -> Result<()> {
        self.client.execute(
            &format!(
                "INSERT INTO {CHECKPOINTS} (stream, seq, at, hash, key, signature) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (stream, seq) DO NOTHING"
            ),
            &[&cp.stream, &seq_i64(cp.seq)?, &cp.at, &cp.hash, &cp.key, &cp.signature],
        )?;
        Ok(())
    }

    fn checkpoints(&mut self, stream: &str) -> Result<Vec<Checkpoint>> {
        let rows = self.client.query(
            &format!("SELECT stream, seq, at, hash, key, signature FROM {CHECKPOINTS} WHERE stream = $1 ORDER BY seq"),
            &[&stream],
        )?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get(1)?;
                Ok(Checkpoint {
                    stream: row.try_get(0)?,
                    seq: seq as u64,
                    at: row.try_get(2)?,
                    hash: row.try_get(3)?,
                    key: row.try_get(4)?,
                    signature: row.try_get(5)?,
                })
            })
            .collect()
    }

    fn streams(&mut self) -> Result<Vec<String>> {
        let rows = self.client.query(
            &format!("SELECT DISTINCT stream FROM {RECORDS} UNION SELECT stream FROM {CHECKPOINTS} ORDER BY 1"),
            &[],
        )?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    fn scan(&mut self, query: &Query, f: &mut dyn FnMut(Record) -> Result<bool>) -> Result<()> {
        let (tail, params) = query.sql('$', "session = #");
        let boxed: Vec<Box<dyn ToSql + Sync>> = params
            .into_iter()
            .map(|p| -> Box<dyn ToSql + Sync> {
                match p {
                    Param::Text(s) => Box::new(s),
                    Param::Int(n) => Box::new(n),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        // A portal fetched in chunks keeps memory flat on large stores.
        let mut tx = self.client.transaction()?;
        let portal = tx.bind(&format!("SELECT {RECORD_COLUMNS} FROM {RECORDS}{tail}"), &refs)?;
        loop {
            let rows = tx.query_portal(&portal, SCAN_CHUNK)?;
            let done = rows.len() < SCAN_CHUNK as usize;
            for row in &rows {
                if !f(row_to_record(row)?)? {
                    return Ok(());
                }
            }
            if done {
                return Ok(());
            }
        }
    }

    fn reconnect(&mut self) -> Result<()> {
        if self.client.is_closed() || self.client.is_valid(Duration::from_secs(2)).is_err() {
            self.client = connect(&self.url)?;
        }
        Ok(())
    }
}
