//! The embedded store: one SQLite file.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};

use super::{filter_sql, millis, Filter, GrantChange, RequestChange, Store, GRANTS, REQUESTS};
use crate::error::{Error, Result};
use crate::model::{ApprovalEvent, Grant, Mode, Request, State};

pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {REQUESTS} (
                id TEXT PRIMARY KEY,
                state TEXT NOT NULL,
                mode TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                agent TEXT NOT NULL,
                target TEXT NOT NULL,
                created_ms INTEGER NOT NULL,
                expires_ms INTEGER NOT NULL,
                body TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS {REQUESTS}_fp ON {REQUESTS} (fingerprint, state);
            CREATE INDEX IF NOT EXISTS {REQUESTS}_state ON {REQUESTS} (state, expires_ms);
            CREATE TABLE IF NOT EXISTS {GRANTS} (
                id TEXT PRIMARY KEY,
                agent TEXT NOT NULL,
                target TEXT NOT NULL,
                from_ms INTEGER NOT NULL,
                until_ms INTEGER NOT NULL,
                revoked INTEGER NOT NULL,
                body TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS {GRANTS}_until ON {GRANTS} (until_ms);"
        ))?;
        Ok(SqliteStore { conn })
    }
}

fn write_request(conn: &Connection, r: &Request, insert: bool) -> Result<()> {
    let body = serde_json::to_string(r)?;
    if insert {
        conn.execute(
            &format!(
                "INSERT INTO {REQUESTS} (id, state, mode, fingerprint, agent, target, created_ms, expires_ms, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            params![
                r.id,
                r.state.as_str(),
                r.mode.as_str(),
                r.fingerprint,
                r.agent,
                r.target,
                millis(r.created_at),
                millis(r.expires_at),
                body
            ],
        )?;
    } else {
        conn.execute(
            &format!("UPDATE {REQUESTS} SET state = ?2, expires_ms = ?3, body = ?4 WHERE id = ?1"),
            params![r.id, r.state.as_str(), millis(r.expires_at), body],
        )?;
    }
    Ok(())
}

fn write_grant(conn: &Connection, g: &Grant, insert: bool) -> Result<()> {
    let body = serde_json::to_string(g)?;
    if insert {
        conn.execute(
            &format!(
                "INSERT INTO {GRANTS} (id, agent, target, from_ms, until_ms, revoked, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ),
            params![
                g.id,
                g.agent,
                g.target,
                millis(g.from),
                millis(g.until),
                g.revoked.is_some(),
                body
            ],
        )?;
    } else {
        conn.execute(
            &format!("UPDATE {GRANTS} SET revoked = ?2, until_ms = ?3, body = ?4 WHERE id = ?1"),
            params![g.id, g.revoked.is_some(), millis(g.until), body],
        )?;
    }
    Ok(())
}

fn bodies<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params, |row| row.get::<_, String>(0))?;
    let mut out = Vec::new();
    for body in rows {
        out.push(serde_json::from_str(&body?)?);
    }
    Ok(out)
}

fn ids(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params, |row| row.get::<_, String>(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

impl Store for SqliteStore {
    fn insert_request(&mut self, request: &Request) -> Result<()> {
        write_request(&self.conn, request, true)
    }

    fn get_request(&mut self, id: &str) -> Result<Option<Request>> {
        Ok(bodies(
            &self.conn,
            &format!("SELECT body FROM {REQUESTS} WHERE id = ?1"),
            [id],
        )?
        .pop())
    }

    fn list_requests(&mut self, filter: &Filter) -> Result<Vec<Request>> {
        let (tail, params) = filter_sql(filter, '?');
        bodies(
            &self.conn,
            &format!("SELECT body FROM {REQUESTS}{tail}"),
            params_from_iter(params),
        )
    }

    fn find_by_fingerprint(
        &mut self,
        fingerprint: &str,
        mode: Mode,
        state: State,
    ) -> Result<Vec<String>> {
        ids(
            &self.conn,
            &format!(
                "SELECT id FROM {REQUESTS} WHERE fingerprint = ?1 AND mode = ?2 AND state = ?3 ORDER BY created_ms, id"
            ),
            params![fingerprint, mode.as_str(), state.as_str()],
        )
    }

    fn due(&mut self, now: DateTime<Utc>) -> Result<Vec<String>> {
        ids(
            &self.conn,
            &format!("SELECT id FROM {REQUESTS} WHERE state IN ('pending', 'approved') AND expires_ms <= ?1"),
            [millis(now)],
        )
    }

    fn update_request(
        &mut self,
        id: &str,
        change: RequestChange<'_>,
    ) -> Result<(Request, ApprovalEvent)> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let body: Option<String> = tx
            .query_row(
                &format!("SELECT body FROM {REQUESTS} WHERE id = ?1"),
                [id],
                |r| r.get(0),
            )
            .optional()?;
        let mut request: Request = match body {
            Some(b) => serde_json::from_str(&b)?,
            None => return Err(Error::NotFound(id.to_owned())),
        };
        let event = change(&mut request)?;
        write_request(&tx, &request, false)?;
        tx.commit()?;
        Ok((request, event))
    }

    fn insert_grant(&mut self, grant: &Grant) -> Result<()> {
        write_grant(&self.conn, grant, true)
    }

    fn get_grant(&mut self, id: &str) -> Result<Option<Grant>> {
        Ok(bodies(
            &self.conn,
            &format!("SELECT body FROM {GRANTS} WHERE id = ?1"),
            [id],
        )?
        .pop())
    }

    fn list_grants(&mut self, active_at: Option<DateTime<Utc>>) -> Result<Vec<Grant>> {
        match active_at {
            Some(now) => bodies(
                &self.conn,
                &format!(
                    "SELECT body FROM {GRANTS} WHERE revoked = 0 AND from_ms <= ?1 AND until_ms > ?1
                     ORDER BY from_ms DESC, id"
                ),
                [millis(now)],
            ),
            None => bodies(
                &self.conn,
                &format!("SELECT body FROM {GRANTS} ORDER BY from_ms DESC, id"),
                [],
            ),
        }
    }

    fn update_grant(
        &mut self,
        id: &str,
        change: GrantChange<'_>,
    ) -> Result<(Grant, ApprovalEvent)> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let body: Option<String> = tx
            .query_row(
                &format!("SELECT body FROM {GRANTS} WHERE id = ?1"),
                [id],
                |r| r.get(0),
            )
            .optional()?;
        let mut grant: Grant = match body {
            Some(b) => serde_json::from_str(&b)?,
            None => return Err(Error::GrantNotFound(id.to_owned())),
        };
        let event = change(&mut grant)?;
        write_grant(&tx, &grant, false)?;
        tx.commit()?;
        Ok((grant, event))
    }
}
