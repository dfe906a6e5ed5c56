//! The Drawbridge gateway: accepts agents, authenticates them, connects to their target
//! with credentials the agent never sees, and relays every message — judging each
//! statement on the way. `session.rs` holds one statement's whole path.
#![forbid(unsafe_code)]

pub mod config;
mod cancel;
mod catalog;
mod masking;
mod conn;
mod limiter;
mod ops;
mod prepared;
mod server;
mod session;
mod shards;
mod startup;
mod tls;
mod upstream;

pub use config::Config;
pub use server::{server_policy, Gateway, Shared};

/// One error type for the gateway. `Display` is safe to log; what an agent sees is
/// written separately as PostgreSQL errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config: {0}")]
    Config(String),
    #[error("protocol: {0}")]
    Protocol(#[from] wire::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("tls: {0}")]
    Tls(String),
    #[error("upstream {target}: {reason}")]
    Upstream { target: String, reason: String },
    #[error("timed out")]
    Timeout,
    #[error("policy: {0}")]
    Policy(String),
}
