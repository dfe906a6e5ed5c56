//! Unit tests on hand-built statement facts.

use super::*;
use sql::{Operation, Table};
use std::collections::BTreeSet;

pub(crate) fn stmt(command: &str, ops: &[Operation]) -> Statement {
    Statement {
        start: 0,
        end: 0,
        command: command.into(),
        operations: ops.iter().copied().collect(),
        tables: BTreeSet::new(),
        functions: BTreeSet::new(),
        transaction: None,
        prepares: None,
        executes: None,
        deallocates: None,
        rows_countable: true,
        result: None,
        pinned: None,
        copy: None,
        changes_lexing: false,
    }
}

fn with_tables(mut s: Statement, tables: &[(Option<&str>, &str)]) -> Statement {
    s.tables = tables
        .iter()
        .map(|(schema, name)| Table {
            schema: schema.map(String::from),
            name: (*name).into(),
            write: false,
        })
        .collect();
    s
}

fn with_functions(mut s: Statement, fs: &[(Option<&str>, &str)]) -> Statement {
    s.functions = fs
        .iter()
        .map(|(schema, name)| Function {
            schema: schema.map(String::from),
            name: (*name).into(),
        })
        .collect();
    s
}

fn principal(agent: &str, groups: &[&str]) -> Principal {
    Principal {
        agent: agent.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn judge(
    policy: &Policy,
    s: &Statement,
    p: &Principal,
    now: &str,
    catalog: Option<&dyn FunctionCatalog>,
) -> Decision {
    let ctx = Context {
        principal: p,
        target: "prod",
        now: at(now),
        catalog,
        exempt: &[],
    };
    policy.evaluate(s, &ctx)
}

const NOON: &str = "2026-11-18T12:00:00Z";

fn yaml(text: &str) -> Policy {
    Policy::from_yaml(text, "test.yaml").unwrap()
}

fn load_err(text: &str) -> String {
    Policy::from_yaml(text, "test.yaml")
        .unwrap_err()
        .to_string()
}

#[test]
fn operations_fit_the_bit_set() {
    assert!(Operation::ALL.len() <= 128);
}

#[test]
fn default_deny_names_first_uncovered_operation() {
    let p = yaml("version: 1\nrules:\n  - name: reads\n    effect: allow\n    match: { operations: [select] }\n");
    let d = judge(
        &p,
        &stmt("SELECT", &[Operation::Select]),
        &principal("a", &[]),
        NOON,
        None,
    );
    assert_eq!(d.effect, Effect::Allow);
    assert_eq!(d.rules, vec!["reads"]);
    let d = judge(
        &p,
        &stmt("TRUNCATE", &[Operation::Truncate]),
        &principal("a", &[]),
        NOON,
        None,
    );
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.rules, vec![DEFAULT_DENY]);
    assert!(d.reason.contains("TRUNCATE"), "{}", d.reason);
    // Every operation must be covered, not just one.
    let d = judge(
        &p,
        &stmt("SELECT", &[Operation::Select, Operation::Delete]),
        &principal("a", &[]),
        NOON,
        None,
    );
    assert_eq!(d.effect, Effect::Deny);
    assert!(d.reason.starts_with("DELETE"), "{}", d.reason);
}

#[test]
fn zero_operations_are_allowed_but_deny_rules_still_apply() {
    let p = yaml("version: 1\n");
    assert_eq!(
        judge(&p, &stmt("", &[]), &principal("a", &[]), NOON, None).effect,
        Effect::Allow
    );
    let p = yaml("version: 1\nrules:\n  - name: lockdown\n    effect: deny\n");
    let d = judge(&p, &stmt("", &[]), &principal("a", &[]), NOON, None);
    assert_eq!(
        (d.effect, d.rules),
        (Effect::Deny, vec!["lockdown".to_string()])
    );
}

#[test]
fn precedence_and_rule_lists() {
    let p = yaml(
        r#"
version: 1
rules:
  - name: all
    effect: allow
  - name: hold-deletes
    effect: require_approval
    match: { operations: [delete] }
  - name: no-truncate
    effect: deny
    reason: "no truncation here"
    match: { operations: [truncate] }
  - name: no-audit
    effect: deny
    match: { tables: ["*.audit_*"] }
"#,
    );
    let who = principal("a", &[]);
    let d = judge(&p, &stmt("DELETE", &[Operation::Delete]), &who, NOON, None);
    assert_eq!(
        (d.effect, d.rules.clone()),
        (Effect::RequireApproval, vec!["hold-deletes".to_string()])
    );
    assert_eq!(d.reason, "DELETE requires approval");
    let s = with_tables(
        stmt("TRUNCATE", &[Operation::Truncate, Operation::Delete]),
        &[(Some("app"), "audit_log")],
    );
    let d = judge(&p, &s, &who, NOON, None);
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.rules, vec!["no-truncate", "no-audit"]);
    assert_eq!(d.reason, "no truncation here");
    let s = with_tables(stmt("SELECT", &[Operation::Select]), &[(None, "audit_x")]);
    let d = judge(&p, &s, &who, NOON, None);
    assert_eq!(d.rules, vec!["no-audit"]);
    assert_eq!(d.reason, "using public.audit_x is not allowed");
}

