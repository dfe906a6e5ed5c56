#![allow(dead_code)]

use drawbridge_audit::{Config, Event};

pub fn sqlite_config() -> Config {
    Config {
        // Only the seal at close, so tests know where checkpoints are.
        checkpoint_every: 1_000_000,
        checkpoint_secs: 3600,
        ..Config::default()
    }
}

pub fn opened(session: &str, agent: &str, target: &str) -> Event {
    Event::SessionOpened {
        session: session.into(),
        agent: agent.into(),
        groups: vec!["dev".into()],
        target: target.into(),
        client: "127.0.0.1:40000".into(),
        tls: true,
    }
}

pub fn statement(session: &str, n: u64, text: &str, effect: &str) -> Event {
    Event::Statement {
        session: session.into(),
        statement: n,
        protocol: "simple".into(),
        text: text.into(),
        params: None,
        facts: drawbridge_audit::Json(serde_json::value::RawValue::from_string(r#"{"kind":"select","tables":["users"]}"#.into()).unwrap()),
        effect: effect.into(),
        rules: vec![format!("rule_{effect}")],
        reason: format!("because {effect}"),
        max_rows: None,
    }
}

pub fn outcome(session: &str, n: u64) -> Event {
    Event::Outcome {
        session: session.into(),
        statement: n,
        tag: Some("SELECT 2".into()),
        rows: Some(2),
        duration_us: 1500,
        error: None,
        rows_seen: Some(vec![vec![Some("1".into()), None], vec![Some("2".into()), Some("bob".into())]]),
    }
}

pub fn closed(session: &str) -> Event {
    Event::SessionClosed {
        session: session.into(),
        duration_ms: 2500,
        bytes_from_client: 100,
        bytes_to_client: 2000,
        statements: 2,
        refused: 1,
        reason: "client closed".into(),
    }
}

/// A small realistic session: 6 records.
pub fn session_events(session: &str, agent: &str) -> Vec<Event> {
    vec![
        opened(session, agent, "prod"),
        statement(session, 1, "SELECT id, name FROM users", "allow"),
        outcome(session, 1),
        statement(session, 2, "DELETE FROM users", "deny"),
        Event::AuthFailed {
            agent: "mallory".into(),
            client: "10.0.0.9:1".into(),
            target: "prod".into(),
        },
        closed(session),
    ]
}
