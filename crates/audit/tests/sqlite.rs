//! Round trip, tampering and the reading tools on the embedded store.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use drawbridge_audit::store::SqliteStore;
use drawbridge_audit::{record_hash, AuditLog, Config, Filter, Reader, Report};

/// Appends `sessions` sessions of 6 records (seq 1..=6*sessions), closes, returns the config.
fn populate(dir: &Path, sessions: usize, cfg: Config) -> Config {
    let log = AuditLog::open(&cfg, dir).unwrap();
    for s in 0..sessions {
        for ev in session_events(&format!("s{s}"), &format!("agent{}", s % 2)) {
            log.append(ev).unwrap();
        }
    }
    log.flush(Duration::from_secs(10)).unwrap();
    drop(log);
    cfg
}

fn verify(cfg: &Config, dir: &Path) -> Report {
    Reader::open(cfg, dir).unwrap().verify().unwrap()
}

fn db(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("audit.db")).unwrap()
}

fn stream(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("audit-journal/stream")).unwrap().trim().to_owned()
}

fn assert_problem(report: &Report, seq: u64, needle: &str) {
    let first = report.problems.first().unwrap_or_else(|| panic!("no problem found:\n{report}"));
    assert_eq!(first.seq, Some(seq), "{report}");
    assert!(first.what.contains(needle), "expected {needle:?}:\n{report}");
}

#[test]
fn round_trip_verifies_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populate(dir.path(), 3, sqlite_config());
    let report = verify(&cfg, dir.path());
    assert!(report.ok(), "{report}");
    assert_eq!(report.streams.len(), 1);
    assert_eq!(report.streams[0].records, 18);
    assert_eq!(report.streams[0].sealed_seq, 18, "close seals everything");

    let mut reader = Reader::open(&cfg, dir.path()).unwrap();
    let tail = reader.tail(4).unwrap();
    assert_eq!(tail.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![15, 16, 17, 18]);

    let mut denied = Vec::new();
    let filter = Filter {
        decision: Some("deny".into()),
        agent: Some("agent0".into()),
        ..Default::default()
    };
    reader.search(&filter, &mut |r| {
        denied.push(r.clone());
        Ok(())
    })
    .unwrap();
    // Sessions s0 and s2 belong to agent0; each has one denied statement.
    assert_eq!(denied.len(), 2);
    assert!(denied.iter().all(|r| r.event.contains("DELETE FROM users")));

    let mut by_agent = 0;
    let filter = Filter {
        agent: Some("mallory".into()),
        ..Default::default()
    };
    reader.search(&filter, &mut |r| {
        assert_eq!(r.kind, "auth_failed");
        by_agent += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(by_agent, 3);

    let records = reader.session("s1").unwrap();
    assert_eq!(records.len(), 5, "auth_failed has no session");
    let text = drawbridge_audit::replay::timeline(&records);
    assert!(text.contains("connect     session s1: agent agent1"), "{text}");
    assert!(text.contains("decision: deny by rule_deny: because deny"), "{text}");
    assert!(text.contains("result: SELECT 2, 2 rows in 1.500 ms"), "{text}");
    assert!(text.contains("| 2 | bob |"), "{text}");
    assert!(text.contains("disconnect  after 2.500 s: 2 statements (1 refused)"), "{text}");

    let mut out = Vec::new();
    assert_eq!(reader.export_jsonl(&mut out).unwrap(), 18);
    let lines: Vec<_> = String::from_utf8(out).unwrap().lines().map(str::to_owned).collect();
    let back = drawbridge_audit::Record::from_json_line(&lines[3]).unwrap();
    assert_eq!(back.seq, 4);
    assert_eq!(back.computed_hash_at(4), back.hash);
}

#[test]
fn a_store_from_before_session_spans_still_finds_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populate(dir.path(), 3, sqlite_config());
    {
        // The layout of earlier versions: an index entry per record, no spans.
        let store = db(dir.path());
        store
            .connection()
            .execute_batch(
                "DROP TABLE drawbridge_audit_sessions;
                 CREATE INDEX drawbridge_audit_records_session ON drawbridge_audit_records (session);",
            )
            .unwrap();
    }
    let mut reader = Reader::open(&cfg, dir.path()).unwrap();
    let records = reader.session("s1").unwrap();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![7, 8, 9, 10, 12]);
    let store = db(dir.path());
    let spans: i64 = store
        .connection()
        .query_row("SELECT count(*) FROM drawbridge_audit_sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(spans, 3);
    let index: i64 = store
        .connection()
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'drawbridge_audit_records_session'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(index, 0, "the per-record index is gone");
    assert!(verify(&cfg, dir.path()).ok());

    // Sessions whose records interleave are told apart, and new records extend a span.
    let log = AuditLog::open(&cfg, dir.path()).unwrap();
    let a = session_events("s1", "agent1");
    let b = session_events("s9", "agent0");
    for (x, y) in a.into_iter().zip(b) {
        log.append(x).unwrap();
        log.append(y).unwrap();
    }
    log.flush(Duration::from_secs(10)).unwrap();
    drop(log);
    let mut reader = Reader::open(&cfg, dir.path()).unwrap();
    let s1 = reader.session("s1").unwrap();
    assert_eq!(s1.len(), 10, "five from before, five new");
    assert!(s1.iter().all(|r| r.session.as_deref() == Some("s1")));
    assert_eq!(reader.session("s9").unwrap().len(), 5);
    assert!(reader.session("nobody").unwrap().is_empty());
}

