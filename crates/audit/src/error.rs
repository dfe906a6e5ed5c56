use std::path::PathBuf;

/// Everything that can go wrong while recording or reading audit records.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("audit journal {}: {reason}", path.display())]
    Journal { path: PathBuf, reason: String },

    #[error("audit config: {0}")]
    Config(String),

    #[error("audit key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },

    #[error("audit store (sqlite): {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error("audit store (postgres): {0}")]
    Postgres(#[from] postgres::Error),

    #[error("audit store: {0}")]
    Store(String),

    #[error("encoding audit event: {0}")]
    Json(#[from] serde_json::Error),

    #[error("audit log is closed")]
    Closed,
}

impl Error {
    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            context,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
