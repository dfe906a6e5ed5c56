#![allow(dead_code)]

extern crate drawbridge_approvals as approvals;

use std::sync::Arc;

use approvals::{ApprovalEvent, Approvals, Config, ManualClock, Mode, NewRequest, SqliteStore};
use chrono::{TimeZone, Utc};
use parking_lot::Mutex;

pub fn clock() -> ManualClock {
    ManualClock::new(Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap())
}

pub fn new_request(mode: Mode, statement: &str) -> NewRequest {
    NewRequest {
        agent: "bot".into(),
        groups: vec!["agents".into()],
        target: "prod".into(),
        statement: statement.into(),
        facts: serde_json::json!({ "kind": "delete", "tables": ["users"] }),
        rule: "deletes-need-approval".into(),
        mode,
        min_approvals: 1,
        uses: None,
    }
}

pub type Events = Arc<Mutex<Vec<ApprovalEvent>>>;

/// A service on a SQLite file in `dir`, with a manual clock and an event recorder.
pub fn sqlite_service(dir: &std::path::Path, clock: &ManualClock) -> (Approvals, Events) {
    let store = SqliteStore::open(&dir.join("approvals.db")).unwrap();
    let events: Events = Arc::default();
    let sink = events.clone();
    let svc = Approvals::from_store(Box::new(store), &Config::default())
        .unwrap()
        .with_clock(Arc::new(clock.clone()))
        .with_event_sink(Arc::new(move |e: &ApprovalEvent| {
            sink.lock().push(e.clone())
        }))
        .with_poll_interval(std::time::Duration::from_millis(100));
    (svc, events)
}
