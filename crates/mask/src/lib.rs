//! Masking of sensitive values in query results, in-process and deterministic.
//!
//! The gateway builds a [`Plan`] from a RowDescription and the policy: per result column,
//! nothing, or a [`ColumnMask`] saying how to mask it. [`rewrite_data_row`] then rewrites
//! each DataRow message, and [`CopyRewriter`] each `COPY … TO STDOUT` data line.
//!
//! Guarantees:
//! - A masked value is valid for its column type and format, or it becomes NULL.
//! - Nothing fails open: a value the crate cannot inspect or re-encode is replaced by NULL
//!   (or the row is refused with an [`Error`]), never passed through.
//! - `hash` is a keyed HMAC-SHA256, so equal inputs give equal outputs (joins still work)
//!   and outputs cannot be reversed without the key.
//! - Malformed frames are errors, never panics.
#![forbid(unsafe_code)]

mod copy;
mod data_row;
pub mod detect;
mod plan;
mod strategy;
mod types;
mod value;

pub use copy::{rewrite_copy_line, CopyFormat, CopyRewriter};
pub use data_row::{rewrite_data_row, rewrite_data_row_tally, Stats, Tally};
pub use detect::{Detectors, SemanticType};
pub use plan::{ColumnMask, Format, Plan};
pub use strategy::{HashKey, Strategy, DEFAULT_PLACEHOLDER};
pub use types::oid;

/// One error type for the crate. Messages describe the fault, never the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("malformed DataRow: {0}")]
    MalformedRow(&'static str),
    #[error("DataRow has {found} columns, the masking plan expects {expected}")]
    ColumnCount { expected: usize, found: usize },
    #[error("malformed COPY line: {0}")]
    MalformedCopy(&'static str),
    #[error("COPY line has {found} fields, the masking plan expects {expected}")]
    FieldCount { expected: usize, found: usize },
    #[error("unknown semantic type {0:?}")]
    UnknownSemanticType(String),
    #[error("invalid format code {0}")]
    BadFormat(i16),
    #[error("invalid masking option: {0}")]
    BadOption(&'static str),
    #[error("rewritten message would exceed the protocol's length limit")]
    TooLong,
}