#[test]
fn allow_rules_need_every_table_and_function() {
    let p = yaml(
        r#"
version: 1
rules:
  - name: reports
    effect: allow
    match: { operations: [select], tables: ["public.report_*"], functions: ["lower", "pg_catalog.upper"] }
"#,
    );
    let who = principal("a", &[]);
    let one = with_tables(stmt("SELECT", &[Operation::Select]), &[(None, "report_a")]);
    assert_eq!(judge(&p, &one, &who, NOON, None).effect, Effect::Allow);
    let two = with_tables(
        stmt("SELECT", &[Operation::Select]),
        &[(None, "report_a"), (None, "users")],
    );
    assert_eq!(judge(&p, &two, &who, NOON, None).effect, Effect::Deny);
    let f = with_functions(
        one.clone(),
        &[(None, "lower"), (Some("pg_catalog"), "upper")],
    );
    assert_eq!(judge(&p, &f, &who, NOON, None).effect, Effect::Allow);
    let f = with_functions(one, &[(None, "lower"), (None, "upper")]);
    assert_eq!(judge(&p, &f, &who, NOON, None).effect, Effect::Deny);
}

#[test]
fn principal_and_target_globs() {
    let p = yaml(
        r#"
version: 1
rules:
  - name: ci
    effect: allow
    match: { agents: ["ci-*"], targets: ["prod"] }
  - name: analysts
    effect: allow
    match: { groups: ["analysts"], operations: [read] }
"#,
    );
    let sel = stmt("SELECT", &[Operation::Select]);
    let ins = stmt("INSERT", &[Operation::Insert]);
    assert_eq!(
        judge(&p, &ins, &principal("ci-7", &[]), NOON, None).effect,
        Effect::Allow
    );
    assert_eq!(
        judge(&p, &ins, &principal("claude", &["analysts"]), NOON, None).effect,
        Effect::Deny
    );
    assert_eq!(
        judge(
            &p,
            &sel,
            &principal("claude", &["x", "analysts"]),
            NOON,
            None
        )
        .effect,
        Effect::Allow
    );
    assert_eq!(
        judge(&p, &sel, &principal("claude", &["x"]), NOON, None).effect,
        Effect::Deny
    );
}

#[test]
fn max_rows_is_smallest_of_rules_used() {
    let p = Policy::pack(
        "production",
        &BTreeMap::from([("max_rows".to_string(), serde_json::json!(50))]),
    )
    .unwrap();
    let who = principal("a", &[]);
    let d = judge(&p, &stmt("UPDATE", &[Operation::Update]), &who, NOON, None);
    assert_eq!(d.effect, Effect::Allow);
    assert_eq!(d.max_rows, Some(50));
    assert_eq!(d.rules, vec!["row-limit", "everything-else"]);
    let d = judge(&p, &stmt("SELECT", &[Operation::Select]), &who, NOON, None);
    assert_eq!(
        (d.max_rows, d.rules),
        (None, vec!["everything-else".to_string()])
    );
}

#[test]
fn windows_and_cacheability() {
    let p = yaml(
        r#"
version: 1
windows:
  night: { timezone: "Europe/Berlin", days: [sat], from: "23:00", to: "01:00" }
rules:
  - name: ddl-at-night
    effect: allow
    match: { operations: [ddl], during: night }
  - name: reads
    effect: allow
    match: { operations: [select] }
"#,
    );
    let who = principal("a", &[]);
    let ddl = stmt("CREATE TABLE", &[Operation::CreateTable]);
    // Saturday 23:30 and Sunday 00:30 Berlin are inside; Sunday 23:30 is not.
    for (t, effect) in [
        ("2026-11-21T23:30:00+01:00", Effect::Allow),
        ("2026-11-22T00:30:00+01:00", Effect::Allow),
        ("2026-11-22T23:30:00+01:00", Effect::Deny),
    ] {
        let d = judge(&p, &ddl, &who, t, None);
        assert_eq!(d.effect, effect, "{t}");
        assert!(!d.cacheable);
    }
    assert!(judge(&p, &stmt("SELECT", &[Operation::Select]), &who, NOON, None).cacheable);
}

