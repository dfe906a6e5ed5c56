//! Unit tests of mask rules: loading, matching and their independence from decisions.

use super::*;
use mask::{Detectors, SemanticType, Strategy};

fn load(text: &str) -> Policy {
    Policy::from_yaml(text, "masks.yaml").unwrap()
}

fn load_err(text: &str) -> String {
    Policy::from_yaml(text, "masks.yaml")
        .unwrap_err()
        .to_string()
}

fn who(agent: &str, groups: &[&str]) -> Principal {
    Principal {
        agent: agent.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// A file with one mask rule `m` whose mask block is `block` (flow style).
fn one_rule(block: &str) -> String {
    format!("version: 1\nrules:\n  - name: m\n    effect: mask\n    mask: {block}\n")
}

fn only(block: &str) -> ColumnMasking {
    let p = load(&one_rule(block));
    let masks = p.masks(&who("a", &[]), "prod");
    masks.column("public", "users", "x").cloned().unwrap()
}

#[test]
fn defaults_follow_the_semantic_type() {
    let m = only("{ columns: [x] }");
    assert_eq!(m.rule, "m");
    assert_eq!(m.strategy, Strategy::redact());
    assert!(!m.scan);
    assert_eq!(m.detectors, Detectors::ALL);
    assert_eq!(m.unresolved, Unresolved::Mask);

    for (t, want) in [
        ("card", Strategy::partial(4)),
        ("phone", Strategy::partial(4)),
        ("ssn", Strategy::partial(4)),
        ("iban", Strategy::partial(4)),
        ("email", Strategy::redact()),
        ("jwt", Strategy::redact()),
    ] {
        let m = only(&format!("{{ columns: [x], type: {t}, scan: true }}"));
        assert_eq!(m.strategy, want, "{t}");
        assert!(m.scan);
        let ty: SemanticType = t.parse().unwrap();
        assert_eq!(m.detectors, Detectors::of(&[ty]), "{t}");
    }
}

#[test]
fn explicit_strategies_and_options() {
    let m = only("{ columns: [x], strategy: partial, keep: 2 }");
    assert_eq!(m.strategy, Strategy::partial(2));
    // A type's default strategy accepts its option without naming the strategy.
    let m = only("{ columns: [x], type: card, keep: 6 }");
    assert_eq!(m.strategy, Strategy::partial(6));
    let m = only("{ columns: [x], strategy: redact, placeholder: \"***\" }");
    assert_eq!(
        m.strategy,
        Strategy::Redact {
            placeholder: "***".into()
        }
    );
    let m = only("{ columns: [x], type: card, strategy: hash }");
    assert_eq!(m.strategy, Strategy::Hash { hex_len: 16 });
    let m = only("{ columns: [x], strategy: hash, hash_length: 64 }");
    assert_eq!(m.strategy, Strategy::Hash { hex_len: 64 });
    let m = only("{ columns: [x], strategy: null, unresolved: refuse }");
    assert_eq!(m.strategy, Strategy::Null);
    assert_eq!(m.unresolved, Unresolved::Refuse);
    // YAML reads a bare `null` as null; it still names the strategy.
    for spelling in ["~", "\"null\""] {
        let m = only(&format!("{{ columns: [x], strategy: {spelling} }}"));
        assert_eq!(m.strategy, Strategy::Null, "{spelling}");
    }
}

#[test]
fn mask_block_belongs_to_mask_rules_only() {
    let e = load_err(
        "version: 1\nrules:\n  - name: a\n    effect: allow\n    mask: { columns: [x] }\n",
    );
    assert!(
        e.contains("masks.yaml") && e.contains("rule `a`") && e.contains("mask: only mask rules"),
        "{e}"
    );
    let e = load_err("version: 1\nrules:\n  - name: m\n    effect: mask\n");
    assert!(
        e.contains("line 3") && e.contains("rule `m`") && e.contains("mask: a mask rule needs"),
        "{e}"
    );
    for (field, extra) in [
        ("max_rows", "    max_rows: 5\n"),
        ("approval", "    approval: { mode: hold }\n"),
        ("reason", "    reason: no\n"),
    ] {
        let e = load_err(&format!(
            "version: 1\nrules:\n  - name: m\n    effect: mask\n{extra}    mask: {{ columns: [x] }}\n"
        ));
        assert!(e.contains(&format!("rule `m`: {field}:")), "{field}: {e}");
    }
}

#[test]
fn options_must_fit_the_strategy() {
    for (block, field, detail) in [
        (
            "{ columns: [x], keep: 2 }",
            "mask.keep",
            "(this rule's strategy is redact)",
        ),
        (
            "{ columns: [x], type: email, keep: 2 }",
            "mask.keep",
            "only the partial strategy",
        ),
        (
            "{ columns: [x], strategy: hash, placeholder: x }",
            "mask.placeholder",
            "only the redact",
        ),
        (
            "{ columns: [x], type: card, placeholder: x }",
            "mask.placeholder",
            "is partial",
        ),
        (
            "{ columns: [x], strategy: null, hash_length: 8 }",
            "mask.hash_length",
            "only the hash",
        ),
        (
            "{ columns: [x], strategy: hash, hash_length: 0 }",
            "mask.hash_length",
            "1 to 64, got 0",
        ),
        (
            "{ columns: [x], strategy: hash, hash_length: 65 }",
            "mask.hash_length",
            "got 65",
        ),
        (
            "{ columns: [x], placeholder: \"a\\0b\" }",
            "mask.placeholder",
            "NUL",
        ),
        ("{ columns: [] }", "mask.columns", "empty list"),
        (
            "{ columns: [a.b.c.d] }",
            "mask.columns[0]",
            "more than three",
        ),
        (
            "{ columns: [x, \"users..x\"] }",
            "mask.columns[1]",
            "empty name part",
        ),
        (
            "{ columns: [\".x\"] }",
            "mask.columns[0]",
            "empty name part",
        ),
    ] {
        let e = load_err(&one_rule(block));
        assert!(
            e.contains("rule `m`") && e.contains(&format!("{field}:")) && e.contains(detail),
            "{block}: {e}"
        );
    }
}

#[test]
fn format_errors_are_reported_by_the_parser() {
    for (block, needle) in [
        ("{ columns: [x], strategy: shuffle }", "shuffle"),
        (
            "{ columns: [x], type: Email }",
            "unknown semantic type `Email`",
        ),
        (
            "{ columns: [x], type: passport }",
            "expected one of email, phone",
        ),
        ("{ columns: [x], unresolved: ignore }", "ignore"),
        ("{ columns: [x], colour: red }", "colour"),
        ("{ columns: [x], hash_length: -1 }", "hash_length"),
    ] {
        let e = load_err(&one_rule(block));
        assert!(
            e.starts_with("masks.yaml") && e.contains(needle),
            "{block}: {e}"
        );
    }
}

#[test]
fn mask_rules_match_only_principal_and_target() {
    for field in [
        "operations: [select]",
        "tables: [\"public.users\"]",
        "functions: [lower]",
        "volatile_functions: {}",
        "during: w",
        "outside: w",
        "condition: 'true'",
    ] {
        let text = format!(
            "version: 1\nwindows:\n  w: {{ from: \"01:00\", to: \"02:00\" }}\nrules:\n  - name: m\n    effect: mask\n    match: {{ agents: [a], {field} }}\n    mask: {{ columns: [x] }}\n"
        );
        let e = load_err(&text);
        let name = field.split(':').next().unwrap();
        assert!(
            e.contains("rule `m`")
                && e.contains(&format!(
                    "match.{name}: a mask rule matches only agents, groups and targets"
                )),
            "{field}: {e}"
        );
    }
    let e = load_err(
        "version: 1\nrules:\n  - name: m\n    effect: mask\n    match_any: [{ agents: [a] }, { tables: [t] }]\n    mask: { columns: [x] }\n",
    );
    assert!(e.contains("match_any[1].tables:"), "{e}");
    let e = load_err(
        "version: 1\nrules:\n  - name: m\n    effect: mask\n    match: { groups: [] }\n    mask: { columns: [x] }\n",
    );
    assert!(e.contains("match.groups: empty list"), "{e}");
    let e = load_err(
        "version: 1\nrules:\n  - name: m\n    effect: mask\n    match: {}\n    match_any: []\n    mask: { columns: [x] }\n",
    );
    assert!(e.contains("either match or match_any"), "{e}");
}

#[test]
fn column_patterns_match_trailing_parts() {
    let p = load(&one_rule(
        "{ columns: [\"public.users.email\", \"users.phone\", ssn, \"*.*card*\", \"billing.acc?unts.iban\"] }",
    ));
    let m = p.masks(&who("a", &[]), "prod");
    let hit = |s: &str, t: &str, c: &str| m.column(s, t, c).is_some();
    // Three parts: exact schema, table and column.
    assert!(hit("public", "users", "email"));
    assert!(!hit("crm", "users", "email"));
    assert!(!hit("public", "people", "email"));
    // Two parts: any schema.
    assert!(hit("public", "users", "phone"));
    assert!(hit("crm", "users", "phone"));
    assert!(!hit("crm", "people", "phone"));
    // One part: any table.
    assert!(hit("x", "y", "ssn"));
    assert!(!hit("x", "y", "ssn_hash") && !hit("x", "y", "my_ssn"));
    // Globs within one part; `*` does not reach across a dot into another part.
    assert!(hit("public", "orders", "card_number"));
    assert!(hit("s", "t", "creditcard"));
    assert!(!hit("cards", "t", "id") && !hit("s", "cards", "id"));
    assert!(hit("billing", "accounts", "iban"));
    assert!(!hit("billing", "acc_unts_x", "iban"));
    assert!(!hit("billing", "accounts", "ibans"));
    // Case-sensitive, as the catalog spells names.
    assert!(!hit("public", "users", "EMAIL"));
    assert!(!hit("PUBLIC", "users", "email"));
    assert!(!hit("public", "Users", "phone"));
    assert!(!hit("x", "y", "SSN"));
}

#[test]
fn rules_apply_by_agent_group_and_target() {
    let p = load(
        "version: 1
rules:
  - name: by-agent
    effect: mask
    match: { agents: [\"ci-*\"] }
    mask: { columns: [a] }
  - name: by-group
    effect: mask
    match: { groups: [analysts] }
    mask: { columns: [b] }
  - name: by-target
    effect: mask
    match: { targets: [prod] }
    mask: { columns: [c] }
  - name: both
    effect: mask
    match: { groups: [agents], targets: [\"prod*\"] }
    mask: { columns: [d] }
  - name: either
    effect: mask
    match_any: [{ agents: [ops] }, { targets: [staging] }]
    mask: { columns: [e] }
  - name: everyone
    effect: mask
    mask: { columns: [f] }
",
    );
    let rules = |agent: &str, groups: &[&str], target: &str| {
        p.masks(&who(agent, groups), target)
            .rules()
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(rules("x", &[], "dev"), ["everyone"]);
    assert_eq!(rules("ci-7", &[], "dev"), ["by-agent", "everyone"]);
    assert_eq!(
        rules("x", &["ops", "analysts"], "dev"),
        ["by-group", "everyone"]
    );
    assert_eq!(rules("x", &[], "prod"), ["by-target", "everyone"]);
    assert_eq!(rules("x", &["agents"], "prod-eu"), ["both", "everyone"]);
    assert_eq!(rules("x", &["agents"], "dev"), ["everyone"]);
    assert_eq!(rules("ops", &[], "dev"), ["either", "everyone"]);
    assert_eq!(rules("x", &[], "staging"), ["either", "everyone"]);

    let m = p.masks(&who("x", &["analysts"]), "dev");
    assert_eq!(
        m.column("s", "t", "b").map(|c| c.rule.as_str()),
        Some("by-group")
    );
    assert!(m.column("s", "t", "a").is_none(), "by-agent does not apply");
    assert!(!m.is_empty());
}

#[test]
fn first_applicable_rule_wins() {
    let p = load(
        "version: 1
rules:
  - name: for-ci
    effect: mask
    match: { agents: [ci] }
    mask: { columns: [email], strategy: null }
  - name: hashed
    effect: mask
    mask: { columns: [\"users.email\", \"users.name\"], strategy: hash }
  - name: redacted
    effect: mask
    mask: { columns: [\"*\"] }
",
    );
    let m = p.masks(&who("bot", &[]), "prod");
    assert_eq!(m.rules(), ["hashed", "redacted"]);
    let email = m.column("public", "users", "email").unwrap();
    assert_eq!(
        (email.rule.as_str(), &email.strategy),
        ("hashed", &Strategy::Hash { hex_len: 16 })
    );
    assert_eq!(
        m.column("public", "orders", "email").unwrap().rule,
        "redacted"
    );
    let ci = p.masks(&who("ci", &[]), "prod");
    let email = ci.column("public", "users", "email").unwrap();
    assert_eq!(
        (email.rule.as_str(), &email.strategy),
        ("for-ci", &Strategy::Null)
    );
    assert_eq!(ci.column("public", "users", "name").unwrap().rule, "hashed");
}

#[test]
fn strictest_unresolved_wins() {
    let p = load(
        "version: 1
rules:
  - name: lenient
    effect: mask
    mask: { columns: [a] }
  - name: strict
    effect: mask
    match: { targets: [prod] }
    mask: { columns: [b], unresolved: refuse }
  - name: lenient-too
    effect: mask
    mask: { columns: [c], unresolved: mask }
",
    );
    assert_eq!(
        p.masks(&who("x", &[]), "dev").unresolved(),
        Unresolved::Mask
    );
    assert_eq!(
        p.masks(&who("x", &[]), "prod").unresolved(),
        Unresolved::Refuse
    );
    assert_eq!(Masks::default().unresolved(), Unresolved::Mask);
    assert!(Masks::default().is_empty());
    assert!(Masks::default().column("a", "b", "c").is_none());
    assert!(Unresolved::Refuse > Unresolved::Mask);
}

#[test]
fn version_changes_with_mask_rules() {
    let base =
        "version: 1\nrules:\n  - { name: reads, effect: allow, match: { operations: [select] } }\n";
    let with = |block: &str| {
        load(&format!(
            "{base}  - name: m\n    effect: mask\n    mask: {block}\n"
        ))
        .version()
        .to_string()
    };
    let plain = load(base).version().to_string();
    let a = with("{ columns: [email] }");
    assert_ne!(plain, a);
    assert_eq!(
        a,
        with("{ columns: [email], scan: false, unresolved: mask }")
    );
    for other in [
        "{ columns: [phone] }",
        "{ columns: [email], strategy: hash }",
        "{ columns: [email], scan: true }",
        "{ columns: [email], unresolved: refuse }",
        "{ columns: [email], type: email }",
        "{ columns: [email], placeholder: x }",
    ] {
        assert_ne!(a, with(other), "{other}");
    }
}

#[test]
fn decisions_ignore_mask_rules() {
    let s = super::tests::stmt("SELECT", &[sql::Operation::Select]);
    let p = who("a", &["agents"]);
    let ctx = Context {
        principal: &p,
        target: "prod",
        now: chrono::Utc::now(),
        catalog: None,
        exempt: &[],
    };
    let only_masks = load(&one_rule("{ columns: [\"*\"] }"));
    assert!(only_masks.rule_names().is_empty());
    assert_eq!(only_masks.mask_rule_names(), ["m"]);
    let d = only_masks.evaluate(&s, &ctx);
    assert_eq!(
        (d.effect, d.rules),
        (Effect::Deny, vec![DEFAULT_DENY.to_string()])
    );

    let mixed = load(
        "version: 1
rules:
  - name: m
    effect: mask
    mask: { columns: [\"*\"] }
  - { name: reads, effect: allow, match: { operations: [select] } }
",
    );
    let d = mixed.evaluate(&s, &ctx);
    assert_eq!(
        (d.effect, d.rules),
        (Effect::Allow, vec!["reads".to_string()])
    );
    let analysis = sql::Analysis {
        statements: vec![s],
    };
    let v = mixed.judge(&analysis, &ctx);
    assert_eq!(
        (v.effect, v.rules),
        (Effect::Allow, vec!["reads".to_string()])
    );
}

#[test]
fn packs_keep_working_and_mask_nothing() {
    let p = load(
        "version: 1
include:
  - pack: production
    with: { max_rows: 10 }
rules:
  - name: pii
    effect: mask
    match: { groups: [agents], targets: [prod] }
    mask: { columns: [\"public.users.email\"], type: email }
",
    );
    assert!(p.rule_names().contains(&"no-truncate"));
    assert_eq!(p.mask_rule_names(), ["pii"]);
    let m = p.masks(&who("a", &["agents"]), "prod");
    assert_eq!(m.column("public", "users", "email").unwrap().rule, "pii");
    assert!(p.masks(&who("a", &[]), "prod").is_empty());
    for name in packs::names() {
        let pack = Policy::pack(name, &BTreeMap::new()).unwrap();
        assert!(pack.mask_rule_names().is_empty(), "{name}");
        assert!(
            pack.masks(&who("a", &["agents"]), "prod").is_empty(),
            "{name}"
        );
    }
}

#[test]
fn names_are_unique_across_mask_and_other_rules() {
    let e = load_err(
        "version: 1\nrules:\n  - { name: r, effect: allow }\n  - { name: r, effect: mask, mask: { columns: [x] } }\n",
    );
    assert!(e.contains("already has this name"), "{e}");
}

#[test]
fn schema_describes_the_mask_block() {
    let schema: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
    let defs = &schema["$defs"];
    let effects = defs["RuleEffect"].to_string();
    assert!(effects.contains("\"mask\""), "{effects}");
    let types: Vec<&str> = defs["SemanticType"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let want: Vec<&str> = SemanticType::ALL.iter().map(|t| t.name()).collect();
    assert_eq!(types, want);
    let props = &defs["Mask"]["properties"];
    for field in [
        "columns",
        "type",
        "strategy",
        "keep",
        "placeholder",
        "hash_length",
        "scan",
        "unresolved",
    ] {
        assert!(props.get(field).is_some(), "{field}");
    }
    assert_eq!(props["hash_length"]["maximum"], 64);
}

#[test]
fn documented_examples_load() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/policy.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let start = doc.find("## Masking").unwrap();
    let section = &doc[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let blocks: Vec<&str> = section
        .split("```yaml\n")
        .skip(1)
        .map(|b| &b[..b.find("```").unwrap()])
        .collect();
    assert_eq!(blocks.len(), 2, "{section}");
    for block in blocks {
        let text = if block.starts_with("version:") {
            block.to_string()
        } else {
            format!("version: 1\n{block}")
        };
        let p = Policy::from_yaml(&text, "docs/policy.md").unwrap();
        assert!(!p.mask_rule_names().is_empty(), "{block}");
    }
}
