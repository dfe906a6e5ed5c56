//! The caches never answer with facts a fresh parse would not give.
use drawbridge_sql::{Analysis, Analyzer};

fn fresh(sql: &str) -> Option<Analysis> {
    Analyzer::default().analyze_uncached(sql).ok()
}

const TEMPLATES: &[&str] = &[
    "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
    "UPDATE pgbench_accounts SET abalance = abalance + {} WHERE aid = {};",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({}, {}, {}, {}, CURRENT_TIMESTAMP);",
    "SELECT * FROM t WHERE name = {} AND x > {} LIMIT {}",
    "SELECT {}; DELETE FROM t WHERE id = {}; SELECT {}",
    "  SELECT {}  ;  ;SELECT \"a\"\"b\" FROM \"x\" WHERE y IN ({}, {})",
    "WITH d AS (DELETE FROM t WHERE id = {} RETURNING *) SELECT * FROM d WHERE v = {}",
    "SET statement_timeout = {}",
    "SELECT set_config('search_path', {}, false)",
    "SELECT set_config({}, 'postgres', false)",
    "EXPLAIN (ANALYZE {}) DELETE FROM t",
    "BEGIN; UPDATE t SET a = {} WHERE b = {}; COMMIT",
    "SELECT ARRAY[{}, {}][{}]",
    "SELECT x::numeric(10, {}) FROM t OFFSET {}",
];

const VALUES: &[&str] = &[
    "1", "12345", "0", "999999999999999999999999", "1.5", "0.000001", "'x'", "''", "'it''s'",
    "'role'", "'ROLE'", "'session_authorization'", "'; DROP TABLE t; --'", "'/* x */'",
    "'$$'", "'a''b''c'", "'on'", "'off'", "'\n'", "'DELETE FROM users'",
];

fn fill(template: &str, seed: usize) -> String {
    let mut out = String::new();
    for (i, part) in template.split("{}").enumerate() {
        if i > 0 {
            out.push_str(VALUES[(seed * 7 + i * 3) % VALUES.len()]);
        }
        out.push_str(part);
    }
    out
}

#[test]
fn literal_variants_get_the_facts_of_a_fresh_parse() {
    let a = Analyzer::default();
    let mut checked = 0;
    for t in TEMPLATES {
        for seed in 0..VALUES.len() * 2 {
            let sql = fill(t, seed);
            let cached = a.analyze(&sql).ok().map(|x| (*x).clone());
            assert_eq!(cached, fresh(&sql), "{sql}");
            checked += 1;
        }
    }
    assert!(checked > 500);
    let s = a.stats();
    assert!(s.normalized_hits > 100, "{s:?}");
}

#[test]
fn pgbench_select_shares_one_parse() {
    let a = Analyzer::default();
    let first = a.analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 1;").unwrap();
    for aid in [7, 12345, 99999999] {
        let sql = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};");
        let got = a.analyze(&sql).unwrap();
        assert_eq!(got.statements[0].end, sql.len() - 1);
        assert_eq!(got.statements[0].operations, first.statements[0].operations);
        assert_eq!(Some((*got).clone()), fresh(&sql));
    }
    assert_eq!(a.stats().misses, 1);
    assert_eq!(a.stats().normalized_hits, 3);
}

#[test]
fn values_that_decide_facts_are_not_shared() {
    let a = Analyzer::default();
    let harmless = a.analyze("SELECT set_config('search_path', 'x', false)").unwrap();
    let role = a.analyze("SELECT set_config('role', 'x', false)").unwrap();
    assert!(!harmless.statements[0].has(drawbridge_sql::Operation::SetRole));
    assert!(role.statements[0].has(drawbridge_sql::Operation::SetRole));
    let plain = a.analyze("EXPLAIN (ANALYZE 0) DELETE FROM t").unwrap();
    let analyze = a.analyze("EXPLAIN (ANALYZE 1) DELETE FROM t").unwrap();
    assert!(!plain.statements[0].has(drawbridge_sql::Operation::Delete));
    assert!(analyze.statements[0].has(drawbridge_sql::Operation::Delete));
}

#[test]
fn tricky_texts_never_hit_wrongly() {
    let texts = [
        "SELECT 'a;b' ; DELETE FROM t",
        "SELECT 'a' ; DELETE FROM t",
        "SELECT 'a''; DELETE FROM t; --'",
        "SELECT 'a'';' ; SELECT 1",
        "SELECT 1 -- '; DROP TABLE t\n",
        "SELECT 2 -- '; SELECT 1\n",
        "SELECT /* ' */ 1 /* ' */",
        "SELECT /* x */ 'a' /* ; DROP TABLE t */",
        "SELECT $$a$$; DROP TABLE t",
        "SELECT $$a; DROP TABLE t$$",
        "SELECT E'\\'; DROP TABLE t; --'",
        "SELECT E'\\\\'; DROP TABLE t; --'",
        "SELECT 'x' \n 'y'",
        "SELECT 'x' \n ; DROP TABLE t",
        "SELECT \"a\"\"; DROP TABLE t; --\"",
        "SELECT \"a\"; DROP TABLE t; --\"\"",
        "SELECT U&'\\0041'",
        "SELECT U&\"\\0064rop\" FROM t",
        "SELECT 1.5e3",
        "SELECT 1; SELECT 2",
        "SELECT 1e1; SELECT 2",
        "SELECT 0x10; DELETE FROM t",
        "SELECT 1_0; DELETE FROM t",
        "SELECT t.1 FROM t",
        "SELECT b'1' ; DELETE FROM t",
        "SELECT n'1' ; DELETE FROM t",
        "SELECT int '1' ; DELETE FROM t",
        "DELETE FROM t WHERE a = '--'",
        "DELETE FROM t WHERE a = '/*'",
        "DELETE FROM t",
        "SELECT 'é'; DELETE FROM t",
        "SELECT 'ok' -- é\n",
    ];
    let a = Analyzer::default();
    for round in 0..2 {
        for (i, sql) in texts.iter().enumerate() {
            let sql = if round == 0 { sql.to_string() } else { texts[texts.len() - 1 - i].to_string() };
            let cached = a.analyze(&sql).ok().map(|x| (*x).clone());
            assert_eq!(cached, fresh(&sql), "{sql:?}");
        }
    }
}

#[test]
fn shared_across_threads() {
    let a = std::sync::Arc::new(Analyzer::default());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let sql = format!("UPDATE pgbench_tellers SET tbalance = tbalance + {i} WHERE tid = {t};");
                    let got = a.analyze(&sql).unwrap();
                    assert_eq!(got.statements[0].end, sql.len() - 1);
                    assert!(got.statements[0].rows_countable);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(a.stats().normalized_hits + a.stats().exact_hits >= 790);
}
