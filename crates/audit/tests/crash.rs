//! Records survive a kill of the process: the child appends and aborts, the parent reopens.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use drawbridge_audit::{AuditLog, Reader};

const CHILD_DIR: &str = "DRAWBRIDGE_AUDIT_CRASH_CHILD_DIR";
const RECORDS: u64 = 500;

/// Creates the store, holds its write lock so a child's writer can store nothing (all it
/// appends lives only in its journal), runs the test `child` with `env` set to `dir` until
/// it dies, and returns the connection that holds the lock.
fn child_dies_with_store_blocked(dir: &std::path::Path, child: &str, env: &str) -> rusqlite::Connection {
    // One test at a time: a child forked by the other test holds copies of this process's
    // files until it execs, this journal directory's lock included, and the child here would
    // then find the directory in use.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    drop(AuditLog::open(&sqlite_config(), dir).unwrap());
    let blocker = rusqlite::Connection::open(dir.join("audit.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([child, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, dir)
        .status()
        .unwrap();
    assert!(!status.success(), "the child must have died");
    blocker
}

/// The child half: does nothing unless started by `records_survive_abort`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let log = AuditLog::open(&sqlite_config(), dir.as_ref()).unwrap();
    for i in 0..RECORDS {
        log.append(statement("crash", i, "UPDATE t SET x = 1", "allow")).unwrap();
    }
    std::process::abort();
}

#[test]
fn records_survive_abort() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config();
    let blocker = child_dies_with_store_blocked(dir.path(), "crash_child", CHILD_DIR);

    let stored: i64 = blocker
        .query_row("SELECT count(*) FROM drawbridge_audit_records", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 0, "nothing reached the store before the crash");
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);

    let log = AuditLog::open(&cfg, dir.path()).unwrap();
    assert_eq!(log.stats().stored_seq, RECORDS, "reopen replays the journal");
    assert_eq!(log.append(closed("crash")).unwrap(), RECORDS + 1);
    log.flush(Duration::from_secs(10)).unwrap();
    drop(log);

    let report = Reader::open(&cfg, dir.path()).unwrap().verify().unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.streams[0].records, RECORDS + 1);
    // Reopening shrank the journal to the chain head (500); 501 came after.
    let journal = std::fs::read_to_string(dir.path().join("audit-journal/journal.jsonl")).unwrap();
    let seqs: Vec<u64> = journal
        .lines()
        .map(|l| drawbridge_audit::Record::from_json_line(l).unwrap().seq)
        .collect();
    assert_eq!(seqs, vec![RECORDS, RECORDS + 1]);
}

const PAIRS_CHILD_DIR: &str = "DRAWBRIDGE_AUDIT_PAIRS_CHILD_DIR";
const PAIRS: u64 = 100;

/// The child half of `the_last_record_before_a_crash_is_kept`.
#[test]
fn pairs_child() {
    let Ok(dir) = std::env::var(PAIRS_CHILD_DIR) else {
        return;
    };
    let log = AuditLog::open(&sqlite_config(), dir.as_ref()).unwrap();
    for i in 0..PAIRS {
        log.append(statement("crash", i, "UPDATE t SET x = 1", "allow")).unwrap();
        log.append(closed("crash")).unwrap();
    }
    std::process::abort();
}

#[test]
fn the_last_record_before_a_crash_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config();
    let blocker = child_dies_with_store_blocked(dir.path(), "pairs_child", PAIRS_CHILD_DIR);
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);

    // Every record was in the journal when `append` returned, the last one included.
    let log = AuditLog::open(&cfg, dir.path()).unwrap();
    assert_eq!(log.stats().stored_seq, 2 * PAIRS);
    log.append(closed("after")).unwrap();
    log.flush(Duration::from_secs(10)).unwrap();
    drop(log);
    let report = Reader::open(&cfg, dir.path()).unwrap().verify().unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.streams[0].records, 2 * PAIRS + 1);
    let journal = std::fs::read_to_string(dir.path().join("audit-journal/journal.jsonl")).unwrap();
    let last = journal.lines().last().map(|l| drawbridge_audit::Record::from_json_line(l).unwrap().seq);
    assert_eq!(last, Some(2 * PAIRS + 1));
}