#[test]
fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populate(dir.path(), 1, sqlite_config());
    let log = AuditLog::open(&cfg, dir.path()).unwrap();
    assert_eq!(log.append(opened("s9", "a", "t")).unwrap(), 7);
    drop(log);
    let report = verify(&cfg, dir.path());
    assert!(report.ok(), "{report}");
    assert_eq!(report.streams[0].last_seq, 7);
}

/// The used part of the journal file (the rest is zeros reserved for the next lines).
fn journal_lines(dir: &Path) -> usize {
    let bytes = std::fs::read(dir.join("audit-journal/journal.jsonl")).unwrap();
    let used = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes[..used].iter().filter(|&&b| b == b'\n').count()
}

#[test]
fn a_journal_under_steady_load_still_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config { journal_rotate_bytes: 64 << 10, ..sqlite_config() };
    let log = AuditLog::open(&cfg, dir.path()).unwrap();
    // A record every 50 µs, without pauses: whenever the writer finishes a batch, newer
    // records are already waiting, so the store is never fully caught up. The journal must
    // shrink anyway.
    let started = std::time::Instant::now();
    let mut appended = 0u64;
    let mut longest = 0;
    let mut sampled = started;
    while started.elapsed() < Duration::from_secs(3) {
        let due = started + Duration::from_micros(50 * appended);
        while std::time::Instant::now() < due {
            std::hint::spin_loop();
        }
        log.append(statement("busy", appended, "UPDATE t SET x = 1 WHERE id = 7", "allow")).unwrap();
        appended += 1;
        if started.elapsed() > Duration::from_secs(1) && sampled.elapsed() > Duration::from_millis(20) {
            longest = longest.max(journal_lines(dir.path()));
            sampled = std::time::Instant::now();
        }
    }
    assert!(appended > 10_000, "only {appended} records appended");
    // Without rotation under load the journal holds nearly everything appended.
    assert!(longest * 4 < appended as usize, "the journal grew to {longest} lines of {appended} records");
    log.flush(Duration::from_secs(10)).unwrap();
    drop(log);

    // What rotation kept is a valid continuation of the store: reopening accepts it.
    let log = AuditLog::open(&cfg, dir.path()).unwrap();
    assert_eq!(log.append(closed("busy")).unwrap(), appended + 1);
    drop(log);
    let report = verify(&cfg, dir.path());
    assert!(report.ok(), "{report}");
    assert_eq!(report.streams[0].records, appended + 1);
}