#[test]
fn volatile_functions_follow_the_catalog() {
    let p = Policy::pack("read-only", &BTreeMap::new()).unwrap();
    let catalog = MapCatalog(BTreeMap::from([
        ("nextval".to_string(), Volatility::Volatile),
        ("random".to_string(), Volatility::Volatile),
        ("lower".to_string(), Volatility::Immutable),
        ("app.audit".to_string(), Volatility::Stable),
    ]));
    let who = principal("a", &[]);
    let call = |fs: &[(Option<&str>, &str)]| {
        with_functions(
            stmt("SELECT", &[Operation::Select, Operation::FunctionCall]),
            fs,
        )
    };
    let cat: Option<&dyn FunctionCatalog> = Some(&catalog);
    assert_eq!(
        judge(
            &p,
            &call(&[(None, "lower"), (None, "random")]),
            &who,
            NOON,
            cat
        )
        .effect,
        Effect::Allow
    );
    assert_eq!(
        judge(
            &p,
            &call(&[(Some("pg_catalog"), "random")]),
            &who,
            NOON,
            cat
        )
        .effect,
        Effect::Allow
    );
    let d = judge(&p, &call(&[(None, "nextval")]), &who, NOON, cat);
    assert_eq!(
        (d.effect, d.rules),
        (Effect::Deny, vec!["volatile-functions".to_string()])
    );
    // A same-named function in a user schema is not excused, and is unknown.
    assert_eq!(
        judge(&p, &call(&[(Some("public"), "random")]), &who, NOON, cat).effect,
        Effect::Deny
    );
    assert_eq!(
        judge(&p, &call(&[(Some("app"), "audit")]), &who, NOON, cat).effect,
        Effect::Allow
    );
    // No catalog: every non-excepted function is unknown, so refused.
    assert_eq!(
        judge(&p, &call(&[(None, "lower")]), &who, NOON, None).effect,
        Effect::Deny
    );
}

#[test]
fn cel_conditions() {
    let p = yaml(
        r#"
version: 1
rules:
  - name: all
    effect: allow
  - name: ops-may-delete
    effect: deny
    match:
      condition: 'statement.operations.exists(o, o == "delete") && principal.agent != "ops"'
  - name: weekday-only
    effect: deny
    match:
      operations: [insert]
      condition: 'now.getDayOfWeek() == 0'
"#,
    );
    let del = with_tables(stmt("DELETE", &[Operation::Delete]), &[(None, "t")]);
    let d = judge(&p, &del, &principal("claude", &[]), NOON, None);
    assert_eq!(
        (d.effect, d.rules.clone()),
        (Effect::Deny, vec!["ops-may-delete".to_string()])
    );
    assert!(d.cacheable);
    assert_eq!(
        judge(&p, &del, &principal("ops", &[]), NOON, None).effect,
        Effect::Allow
    );
    let ins = stmt("INSERT", &[Operation::Insert]);
    // 2026-11-22 is a Sunday (day 0 in CEL, UTC).
    let d = judge(
        &p,
        &ins,
        &principal("ops", &[]),
        "2026-11-22T12:00:00Z",
        None,
    );
    assert_eq!(d.effect, Effect::Deny);
    assert!(!d.cacheable);
    assert_eq!(
        judge(&p, &ins, &principal("ops", &[]), NOON, None).effect,
        Effect::Allow
    );
}

#[test]
fn cel_failures_fail_closed() {
    // `size(target) / 0` errors at run time.
    let p = yaml(
        r#"
version: 1
rules:
  - name: maybe
    effect: allow
    match: { condition: 'size(target) / 0 == 1' }
  - name: refuse
    effect: deny
    match: { operations: [insert], condition: 'size(target) / 0 == 1' }
"#,
    );
    let who = principal("a", &[]);
    assert_eq!(
        judge(&p, &stmt("SELECT", &[Operation::Select]), &who, NOON, None).rules,
        vec![DEFAULT_DENY]
    );
    assert_eq!(
        judge(&p, &stmt("INSERT", &[Operation::Insert]), &who, NOON, None).rules,
        vec!["refuse"]
    );
}

