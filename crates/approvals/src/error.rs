//! The crate's one error type.

use crate::model::State;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("approval request {0} not found")]
    NotFound(String),
    #[error("grant {0} not found")]
    GrantNotFound(String),
    #[error("approval request {id} is {state}; cannot {action}")]
    IllegalTransition {
        id: String,
        state: State,
        action: &'static str,
    },
    #[error("operator {0} may not decide on a request made under the same name")]
    SelfApproval(String),
    #[error("operator {operator} has already approved {id}")]
    AlreadyApproved { id: String, operator: String },
    #[error("a denial needs a non-empty reason")]
    ReasonRequired,
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("approval store: {0}")]
    Store(String),
    #[error("approval config: {0}")]
    Config(String),
    #[error("http: {0}")]
    Http(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(e.to_string())
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error::Store(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Store(format!("stored row does not decode: {e}"))
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        Error::Http(e.to_string())
    }
}
