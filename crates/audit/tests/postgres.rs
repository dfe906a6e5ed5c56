//! The shared PostgreSQL store: several gateways at once, tampering, and outages.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use drawbridge_audit::{AuditLog, Config, Reader, StoreKind};
use localpg::LocalPg;

fn pg_config(url: &str, journal: &str) -> Config {
    Config {
        store: StoreKind::Postgres,
        postgres_url: Some(url.to_owned()),
        journal_dir: journal.into(),
        checkpoint_every: 100,
        batch_max: 64,
        ..Config::default()
    }
}

fn verify(cfg: &Config, dir: &Path) -> drawbridge_audit::Report {
    Reader::open(cfg, dir).unwrap().verify().unwrap()
}

#[test]
fn two_gateways_share_one_store() {
    let pg = LocalPg::start(Default::default()).unwrap();
    let url = pg.admin_url("postgres");
    let dir = tempfile::tempdir().unwrap();
    let per_gateway = 600u64;
    std::thread::scope(|s| {
        for name in ["a", "b"] {
            let cfg = pg_config(&url, &format!("journal-{name}"));
            let dir = dir.path();
            s.spawn(move || {
                // Both open at once: schema creation must not race.
                let log = AuditLog::open(&cfg, dir).unwrap();
                for i in 0..per_gateway {
                    log.append(statement(&format!("{name}-{}", i / 10), i, "SELECT 1", "allow")).unwrap();
                }
                log.flush(Duration::from_secs(30)).unwrap();
            });
        }
    });
    let cfg = pg_config(&url, "journal-a");
    let report = verify(&cfg, dir.path());
    assert!(report.ok(), "{report}");
    assert_eq!(report.streams.len(), 2);
    assert!(report.streams.iter().all(|s| s.records == per_gateway && s.sealed_seq == per_gateway));

    // Tampering in the shared store names the stream and record.
    let stream = report.streams[1].stream.clone();
    pg.psql(&format!(
        "UPDATE drawbridge_audit_records SET event = replace(event, 'SELECT 1', 'SELECT 2') \
         WHERE stream = '{stream}' AND seq = 250"
    ))
    .unwrap();
    let report = verify(&cfg, dir.path());
    assert!(!report.ok());
    // Only that record is named (twice if a checkpoint happened to seal exactly it).
    assert!(report.problems.iter().all(|p| p.stream == stream && p.seq == Some(250)), "{report}");
    assert_eq!(report.problems[0].seq, Some(250));
    assert!(report.problems[0].what.contains("record edited"), "{report}");
}

#[test]
fn store_outage_piles_up_in_the_journal_and_turns_unhealthy() {
    let mut pg = LocalPg::start(Default::default()).unwrap();
    let url = pg.admin_url("postgres");
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        max_backlog: 5,
        ..pg_config(&url, "journal")
    };
    let log = AuditLog::open(&cfg, dir.path()).unwrap();
    log.append(opened("s", "a", "t")).unwrap();
    log.flush(Duration::from_secs(10)).unwrap();
    assert!(log.healthy());

    pg.stop().unwrap();
    for i in 0..10 {
        // Still durable: the journal takes it.
        log.append(statement("s", i, "SELECT 1", "allow")).unwrap();
    }
    let stats = log.stats();
    assert_eq!(stats.backlog, 10, "{stats:?}");
    assert!(!log.healthy());
    std::thread::sleep(Duration::from_millis(300));
    assert!(log.stats().last_error.is_some(), "{:?}", log.stats());
    drop(log);

    let journal = std::fs::read_to_string(dir.path().join("journal/journal.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 11);
    let err = AuditLog::open(&cfg, dir.path()).err().unwrap();
    assert!(err.to_string().contains("postgres"), "{err}");
}