#[test]
fn cel_deadline_fails_closed() {
    // Quadratic in the number of tables: slow enough with a zero budget.
    let src = r#"
version: 1
rules:
  - name: slow-allow
    effect: allow
    match: { condition: 'statement.tables.all(a, statement.tables.all(b, a != "" && b != ""))' }
  - name: slow-deny
    effect: deny
    match: { operations: [insert], condition: 'statement.tables.exists(a, statement.tables.exists(b, a == "x" && b == "y"))' }
"#;
    let names: Vec<String> = (0..300).map(|i| format!("t{i}")).collect();
    let mut s = stmt("SELECT", &[Operation::Select]);
    s = with_tables(
        s,
        &names.iter().map(|n| (None, n.as_str())).collect::<Vec<_>>(),
    );
    let who = principal("a", &[]);
    let generous = yaml(src).with_condition_deadline(Duration::from_secs(30));
    assert_eq!(judge(&generous, &s, &who, NOON, None).effect, Effect::Allow);
    let tight = yaml(src).with_condition_deadline(Duration::from_nanos(1));
    assert_eq!(
        judge(&tight, &s, &who, NOON, None).rules,
        vec![DEFAULT_DENY]
    );
    let mut ins = s.clone();
    ins.operations = [Operation::Insert].into_iter().collect();
    assert_eq!(
        judge(&generous, &ins, &who, NOON, None).effect,
        Effect::Allow
    );
    assert_eq!(
        judge(&tight, &ins, &who, NOON, None).rules,
        vec!["slow-deny"]
    );
}

#[test]
fn judge_combines_statements() {
    let p = Policy::pack("production", &BTreeMap::new()).unwrap();
    let who = principal("a", &[]);
    let ctx = Context {
        principal: &who,
        target: "prod",
        now: at(NOON),
        catalog: None,
        exempt: &[],
    };
    let analysis = Analysis {
        statements: vec![
            stmt("UPDATE", &[Operation::Update]),
            stmt("TRUNCATE", &[Operation::Truncate]),
            stmt("DROP TABLE", &[Operation::DropTable]),
        ],
    };
    let v = p.judge(&analysis, &ctx);
    assert_eq!(v.effect, Effect::Deny);
    assert_eq!(
        v.rules,
        vec![
            "no-truncate",
            "no-drop-table",
            "no-ddl-outside-migration-window"
        ]
    );
    assert!(
        v.reason.contains("TRUNCATE") && v.reason.contains("DROP TABLE"),
        "{}",
        v.reason
    );
    assert_eq!(v.max_rows, Some(1000));
    assert_eq!(v.deciding_statement(), Some(1));
    let empty = p.judge(&Analysis::default(), &ctx);
    assert_eq!((empty.effect, empty.rules.len()), (Effect::Allow, 0));
}

#[test]
fn production_ddl_window_parameter() {
    let who = principal("a", &[]);
    let ddl = stmt("CREATE INDEX", &[Operation::CreateIndex]);
    let always = Policy::pack("production", &BTreeMap::new()).unwrap();
    assert_eq!(
        judge(&always, &ddl, &who, "2026-11-21T03:00:00+01:00", None).rules,
        vec!["no-ddl-outside-migration-window"]
    );
    let window = serde_json::json!({ "timezone": "Europe/Berlin", "days": ["sat", "sun"], "from": "02:00", "to": "04:00" });
    let inline = Policy::pack(
        "production",
        &BTreeMap::from([("migration_window".to_string(), window)]),
    )
    .unwrap();
    assert_eq!(
        judge(&inline, &ddl, &who, "2026-11-21T03:00:00+01:00", None).effect,
        Effect::Allow
    );
    assert_eq!(
        judge(&inline, &ddl, &who, "2026-11-21T05:00:00+01:00", None).effect,
        Effect::Deny
    );
    // By name, from the including file.
    let named = yaml(
        r#"
version: 1
include:
  - pack: production
    with: { migration_window: migrations }
windows:
  migrations: { timezone: "Europe/Berlin", days: [sat, sun], from: "02:00", to: "04:00" }
"#,
    );
    assert_eq!(
        judge(&named, &ddl, &who, "2026-11-22T02:30:00+01:00", None).effect,
        Effect::Allow
    );
    // DROP TABLE stays refused inside the window.
    let drop = stmt("DROP TABLE", &[Operation::DropTable]);
    assert_eq!(
        judge(&named, &drop, &who, "2026-11-22T02:30:00+01:00", None).rules,
        vec!["no-drop-table"]
    );
    assert_ne!(always.version(), inline.version());
}

