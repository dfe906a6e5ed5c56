//! The shared store: PostgreSQL, for several gateways deciding from one set of requests.

use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls};

use super::{filter_sql, millis, Filter, GrantChange, RequestChange, Store, GRANTS, REQUESTS};
use crate::error::{Error, Result};
use crate::model::{ApprovalEvent, Grant, Mode, Request, State};

/// Serializes schema creation when several gateways start at once.
const SCHEMA_LOCK: i64 = 0x6472_6177_6170_7231;

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
        "CREATE TABLE IF NOT EXISTS {REQUESTS} (
            id text PRIMARY KEY,
            state text NOT NULL,
            mode text NOT NULL,
            fingerprint text NOT NULL,
            agent text NOT NULL,
            target text NOT NULL,
            created_ms bigint NOT NULL,
            expires_ms bigint NOT NULL,
            body text NOT NULL
        );
        CREATE INDEX IF NOT EXISTS {REQUESTS}_fp ON {REQUESTS} (fingerprint, state);
        CREATE INDEX IF NOT EXISTS {REQUESTS}_state ON {REQUESTS} (state, expires_ms);
        CREATE TABLE IF NOT EXISTS {GRANTS} (
            id text PRIMARY KEY,
            agent text NOT NULL,
            target text NOT NULL,
            from_ms bigint NOT NULL,
            until_ms bigint NOT NULL,
            revoked boolean NOT NULL,
            body text NOT NULL
        );
        CREATE INDEX IF NOT EXISTS {GRANTS}_until ON {GRANTS} (until_ms);"
    ))?;
    tx.commit()?;
    Ok(client)
}

impl PostgresStore {
    /// Connects and creates the tables on first use. Must not be called on an async worker
    /// thread: the sync client runs its own runtime.
    pub fn connect(url: &str) -> Result<PostgresStore> {
        Ok(PostgresStore {
            url: url.to_owned(),
            client: connect(url)?,
        })
    }

    /// Replaces a broken connection (after the server restarted, say).
    fn ensure_connected(&mut self) -> Result<()> {
        if self.client.is_closed() {
            self.client = connect(&self.url)?;
        }
        Ok(())
    }
}

fn write_request(c: &mut impl GenericClient, r: &Request, insert: bool) -> Result<()> {
    let body = serde_json::to_string(r)?;
    if insert {
        c.execute(
            &format!(
                "INSERT INTO {REQUESTS} (id, state, mode, fingerprint, agent, target, created_ms, expires_ms, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            &[
                &r.id,
                &r.state.as_str(),
                &r.mode.as_str(),
                &r.fingerprint,
                &r.agent,
                &r.target,
                &millis(r.created_at),
                &millis(r.expires_at),
                &body,
            ],
        )?;
    } else {
        c.execute(
            &format!("UPDATE {REQUESTS} SET state = $2, expires_ms = $3, body = $4 WHERE id = $1"),
            &[&r.id, &r.state.as_str(), &millis(r.expires_at), &body],
        )?;
    }
    Ok(())
}

