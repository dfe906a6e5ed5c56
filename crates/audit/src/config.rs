//! The `[audit]` table of drawbridge.toml.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Where records end up after the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// An embedded SQLite file (the default).
    #[default]
    Sqlite,
    /// A PostgreSQL database shared by several gateways.
    Postgres,
}

/// What the gateway does with statements while records can't be made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Refuse statements (fail closed).
    #[default]
    Deny,
    /// Let statements run unrecorded.
    Allow,
}

/// Audit settings. Relative paths resolve against the directory of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub store: StoreKind,
    /// SQLite database file.
    pub sqlite_path: PathBuf,
    /// PostgreSQL connection string for `store = "postgres"`.
    pub postgres_url: Option<String>,
    /// Name of an environment variable holding the PostgreSQL connection string.
    pub postgres_url_env: Option<String>,
    /// Directory of the local journal and of the stream-id file.
    pub journal_dir: PathBuf,
    /// fsync each record before `append` returns (survives power loss; costs a disk flush).
    pub fsync: bool,
    /// Stream name for this gateway's chain; when unset one is generated at first start and kept
    /// in the journal directory.
    pub instance: Option<String>,
    /// ed25519 signing key for checkpoints; created with mode 0600 on first start.
    pub key_file: PathBuf,
    /// Hex public keys of other gateways whose checkpoints `verify` accepts.
    pub trusted_keys: Vec<String>,
    pub checkpoint_every: u64,
    pub checkpoint_secs: u64,
    /// Also append each signed checkpoint to this file (ideally on other storage).
    pub checkpoint_file: Option<PathBuf>,
    /// Unhealthy when more records than this wait for the store...
    pub max_backlog: u64,
    /// ...or when the store has been failing for longer than this with records waiting.
    pub max_backlog_secs: u64,
    /// Most records written to the store in one transaction.
    pub batch_max: usize,
    /// Rewrite the journal once it is this large and everything in it is in the store.
    pub journal_rotate_bytes: u64,
    pub on_failure: OnFailure,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: StoreKind::Sqlite,
            sqlite_path: PathBuf::from("audit.db"),
            postgres_url: None,
            postgres_url_env: None,
            journal_dir: PathBuf::from("audit-journal"),
            fsync: false,
            instance: None,
            key_file: PathBuf::from("audit.key"),
            trusted_keys: Vec::new(),
            checkpoint_every: 1000,
            checkpoint_secs: 30,
            checkpoint_file: None,
            max_backlog: 100_000,
            max_backlog_secs: 300,
            batch_max: 1000,
            journal_rotate_bytes: 64 << 20,
            on_failure: OnFailure::Deny,
        }
    }
}

impl Config {
    /// Reads the `[audit]` table of a drawbridge.toml; a missing table means all defaults.
    pub fn from_toml(text: &str) -> Result<Config> {
        #[derive(Deserialize)]
        struct Outer {
            #[serde(default)]
            audit: Option<toml::Table>,
        }
        // Only the [audit] table is ours; the rest of the file belongs to the gateway.
        let outer: Outer = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        match outer.audit {
            None => Ok(Config::default()),
            Some(table) => table.try_into().map_err(|e: toml::de::Error| Error::Config(e.to_string())),
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.checkpoint_every == 0 {
            return Err(Error::Config("checkpoint_every must be at least 1".into()));
        }
        if self.batch_max == 0 {
            return Err(Error::Config("batch_max must be at least 1".into()));
        }
        if let Some(name) = &self.instance {
            if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
                return Err(Error::Config("instance must be 1..=64 printable characters".into()));
            }
        }
        for key in &self.trusted_keys {
            crate::keys::parse_public(key)?;
        }
        Ok(())
    }

    /// The PostgreSQL connection string, from the config or the named environment variable.
    pub fn postgres_url(&self) -> Result<String> {
        if let Some(url) = &self.postgres_url {
            return Ok(url.clone());
        }
        if let Some(var) = &self.postgres_url_env {
            return std::env::var(var)
                .map_err(|_| Error::Config(format!("environment variable {var} (postgres_url_env) is not set")));
        }
        Err(Error::Config("store = \"postgres\" needs postgres_url or postgres_url_env".into()))
    }

    pub(crate) fn resolve(&self, base_dir: &Path, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            base_dir.join(path)
        }
    }
}