#[test]
fn version_is_stable_and_content_based() {
    let a = yaml("version: 1\nrules:\n  - name: r\n    effect: allow\n");
    let b = yaml("# comment\nversion: 1\nrules:\n- {name: r, effect: allow}\n");
    let c = yaml("version: 1\nrules:\n  - name: r\n    effect: deny\n");
    assert_eq!(a.version(), b.version());
    assert_ne!(a.version(), c.version());
    assert_eq!(a.version().len(), 32);
}

#[test]
fn load_errors_name_file_line_and_field() {
    let e =
        load_err("version: 1\nrules:\n  - name: r\n    effect: allow\n    match: { agnts: [x] }\n");
    assert!(
        e.starts_with("test.yaml: ") && e.contains("agnts") && e.contains("line 5"),
        "{e}"
    );
    let e = load_err(
        "version: 1\nrules:\n  - name: r\n    effect: allow\n    match: { operations: [dleete] }\n",
    );
    assert!(
        e.contains("line 3")
            && e.contains("rule `r`")
            && e.contains("match.operations")
            && e.contains("dleete"),
        "{e}"
    );
    let e =
        load_err("version: 1\nrules:\n  - {name: r, effect: allow}\n  - {name: r, effect: deny}\n");
    assert!(e.contains("already has this name"), "{e}");
    let e = load_err("version: 1\nrules:\n  - {name: R, effect: allow}\n");
    assert!(e.contains("name:"), "{e}");
    let e = load_err("version: 1\nrules:\n  - {name: r, effect: deny, max_rows: 3}\n");
    assert!(e.contains("max_rows"), "{e}");
    let e = load_err("version: 1\nrules:\n  - name: r\n    effect: deny\n    match: { condition: 'statement.operations.exists(o, ' }\n");
    assert!(e.contains("condition") && e.contains("CEL syntax"), "{e}");
    let e = load_err("version: 1\nrules:\n  - name: r\n    effect: deny\n    match: { condition: 'principle.agent == \"x\"' }\n");
    assert!(e.contains("unknown variable `principle`"), "{e}");
    let e = load_err(
        "version: 1\nrules:\n  - name: r\n    effect: deny\n    match: { during: nope }\n",
    );
    assert!(e.contains("during: unknown window `nope`"), "{e}");
    let e = load_err(
        "version: 1\nwindows:\n  w: { timezone: Mars/Base, from: \"01:00\", to: \"02:00\" }\n",
    );
    assert!(
        e.contains("line 3") && e.contains("windows.w.timezone"),
        "{e}"
    );
    let e = load_err("version: 2\n");
    assert!(e.contains("version"), "{e}");
    let e = load_err("version: 1\ninclude:\n  - pack: production\n    with: { max_row: 5 }\n");
    assert!(
        e.contains("no parameter `max_row`") && e.contains("max_rows"),
        "{e}"
    );
    let e = load_err("version: 1\ninclude:\n  - pack: production\n    with: { max_rows: many }\n");
    assert!(e.contains("with.max_rows"), "{e}");
    let e = load_err("version: 1\ninclude:\n  - pack: prod\n");
    assert!(e.contains("unknown pack `prod`"), "{e}");
    let e = load_err("version: 1\ninclude:\n  - pack: production\n  - pack: production\n");
    assert!(e.contains("already has this name"), "{e}");
    let e =
        load_err("version: 1\nrules:\n  - name: r\n    effect: deny\n    match: { tables: [] }\n");
    assert!(e.contains("tables: empty list"), "{e}");
}

#[test]
fn every_pack_compiles() {
    for name in packs::names() {
        let p = Policy::pack(name, &BTreeMap::new()).unwrap();
        assert!(!p.rule_names().is_empty(), "{name}");
    }
}

#[test]
fn published_schema_is_current() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/policy.schema.json");
    let generated = json_schema();
    if std::env::var_os("DRAWBRIDGE_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/policy.schema.json is stale; regenerate with DRAWBRIDGE_BLESS=1 cargo test -p drawbridge-policy"
    );
}
