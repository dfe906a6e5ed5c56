use std::path::PathBuf;

/// Everything that can go wrong while starting, using or stopping a local server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "PostgreSQL server binaries not found (looked for initdb, pg_ctl and postgres under {searched}); \
         install the Debian package `postgresql` (apt-get install -y postgresql)"
    )]
    NotInstalled { searched: String },

    #[error("running as root, but there is no `postgres` user to run the server as; install the Debian package `postgresql`, which creates it")]
    NoPostgresUser,

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },

    #[error("server did not start: {reason}; server log {log}:\n{log_tail}")]
    Start {
        reason: String,
        log: PathBuf,
        log_tail: String,
    },

    #[error("generating TLS certificates: {0}")]
    Tls(#[from] rcgen::Error),

    #[error("invalid option: {0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
