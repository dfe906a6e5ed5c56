//! What the gateway records. Text arrives already redacted.

use serde::{Deserialize, Serialize};

/// One thing that happened. Serialized as `{"kind": "...", ...}`; new kinds are new variants.
/// Fields that are `None` are left out (older records spell them `null`; both read back).
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        params: Option<Vec<Option<String>>>,
        /// The statement's facts as JSON, without members that are null, false or empty.
        facts: Json,
        /// `allow`, `deny` or `require_approval`.
        effect: String,
        rules: Vec<String>,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_rows: Option<u64>,
    },
    Outcome {
        session: String,
        statement: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rows: Option<u64>,
        duration_us: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rows_seen: Option<Vec<Vec<Option<String>>>>,
    },
    /// Outcomes of several statements of one session, oldest first. A session gathers the
    /// outcomes of what it forwarded for a moment (see the gateway) so that each does not
    /// cost a chained record of its own; the statements themselves are recorded one by one,
    /// before they run.
    Outcomes {
        session: String,
        outcomes: Vec<StatementOutcome>,
    },
    /// Values masked in a statement's result: which columns, by which rule, how many.
    /// Never the values themselves.
    Masked {
        session: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        statement: Option<u64>,
        columns: Vec<MaskedColumn>,
    },
    /// A step in an approval's life (requested, approved, denied, expired, consumed, grants).
    Approval {
        /// The session that asked, when the step came from one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        approval: serde_json::Value,
    },
}

/// One statement's outcome in an [`Event::Outcomes`] record: the fields of
/// [`Event::Outcome`] without the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementOutcome {
    pub statement: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    pub duration_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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

impl Json {
    /// `value` without its null, false and empty fields: a summary that reads well and keeps
    /// records small. Meant to be made once (per statement shape), not per record.
    pub fn summary(value: &impl Serialize) -> Json {
        let mut v = serde_json::to_value(value).unwrap_or_default();
        prune(&mut v);
        Json(serde_json::value::to_raw_value(&v).unwrap_or_default())
    }
}

/// Drops null, false and empty members from objects, at any depth; false when `v` itself
/// says nothing.
fn prune(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null | Value::Bool(false) => false,
        // Elements stay, whatever they hold: their positions mean something.
        Value::Array(items) => {
            for x in items.iter_mut() {
                prune(x);
            }
            !items.is_empty()
        }
        Value::Object(members) => {
            members.retain(|_, x| prune(x));
            !members.is_empty()
        }
        _ => true,
    }
}

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
            Event::Outcomes { .. } => "outcomes",
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
            | Event::Outcomes { session, .. }
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

    #[test]
    fn outcomes_batch_round_trips() {
        let e = Event::Outcomes {
            session: "s".into(),
            outcomes: vec![
                StatementOutcome { statement: 1, tag: Some("SELECT 1".into()), rows: Some(1), duration_us: 9, error: None },
                StatementOutcome { statement: 2, tag: None, rows: None, duration_us: 3, error: Some("boom".into()) },
            ],
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"outcomes","session":"s","outcomes":[{"statement":1,"tag":"SELECT 1","rows":1,"duration_us":9},{"statement":2,"duration_us":3,"error":"boom"}]}"#
        );
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        assert_eq!((e.kind(), e.session()), ("outcomes", Some("s")));
    }

    #[test]
    fn none_fields_are_left_out_and_old_nulls_still_read() {
        let e = Event::Outcome {
            session: "s".into(),
            statement: 3,
            tag: Some("SELECT 1".into()),
            rows: Some(1),
            duration_us: 9,
            error: None,
            rows_seen: None,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"kind":"outcome","session":"s","statement":3,"tag":"SELECT 1","rows":1,"duration_us":9}"#);
        let old = r#"{"kind":"outcome","session":"s","statement":3,"tag":"SELECT 1","rows":1,"duration_us":9,"error":null,"rows_seen":null}"#;
        let back: Event = serde_json::from_str(old).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }

    #[test]
    fn a_summary_drops_what_says_nothing_but_keeps_positions() {
        let facts = serde_json::json!({
            "start": 0, "command": "SELECT", "prepares": null, "rows_countable": false,
            "functions": [], "transaction": {},
            "tables": [{"schema": null, "name": "t", "write": false}, {"write": false}],
        });
        let s = Json::summary(&facts);
        assert_eq!(s.0.get(), r#"{"command":"SELECT","start":0,"tables":[{"name":"t"},{}]}"#);
    }
}
