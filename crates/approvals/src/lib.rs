//! Human approval of single statements, and time-boxed exemptions from named rules.
//!
//! The gateway hands in a description of a statement a rule wants approved; this crate keeps the
//! request's life (pending → approved | denied | expired, approved → consumed), lets operators
//! decide over HTTP with bearer tokens, notifies webhooks, and reports every change as an
//! [`ApprovalEvent`] for the audit log. It knows nothing of the wire protocol or of SQL.
#![forbid(unsafe_code)]

pub mod client;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod model;
pub mod operators;
pub mod service;
pub mod store;
pub mod webhook;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, Operator, Operators, StoreKind, Webhook, WebhookFormat};
pub use error::{Error, Result};
pub use http::router;
pub use model::{ApprovalEvent, Grant, Mode, NewGrant, NewRequest, Request, State};
pub use operators::{generate_token, hash_token, OperatorTokens};
pub use service::{Approvals, EventSink, Outcome};
pub use store::{Filter, PostgresStore, SqliteStore, Store};
pub use webhook::Notifier;