#[test]
fn time_and_count_checkpoints_are_signed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        checkpoint_every: 5,
        checkpoint_file: Some("checkpoints.jsonl".into()),
        ..Config::default()
    };
    let log = AuditLog::open(&cfg, dir.path()).unwrap();
    for i in 0..12 {
        log.append(statement("s", i, "SELECT 1", "allow")).unwrap();
        log.flush(Duration::from_secs(5)).unwrap();
    }
    assert!(log.stats().checkpoints >= 2, "{:?}", log.stats());
    drop(log);
    let cps = drawbridge_audit::verify::read_checkpoint_file(&dir.path().join("checkpoints.jsonl")).unwrap();
    assert_eq!(cps.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![5, 10, 12]);
    assert!(verify(&cfg, dir.path()).ok());
}

#[test]
fn edited_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populate(dir.path(), 3, sqlite_config());
    db(dir.path())
        .connection()
        .execute(
            "UPDATE drawbridge_audit_records SET event = replace(event, 'DELETE', 'SELECT') WHERE seq = 4",
            [],
        )
        .unwrap();
    let report = verify(&cfg, dir.path());
    assert_problem(&report, 4, "record edited");
    assert_eq!(report.problems.len(), 1, "{report}");
}

#[test]
fn edited_and_rehashed_record_breaks_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populate(dir.path(), 3, sqlite_config());
    let store = db(dir.path());
    let conn = store.connection();
    let (at, prev, event): (String, String, String) = conn
        .query_row("SELECT at, prev_hash, event FROM drawbridge_audit_records WHERE seq = 4", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    let forged = event.replace("DELETE", "SELECT");
    let mut prev_bytes = [0u8; 32];
    hex::decode_to_slice(prev, &mut prev_bytes).unwrap();
    let hash = hex::encode(record_hash(&stream(dir.path()), 4, &at, &prev_bytes, &forged));
    conn.execute(
        "UPDATE drawbridge_audit_records SET event = ?1, hash = ?2 WHERE seq = 4",
        rusqlite::params![forged, hash],
    )
    .unwrap();
    let report = verify(&cfg, dir.path());
    assert_problem(&report, 5, "does not follow seq 4");
}

#[test]
fn deleted_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populate(dir.path(), 3, sqlite_config());
    db(dir.path())
        .connection()
        .execute("DELETE FROM drawbridge_audit_records WHERE seq = 7", [])
        .unwrap();
    let report = verify(&cfg, dir.path());
    assert_problem(&report, 7, "record missing (deleted)");
    assert_eq!(report.problems.len(), 1, "{report}");
}

#[test]
fn inserted_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populate(dir.path(), 3, sqlite_config());
    let store = db(dir.path());
    let conn = store.connection();
    // Make room at seq 7 the way a forger would, then insert a record that links correctly.
    conn.execute_batch(
        "UPDATE drawbridge_audit_records SET seq = -(seq + 1) WHERE seq >= 7;
         UPDATE drawbridge_audit_records SET seq = -seq WHERE seq < 0;",
    )
    .unwrap();
    let prev: String = conn
        .query_row("SELECT hash FROM drawbridge_audit_records WHERE seq = 6", [], |r| r.get(0))
        .unwrap();
    let mut prev_bytes = [0u8; 32];
    hex::decode_to_slice(&prev, &mut prev_bytes).unwrap();
    let s = stream(dir.path());
    let at = drawbridge_audit::now_rfc3339();
    let event = serde_json::to_string(&statement("s1", 9, "SELECT 'innocent'", "allow")).unwrap();
    let hash = hex::encode(record_hash(&s, 7, &at, &prev_bytes, &event));
    conn.execute(
        "INSERT INTO drawbridge_audit_records (stream, seq, at, prev_hash, hash, kind, session, event)
         VALUES (?1, 7, ?2, ?3, ?4, 'statement', 's1', ?5)",
        rusqlite::params![s, at, prev, hash, event],
    )
    .unwrap();
    let report = verify(&cfg, dir.path());
    assert_problem(&report, 7, "record inserted");
}

#[test]
fn reordered_records_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populate(dir.path(), 3, sqlite_config());
    db(dir.path())
        .connection()
        .execute_batch(
            "UPDATE drawbridge_audit_records SET seq = -1 WHERE seq = 8;
             UPDATE drawbridge_audit_records SET seq = 8 WHERE seq = 9;
             UPDATE drawbridge_audit_records SET seq = 9 WHERE seq = -1;",
        )
        .unwrap();
    let report = verify(&cfg, dir.path());
    assert_problem(&report, 8, "written as seq 9");
    assert_eq!(report.problems.len(), 2, "{report}");
    assert_eq!(report.problems[1].seq, Some(9));
    assert!(report.problems[1].what.contains("written as seq 8"), "{report}");
}