fn write_grant(c: &mut impl GenericClient, g: &Grant, insert: bool) -> Result<()> {
    let body = serde_json::to_string(g)?;
    if insert {
        c.execute(
            &format!(
                "INSERT INTO {GRANTS} (id, agent, target, from_ms, until_ms, revoked, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ),
            &[
                &g.id,
                &g.agent,
                &g.target,
                &millis(g.from),
                &millis(g.until),
                &g.revoked.is_some(),
                &body,
            ],
        )?;
    } else {
        c.execute(
            &format!("UPDATE {GRANTS} SET revoked = $2, until_ms = $3, body = $4 WHERE id = $1"),
            &[&g.id, &g.revoked.is_some(), &millis(g.until), &body],
        )?;
    }
    Ok(())
}

fn bodies<T: serde::de::DeserializeOwned>(
    c: &mut impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<T>> {
    c.query(sql, params)?
        .iter()
        .map(|row| Ok(serde_json::from_str(row.try_get::<_, &str>(0)?)?))
        .collect()
}

fn ids(
    c: &mut impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<String>> {
    c.query(sql, params)?
        .iter()
        .map(|row| Ok(row.try_get(0)?))
        .collect()
}

impl Store for PostgresStore {
    fn insert_request(&mut self, request: &Request) -> Result<()> {
        self.ensure_connected()?;
        write_request(&mut self.client, request, true)
    }

    fn get_request(&mut self, id: &str) -> Result<Option<Request>> {
        self.ensure_connected()?;
        Ok(bodies(
            &mut self.client,
            &format!("SELECT body FROM {REQUESTS} WHERE id = $1"),
            &[&id],
        )?
        .pop())
    }

    fn list_requests(&mut self, filter: &Filter) -> Result<Vec<Request>> {
        self.ensure_connected()?;
        let (tail, params) = filter_sql(filter, '$');
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        bodies(
            &mut self.client,
            &format!("SELECT body FROM {REQUESTS}{tail}"),
            &refs,
        )
    }

    fn find_by_fingerprint(
        &mut self,
        fingerprint: &str,
        mode: Mode,
        state: State,
    ) -> Result<Vec<String>> {
        self.ensure_connected()?;
        ids(
            &mut self.client,
            &format!(
                "SELECT id FROM {REQUESTS} WHERE fingerprint = $1 AND mode = $2 AND state = $3 ORDER BY created_ms, id"
            ),
            &[&fingerprint, &mode.as_str(), &state.as_str()],
        )
    }

    fn due(&mut self, now: DateTime<Utc>) -> Result<Vec<String>> {
        self.ensure_connected()?;
        ids(
            &mut self.client,
            &format!("SELECT id FROM {REQUESTS} WHERE state IN ('pending', 'approved') AND expires_ms <= $1"),
            &[&millis(now)],
        )
    }

    fn update_request(
        &mut self,
        id: &str,
        change: RequestChange<'_>,
    ) -> Result<(Request, ApprovalEvent)> {
        self.ensure_connected()?;
        let mut tx = self.client.transaction()?;
        let mut found: Vec<Request> = bodies(
            &mut tx,
            &format!("SELECT body FROM {REQUESTS} WHERE id = $1 FOR UPDATE"),
            &[&id],
        )?;
        let Some(mut request) = found.pop() else {
            return Err(Error::NotFound(id.to_owned()));
        };
        let event = change(&mut request)?;
        write_request(&mut tx, &request, false)?;
        tx.commit()?;
        Ok((request, event))
    }

    fn insert_grant(&mut self, grant: &Grant) -> Result<()> {
        self.ensure_connected()?;
        write_grant(&mut self.client, grant, true)
    }

    fn get_grant(&mut self, id: &str) -> Result<Option<Grant>> {
        self.ensure_connected()?;
        Ok(bodies(
            &mut self.client,
            &format!("SELECT body FROM {GRANTS} WHERE id = $1"),
            &[&id],
        )?
        .pop())
    }

    fn list_grants(&mut self, active_at: Option<DateTime<Utc>>) -> Result<Vec<Grant>> {
        self.ensure_connected()?;
        match active_at {
            Some(now) => bodies(
                &mut self.client,
                &format!(
                    "SELECT body FROM {GRANTS} WHERE NOT revoked AND from_ms <= $1 AND until_ms > $1
                     ORDER BY from_ms DESC, id"
                ),
                &[&millis(now)],
            ),
            None => bodies(
                &mut self.client,
                &format!("SELECT body FROM {GRANTS} ORDER BY from_ms DESC, id"),
                &[],
            ),
        }
    }

    fn update_grant(
        &mut self,
        id: &str,
        change: GrantChange<'_>,
    ) -> Result<(Grant, ApprovalEvent)> {
        self.ensure_connected()?;
        let mut tx = self.client.transaction()?;
        let mut found: Vec<Grant> = bodies(
            &mut tx,
            &format!("SELECT body FROM {GRANTS} WHERE id = $1 FOR UPDATE"),
            &[&id],
        )?;
        let Some(mut grant) = found.pop() else {
            return Err(Error::GrantNotFound(id.to_owned()));
        };
        let event = change(&mut grant)?;
        write_grant(&mut tx, &grant, false)?;
        tx.commit()?;
        Ok((grant, event))
    }
}
