//! Server configuration (TOML). Target credentials live only here; a password may come
//! from the file itself, an environment variable or a file.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::Error;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub policy: PolicySource,
    #[serde(default)]
    pub targets: BTreeMap<String, Target>,
    #[serde(default)]
    pub agents: BTreeMap<String, Agent>,
    /// Present: every session, statement and decision is recorded.
    #[serde(default)]
    pub audit: Option<audit::Config>,
    /// Present: `/metrics` and `/healthz` are served on this listener.
    #[serde(default)]
    pub http: Option<Http>,
    /// Present: `require_approval` rules ask operators (HTTP API on the `[http]` listener).
    #[serde(default)]
    pub approvals: Option<approvals::Config>,
    /// Masking options (the key of the `hash` strategy).
    #[serde(default)]
    pub masking: Option<Masking>,
    /// People who may decide approvals; the gateway stores only their token hashes.
    #[serde(default)]
    pub operators: approvals::Operators,
    /// Directory the config was read from; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub listen: String,
    pub log_format: LogFormat,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Seconds a client has to finish startup and authentication.
    pub auth_timeout_secs: u64,
    /// Seconds a session may sit idle (no client message) before it is closed; 0 = never.
    pub idle_timeout_secs: u64,
    /// Failed authentications allowed per client address per minute.
    pub auth_failures_per_minute: u32,
    /// Seconds to wait for an upstream connection.
    pub connect_timeout_secs: u64,
    /// Longest SQL text the gateway will analyse, in bytes.
    pub max_statement_bytes: usize,
    /// Threads serving sessions; 0 = one per core.
    pub workers: usize,
    /// How long the target's answer about its unique keys lets writes pinned to one skip the
    /// row-limit guard: keys dropped outside the gateway are noticed within this long.
    pub key_check_secs: u64,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:6432".into(),
            log_format: LogFormat::Text,
            tls_cert: None,
            tls_key: None,
            auth_timeout_secs: 15,
            idle_timeout_secs: 0,
            auth_failures_per_minute: 5,
            connect_timeout_secs: 10,
            max_statement_bytes: 1 << 20,
            workers: 0,
            key_check_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where the policy comes from: a file, or a built-in pack by name.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PolicySource {
    pub file: Option<PathBuf>,
    pub pack: Option<String>,
    /// Parameters of the pack, e.g. `max_rows = 500`.
    #[serde(default)]
    pub with: toml::Table,
}

/// `[masking]`: which columns are masked is policy; this is only the hash key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Masking {
    /// Key of the `hash` strategy (hex); created at random on first start when missing.
    /// Without `[masking]` a random key is made per process, so hashes change on restart.
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub tls: UpstreamTls,
    pub tls_ca_file: Option<PathBuf>,
}

fn default_port() -> u16 {
    5432
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyFull,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// SCRAM-SHA-256 verifier; the gateway never stores the secret itself.
    pub verifier: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let mut cfg: Config = toml::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        cfg.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn validate(&self) -> Result<(), Error> {
        for (name, agent) in &self.agents {
            wire::auth::scram::Verifier::parse(&agent.verifier)
                .map_err(|_| Error::Config(format!("agent {name}: verifier is not a SCRAM-SHA-256 verifier")))?;
        }
        for (name, t) in &self.targets {
            let sources = [t.password.is_some(), t.password_env.is_some(), t.password_file.is_some()];
            if sources.iter().filter(|s| **s).count() > 1 {
                return Err(Error::Config(format!(
                    "target {name}: give only one of password, password_env, password_file"
                )));
            }
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(Error::Config("server: tls_cert and tls_key go together".into()));
        }
        if self.approvals.is_some() && self.http.is_none() {
            return Err(Error::Config("approvals: operators decide over HTTP; add an [http] listen address".into()));
        }
        for name in self.operators.keys() {
            if self.agents.contains_key(name) {
                return Err(Error::Config(format!("operator {name}: an agent has the same name; approvers are never agents")));
            }
        }
        if self.policy.file.is_some() && self.policy.pack.is_some() {
            return Err(Error::Config("policy: give file or pack, not both".into()));
        }
        Ok(())
    }

    /// The target's password, read now so a rotated file or variable takes effect on the
    /// next connection. Errors name the source, never the value.
    pub fn target_password(&self, name: &str, t: &Target) -> Result<Option<String>, Error> {
        if let Some(p) = &t.password {
            return Ok(Some(p.clone()));
        }
        if let Some(var) = &t.password_env {
            return std::env::var(var)
                .map(Some)
                .map_err(|_| Error::Config(format!("target {name}: environment variable {var} is not set")));
        }
        if let Some(file) = &t.password_file {
            let path = self.resolve(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::Config(format!("target {name}: {}: {}", path.display(), e.kind())))?;
            return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        let cfg: Config = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    #[test]
    fn defaults_and_sources() {
        let cfg = parse(
            r#"
            [targets.app]
            host = "db"
            database = "app"
            user = "owner"
            password_env = "DRAWBRIDGE_TEST_UNSET_VAR"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.server.listen, "127.0.0.1:6432");
        let t = &cfg.targets["app"];
        assert_eq!((t.port, t.tls), (5432, UpstreamTls::Prefer));
        let err = cfg.target_password("app", t).unwrap_err().to_string();
        assert!(err.contains("DRAWBRIDGE_TEST_UNSET_VAR"), "{err}");
    }

    #[test]
    fn rejects_mistakes() {
        assert!(parse("[server]\nlisten = 1").is_err());
        assert!(parse("[server]\nlisen = \"x\"").is_err());
        assert!(parse("[agents.a]\nverifier = \"plain\"").is_err());
        assert!(parse(
            "[targets.t]\nhost=\"h\"\ndatabase=\"d\"\nuser=\"u\"\npassword=\"a\"\npassword_env=\"B\""
        )
        .is_err());
    }
}
