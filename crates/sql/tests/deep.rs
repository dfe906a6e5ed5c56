//! Hostile nesting is refused or parsed, never a crash — on the test harness's ordinary
//! small thread stacks, too.
use drawbridge_sql::{Analyzer, Error, Limits};

fn run_on(stack: usize, sql: String) -> Result<usize, Error> {
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || Analyzer::default().analyze(&sql).map(|a| a.statements.len()))
        .unwrap()
        .join()
        .unwrap()
}

fn too_deep(sql: String) {
    let head: String = sql.chars().take(30).collect();
    assert_eq!(run_on(2 << 20, sql), Err(Error::TooDeep { max: 1000 }), "{head}");
}

#[test]
fn extreme_nesting_is_refused() {
    too_deep(format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000)));
    too_deep(format!("SELECT 1{}", "+1".repeat(200_000)));
    too_deep(format!("SELECT {}true", "NOT ".repeat(50_000)));
    too_deep(format!("SELECT {}1{}", "(SELECT ".repeat(2_000), ")".repeat(2_000)));
    too_deep(format!("SELECT 1{}", " UNION SELECT 1".repeat(5_000)));
    too_deep(format!("SELECT * FROM t{}", " JOIN t ON true".repeat(5_000)));
    too_deep(format!("SELECT {}1{}", "CASE WHEN true THEN ".repeat(2_000), " END".repeat(2_000)));
    too_deep(format!("SELECT 1{}", "::int".repeat(5_000)));
    too_deep(format!("SELECT ARRAY{}1{}", "[".repeat(5_000), "]".repeat(5_000)));
    too_deep(format!("SELECT {}1{}", "f(".repeat(5_000), ")".repeat(5_000)));
    too_deep(format!("SELECT {}1", "-+".repeat(50_000)));
}

/// Just under the limit: either parsed or refused, whatever the build, but never a crash,
/// even when the calling thread's stack is far too small for the tree.
#[test]
fn near_the_limit_on_a_small_stack() {
    near_the_limit(256 << 10);
}

/// The caller's stack is just big enough to parse inline: the budget per level holds.
#[test]
fn near_the_limit_inline() {
    near_the_limit(drawbridge_sql::stack_needed(&Limits::default()) + (64 << 10));
}

fn near_the_limit(stack: usize) {
    for sql in [
        format!("SELECT 1{}", "+1".repeat(990)),
        format!("SELECT {}true", "NOT ".repeat(990)),
        format!("SELECT {}1{}", "(SELECT ".repeat(300), ")".repeat(300)),
        format!("SELECT {}1", "-+".repeat(495)),
        format!("SELECT {}1{}", "f(".repeat(320), ")".repeat(320)),
        format!("SELECT ARRAY{}1{}", "[".repeat(490), "]".repeat(490)),
        format!("SELECT {}1{}", "ROW(".repeat(320), ")".repeat(320)),
        format!("SELECT {}1{}", "CASE WHEN true THEN ".repeat(240), " END".repeat(240)),
        format!("SELECT * FROM t{}", " JOIN t ON true".repeat(320)),
        format!("SELECT 1{}", "::int".repeat(490)),
        format!("SELECT {}1", "+".repeat(980)),
    ] {
        match run_on(stack, sql) {
            Ok(n) => assert_eq!(n, 1),
            Err(e) => assert!(matches!(e, Error::TooDeep { .. }), "{e}"),
        }
    }
}

#[test]
fn ordinary_big_statements_are_accepted() {
    let ok = |sql: String| {
        let head: String = sql.chars().take(40).collect();
        assert_eq!(run_on(2 << 20, sql), Ok(1), "{head}");
    };
    ok(format!("SELECT 1{}", "+1".repeat(199)));
    ok(format!("SELECT {}1{}", "(SELECT ".repeat(100), ")".repeat(100)));
    ok(format!("SELECT * FROM {}t{}", "(SELECT * FROM ".repeat(100), ") a".repeat(100)));
    ok(format!("SELECT * FROM t WHERE id IN ({})", (0..10_000).map(|i| i.to_string()).collect::<Vec<_>>().join(",")));
    ok(format!(
        "INSERT INTO t (a, b, c) VALUES {}",
        (0..5_000).map(|i| format!("({i}, 'name {i}', now())")).collect::<Vec<_>>().join(", ")
    ));
    ok(format!("SELECT {}", (0..2_000).map(|i| format!("c{i} + {i} AS x{i}")).collect::<Vec<_>>().join(", ")));
    ok(format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(300)));
    ok(format!("SELECT {}1{}", "CASE WHEN a THEN ".repeat(100), " END".repeat(100)));
    ok(format!("SELECT * FROM t WHERE {}", (0..2_000).map(|i| format!("c = {i}")).collect::<Vec<_>>().join(" OR ")));
}

#[test]
fn limits_are_configurable() {
    let a = Analyzer::new(Limits { max_depth: 50, ..Default::default() });
    assert_eq!(a.analyze(&format!("SELECT 1{}", "+1".repeat(100))).map(|_| ()), Err(Error::TooDeep { max: 50 }));
    assert!(a.analyze("SELECT 1+1").is_ok());
    assert!(drawbridge_sql::MIN_CALLER_STACK >= drawbridge_sql::stack_needed(&Limits::default()));
}
