//! The `[approvals]` and `[operators.NAME]` tables of drawbridge.toml.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// An embedded SQLite file (the default).
    #[default]
    Sqlite,
    /// A PostgreSQL database shared by several gateways.
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The request as JSON, with the approve command and a link.
    #[default]
    Json,
    /// An incoming-webhook message with `text` and `blocks`.
    Slack,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
}

/// Approval settings. A relative `sqlite_path` resolves against the config file's directory
/// (the loader's job).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub store: StoreKind,
    pub sqlite_path: PathBuf,
    /// PostgreSQL connection string for `store = "postgres"`.
    pub postgres_url: Option<String>,
    /// Name of an environment variable holding the PostgreSQL connection string.
    pub postgres_url_env: Option<String>,
    /// How long a held statement waits for a decision.
    pub hold_timeout_secs: u64,
    /// Retry mode: how long a request waits for a decision, and how long an approval lasts.
    pub retry_ttl_secs: u64,
    /// Retry mode: how many runs one approval allows, unless the rule says otherwise.
    pub retry_uses: u32,
    /// Longest exemption window an operator may grant.
    pub max_grant_minutes: u32,
    pub webhooks: Vec<Webhook>,
    pub webhook_timeout_secs: u64,
    /// Base URL operators reach the gateway's HTTP API at, used in notifications.
    pub public_url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: StoreKind::Sqlite,
            sqlite_path: PathBuf::from("approvals.db"),
            postgres_url: None,
            postgres_url_env: None,
            hold_timeout_secs: 300,
            retry_ttl_secs: 900,
            retry_uses: 1,
            max_grant_minutes: 24 * 60,
            webhooks: Vec::new(),
            webhook_timeout_secs: 5,
            public_url: None,
        }
    }
}

impl Config {
    /// The PostgreSQL URL, from the config or the named environment variable.
    pub fn postgres_url(&self) -> Result<String> {
        if let Some(url) = &self.postgres_url {
            return Ok(url.clone());
        }
        if let Some(var) = &self.postgres_url_env {
            return std::env::var(var)
                .map_err(|_| Error::Config(format!("environment variable {var} is not set")));
        }
        Err(Error::Config(
            "store = \"postgres\" needs postgres_url or postgres_url_env".into(),
        ))
    }

    pub fn validate(&self) -> Result<()> {
        if self.hold_timeout_secs == 0 || self.retry_ttl_secs == 0 {
            return Err(Error::Config(
                "hold_timeout_secs and retry_ttl_secs must be positive".into(),
            ));
        }
        if self.store == StoreKind::Postgres
            && self.postgres_url.is_none()
            && self.postgres_url_env.is_none()
        {
            return Err(Error::Config(
                "store = \"postgres\" needs postgres_url or postgres_url_env".into(),
            ));
        }
        for w in &self.webhooks {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "webhook url {:?} is not http(s)",
                    w.url
                )));
            }
        }
        Ok(())
    }
}

/// One `[operators.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// Hex SHA-256 of the operator's bearer token.
    pub token_sha256: String,
}

/// The `[operators]` table: name → operator.
pub type Operators = BTreeMap<String, Operator>;