#[test]
fn truncated_tail_after_checkpoint_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populate(dir.path(), 3, sqlite_config());
    db(dir.path())
        .connection()
        .execute("DELETE FROM drawbridge_audit_records WHERE seq >= 16", [])
        .unwrap();
    let report = verify(&cfg, dir.path());
    assert_problem(&report, 16, "store truncated");
    assert!(report.problems[0].what.contains("records 16..=18 deleted"), "{report}");
}

#[test]
fn truncation_with_checkpoints_removed_is_caught_by_the_checkpoint_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        checkpoint_file: Some("elsewhere/checkpoints.jsonl".into()),
        ..sqlite_config()
    };
    let cfg = populate(dir.path(), 3, cfg);
    db(dir.path())
        .connection()
        .execute_batch(
            "DELETE FROM drawbridge_audit_records WHERE seq >= 16;
             DELETE FROM drawbridge_audit_checkpoints;",
        )
        .unwrap();
    let report = verify(&cfg, dir.path());
    assert!(!report.ok());
    assert!(
        report.problems.iter().any(|p| p.seq == Some(16) && p.what.contains("store truncated")),
        "{report}"
    );
    assert!(
        report.problems.iter().any(|p| p.what.contains("missing from the store")),
        "{report}"
    );
}

#[test]
fn edited_checkpoint_signature_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populate(dir.path(), 3, sqlite_config());
    db(dir.path())
        .connection()
        .execute(
            "UPDATE drawbridge_audit_checkpoints
             SET signature = (CASE substr(signature, 1, 1) WHEN '0' THEN '1' ELSE '0' END) || substr(signature, 2)",
            [],
        )
        .unwrap();
    let report = verify(&cfg, dir.path());
    assert_problem(&report, 18, "signature does not match");
    assert_eq!(report.streams[0].sealed_seq, 0);
}

#[test]
fn checkpoint_from_an_unknown_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = populate(dir.path(), 1, sqlite_config());
    // A forger re-signs with their own key after rewriting history.
    std::fs::remove_file(dir.path().join("audit.key")).unwrap();
    std::fs::remove_file(dir.path().join("audit.key.pub")).unwrap();
    drawbridge_audit::keys::load_or_create(&dir.path().join("other.key")).unwrap();
    let other = Config {
        key_file: "other.key".into(),
        ..cfg.clone()
    };
    let report = verify(&other, dir.path());
    assert_problem(&report, 6, "untrusted key");
}

#[test]
fn append_after_close_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config();
    let log = AuditLog::open(&cfg, dir.path()).unwrap();
    log.append(opened("s", "a", "t")).unwrap();
    log.close();
    assert!(log.append(opened("s", "a", "t")).is_err());
    assert!(log.stats().last_seq >= 1);
}

#[test]
fn config_reads_only_the_audit_table() {
    let cfg = Config::from_toml(
        "[server]\nlisten = \"x\"\n[audit]\nstore = \"postgres\"\npostgres_url = \"postgresql://u@h/db\"\nfsync = true\n",
    )
    .unwrap();
    assert_eq!(cfg.store, drawbridge_audit::StoreKind::Postgres);
    assert!(cfg.fsync);
    assert_eq!(cfg.checkpoint_every, 1000);
    let err = Config::from_toml("[audit]\nfsnyc = true\n").unwrap_err();
    assert!(err.to_string().contains("fsnyc"), "{err}");
    assert_eq!(Config::from_toml("").unwrap().store, drawbridge_audit::StoreKind::Sqlite);
}

#[test]
fn two_logs_cannot_share_a_journal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config();
    let _a = AuditLog::open(&cfg, dir.path()).unwrap();
    let err = AuditLog::open(&cfg, dir.path()).err().unwrap();
    assert!(err.to_string().contains("in use by another process"), "{err}");
}
