//! What the gateway records. Text arrives already redacted.

use serde::{Deserialize, Serialize};

/// One thing that happened. Serialized as `{"kind": "...", ...}`; new kinds are new variants.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    SessionOpened {
        session: String,
        agent: String,
        groups: Vec<String>,
        target: String,
        client: String,
        tls: bool,
    },
    SessionClosed {
        session: String,
        duration_ms: u64,
        bytes_from_client: u64,
        bytes_to_client: u64,
        statements: u64,
        refused: u64,
        reason: String,
    },
    AuthFailed {
        agent: String,
        client: String,
        target: String,
    },
    Statement {
        session: String,
        statement: u64,
        /// `simple` or `extended`.
        protocol: String,
        text: String,
        params: Option<Vec<Option<String>>>,
        /// The statement's facts as JSON, kept as the gateway serialised them.
        facts: Json,
        /// `allow`, `deny` or `require_approval`.
        effect: String,
        rules: Vec<String>,
        reason: String,
        max_rows: Option<u64>,
    },
    Outcome {
        session: String,
        statement: u64,
        tag: Option<String>,
        rows: Option<u64>,
        duration_us: u64,
        error: Option<String>,
        rows_seen: Option<Vec<Vec<Option<String>>>>,
    },
    /// Values masked in a statement's result: which columns, by which rule, how many.
    /// Never the values themselves.
    Masked {
        session: String,
        statement: Option<u64>,
        columns: Vec<MaskedColumn>,
    },
    /// A step in an approval's life (requested, approved, denied, expired, consumed, grants).
    Approval {
        /// The session that asked, when the step came from one.
        session: Option<String>,
        approval: serde_json::Value,
    },
}

/// One result column in a [`Event::Masked`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedColumn {
    /// Position in the result, from 0.
    pub position: usize,
    /// The column's name as the result labels it.
    pub name: String,
    pub rule: String,
    /// `exact` (the sensitive column itself) or `derived` (computed from one).
    pub how: String,
    pub values: u64,
}

/// A JSON document serialised once by its producer and written as is.
#[derive(Debug, Clone)]
pub struct Json(pub Box<serde_json::value::RawValue>);

impl Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Json {
    // Through a Value: the tagged `Event` enum buffers its fields, which a raw value can't use.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        serde_json::value::to_raw_value(&v).map(Json).map_err(serde::de::Error::custom)
    }
}

impl Event {
    /// The `kind` tag, kept in its own store column for searching.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::SessionOpened { .. } => "session_opened",
            Event::SessionClosed { .. } => "session_closed",
            Event::AuthFailed { .. } => "auth_failed",
            Event::Statement { .. } => "statement",
            Event::Outcome { .. } => "outcome",
            Event::Approval { .. } => "approval",
            Event::Masked { .. } => "masked",
        }
    }

    /// The session the event belongs to, if any.
    pub fn session(&self) -> Option<&str> {
        match self {
            Event::SessionOpened { session, .. }
            | Event::SessionClosed { session, .. }
            | Event::Statement { session, .. }
            | Event::Outcome { session, .. }
            | Event::Masked { session, .. } => Some(session),
            Event::AuthFailed { .. } => None,
            Event::Approval { session, .. } => session.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_encoding_round_trips() {
        let e = Event::AuthFailed {
            agent: "a".into(),
            client: "127.0.0.1:5".into(),
            target: "t".into(),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.starts_with(r#"{"kind":"auth_failed""#), "{json}");
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        assert_eq!(e.kind(), "auth_failed");
        assert_eq!(e.session(), None);
    }
}
