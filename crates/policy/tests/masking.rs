//! Mask expectations in policy test files.

use drawbridge_policy::testing;

const POLICY: &str = "version: 1
rules:
  - { name: reads, effect: allow, match: { operations: [select] } }
  - name: mask-customer-pii
    effect: mask
    match: { groups: [agents], targets: [prod] }
    mask: { columns: [\"public.users.email\"], type: email }
";

fn run(cases: &str) -> testing::Report {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), POLICY).unwrap();
    let test = dir.path().join("t.yaml");
    std::fs::write(&test, format!("policy: p.yaml\ncases:\n{cases}")).unwrap();
    let analyzer = sql::Analyzer::new(Default::default());
    testing::run_files(&[test], &analyzer)
}

#[test]
fn passing_mask_expectations() {
    let report = run("  - name: agents see it masked
    groups: [agents]
    target: prod
    sql: SELECT email FROM users
    expect: allow
    masks:
      - { column: public.users.email, rule: mask-customer-pii }
      - { column: public.users.email }
      - { column: public.users.id, masked: false }
      - { column: crm.users.email, masked: false }
  - name: other targets see it plain
    groups: [agents]
    target: dev
    sql: SELECT email FROM users
    expect: allow
    masks: [{ column: public.users.email, masked: false }]
");
    assert!(report.passed(), "{report}");
    assert_eq!(report.passed_count(), 2, "{report}");
}

#[test]
fn failing_mask_expectations_say_what_differed() {
    let report = run("  - name: wrong rule
    groups: [agents]
    target: prod
    sql: SELECT 1
    expect: allow
    masks: [{ column: public.users.email, rule: other }]
  - name: not masked at all
    target: prod
    sql: SELECT 1
    expect: allow
    masks: [{ column: public.users.email }]
  - name: unexpectedly masked
    groups: [agents]
    target: prod
    sql: SELECT 1
    expect: allow
    masks: [{ column: public.users.email, masked: false }]
");
    let text = report.to_string();
    assert_eq!(
        (report.passed_count(), report.failed_count()),
        (0, 3),
        "{text}"
    );
    assert!(
        text.contains(
            "expected public.users.email masked by other, got masked by mask-customer-pii"
        ),
        "{text}"
    );
    assert!(
        text.contains("expected public.users.email masked, got not masked"),
        "{text}"
    );
    assert!(
        text.contains("expected public.users.email not masked, got masked by mask-customer-pii"),
        "{text}"
    );
}

#[test]
fn malformed_mask_expectations_are_file_errors() {
    for (entry, needle) in [
        (
            "{ column: users.email }",
            "masks[0].column: `users.email` is not schema.table.column",
        ),
        (
            "{ column: a.b.c, rule: r, masked: false }",
            "masks[0]: give rule or masked: false",
        ),
        ("{ column: a.b.c, strategy: hash }", "strategy"),
    ] {
        let report = run(&format!(
            "  - {{ name: c, sql: SELECT 1, expect: allow, masks: [{entry}] }}\n"
        ));
        assert_eq!(report.errors.len(), 1, "{entry}: {report}");
        assert!(report.errors[0].1.contains(needle), "{entry}: {report}");
    }
}
