//! Runs the shipped policy test files for the built-in packs through the real analyser.

use drawbridge_policy::testing;
use std::path::PathBuf;

fn run(file: &str) -> testing::Report {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("packs/tests")
        .join(file);
    let analyzer = sql::Analyzer::new(Default::default());
    testing::run_files(&[path], &analyzer)
}

fn check(file: &str, at_least: usize) {
    let report = run(file);
    assert!(report.passed(), "{report}");
    assert!(report.passed_count() >= at_least, "{report}");
}

#[test]
fn production_pack_cases() {
    check("production.yaml", 75);
}

#[test]
fn read_only_pack_cases() {
    check("read-only.yaml", 40);
}

#[test]
fn runner_reports_failures_with_a_diff() {
    let dir = std::env::temp_dir().join(format!("drawbridge-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("p.yaml"),
        "version: 1\nrules:\n  - { name: reads, effect: allow, match: { operations: [select] } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("t.yaml"),
        "policy: p.yaml\ncases:\n  - { name: wrong, sql: \"SELECT 1\", expect: deny }\n  - { name: right, sql: \"SELECT 1\", expect: allow, rule: reads }\n",
    )
    .unwrap();
    let analyzer = sql::Analyzer::new(Default::default());
    let report = testing::run_files(&[dir.join("t.yaml"), dir.join("missing.yaml")], &analyzer);
    let text = report.to_string();
    assert!(!report.passed());
    assert_eq!(
        (
            report.passed_count(),
            report.failed_count(),
            report.errors.len()
        ),
        (1, 1, 1),
        "{text}"
    );
    assert!(
        text.contains("FAIL wrong") && text.contains("expected deny, got allow by [reads]"),
        "{text}"
    );
    assert!(text.contains("1 passed, 1 failed"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
