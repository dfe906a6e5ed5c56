//! Tamper-evident audit records for Drawbridge.
//!
//! The gateway hands [`AuditLog::append`] an [`Event`] (text already redacted). The record is
//! hash-chained to the previous one of this gateway's stream and written to a local journal
//! before `append` returns; a background thread moves records into the store (SQLite or
//! PostgreSQL) in batches and signs checkpoints with an ed25519 key. [`tools::Reader`] verifies
//! the store and reads it back.
#![deny(unsafe_code)]

mod config;
mod error;
mod event;
mod journal;
pub mod keys;
mod log;
mod record;
pub mod replay;
pub mod store;
pub mod tools;
pub mod verify;
mod writer;

pub use config::{Config, OnFailure, StoreKind};
pub use error::{Error, Result};
pub use event::{Event, Json, MaskedColumn, StatementOutcome};
pub use log::{AuditLog, Stats};
pub use record::{now_rfc3339, record_hash, Checkpoint, Hash, Record, RecordRef, GENESIS};
pub use tools::{Filter, Reader};
pub use verify::{Problem, Report, VerifyOptions};
