//! Tables, functions, command tags and statement-level facts.
use drawbridge_sql::{Analyzer, Function, Statement, Table, Transaction};

fn one(sql: &str) -> Statement {
    let a = Analyzer::default().analyze(sql).unwrap();
    assert_eq!(a.statements.len(), 1, "{sql}");
    a.statements[0].clone()
}

fn t(schema: Option<&str>, name: &str, write: bool) -> Table {
    Table { schema: schema.map(str::to_owned), name: name.into(), write }
}

#[test]
fn command_tags() {
    for (sql, tag) in [
        ("SELECT 1", "SELECT"),
        ("DELETE FROM t", "DELETE"),
        ("DROP TABLE t", "DROP TABLE"),
        ("DROP MATERIALIZED VIEW v", "DROP MATERIALIZED VIEW"),
        ("CREATE INDEX i ON t (a)", "CREATE INDEX"),
        ("BEGIN", "BEGIN"),
        ("START TRANSACTION", "START TRANSACTION"),
        ("CREATE TABLE x AS SELECT 1", "CREATE TABLE AS"),
        ("SELECT 1 INTO x", "SELECT INTO"),
        ("RESET ALL", "RESET"),
        ("SET a = 1", "SET"),
        ("TRUNCATE t", "TRUNCATE TABLE"),
        ("ALTER TABLE t ADD c int", "ALTER TABLE"),
        ("CREATE POLICY p ON t USING (true)", "CREATE POLICY"),
        ("CREATE USER u", "CREATE ROLE"),
        ("DEALLOCATE ALL", "DEALLOCATE ALL"),
        ("CREATE OPERATOR ~~~ (LEFTARG = int4, RIGHTARG = int8, FUNCTION = f)", "CREATE OPERATOR"),
        ("CREATE AGGREGATE a (int) (SFUNC = int4pl, STYPE = int)", "CREATE AGGREGATE"),
        ("CREATE COLLATION c (locale = 'C')", "CREATE COLLATION"),
        ("CREATE TYPE shell", "CREATE TYPE"),
        ("CREATE TYPE pair AS (a int, b int)", "CREATE TYPE"),
        ("CREATE TEXT SEARCH DICTIONARY d (TEMPLATE = simple)", "CREATE TEXT SEARCH DICTIONARY"),
        ("CREATE TEXT SEARCH PARSER p (START = s, GETTOKEN = g, END = e, LEXTYPES = l)", "CREATE TEXT SEARCH PARSER"),
        ("CREATE TEXT SEARCH TEMPLATE t (LEXIZE = l)", "CREATE TEXT SEARCH TEMPLATE"),
        ("SECURITY LABEL ON TABLE t IS 'x'", "SECURITY LABEL"),
        ("IMPORT FOREIGN SCHEMA r FROM SERVER s INTO public", "IMPORT FOREIGN SCHEMA"),
    ] {
        assert_eq!(one(sql).command, tag, "{sql}");
    }
}

#[test]
fn ranges_cover_each_statement() {
    let text = "SELECT 1; /* c */ DELETE FROM t ;SELECT 2";
    let a = Analyzer::default().analyze(text).unwrap();
    let parts: Vec<&str> = a.statements.iter().map(|s| text[s.start..s.end].trim()).collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], "SELECT 1");
    assert!(parts[1].ends_with("DELETE FROM t"), "{parts:?}");
    assert_eq!(parts[2], "SELECT 2");
}

#[test]
fn tables_and_write_targets() {
    let s = one("UPDATE s.accounts a SET x = 1 FROM other o WHERE a.id = o.id");
    assert_eq!(s.tables.iter().cloned().collect::<Vec<_>>(), vec![t(None, "other", false), t(Some("s"), "accounts", true)]);
    let s = one("INSERT INTO t SELECT * FROM u");
    assert!(s.tables.contains(&t(None, "t", true)) && s.tables.contains(&t(None, "u", false)));
    let s = one("DROP TABLE a, s.b");
    assert!(s.tables.contains(&t(None, "a", true)) && s.tables.contains(&t(Some("s"), "b", true)));
    let s = one("COPY t FROM STDIN");
    assert!(s.tables.contains(&t(None, "t", true)));
    let s = one("COPY t TO STDOUT");
    assert!(s.tables.contains(&t(None, "t", false)));
    let s = one("TRUNCATE a");
    assert!(s.tables.contains(&t(None, "a", true)));
    let s = one("LOCK TABLE a");
    assert!(s.tables.contains(&t(None, "a", true)));
    let s = one("SELECT * INTO n FROM o");
    assert!(s.tables.contains(&t(None, "n", true)) && s.tables.contains(&t(None, "o", false)));
    let s = one("CREATE INDEX i ON big (c)");
    assert!(s.tables.contains(&t(None, "big", true)));
    // Plain EXPLAIN records tables but does not write them.
    let s = one("EXPLAIN DELETE FROM t");
    assert!(s.tables.contains(&t(None, "t", false)));
}

#[test]
fn cte_names_are_not_tables_but_only_in_scope() {
    let s = one("WITH secrets AS (SELECT 1) SELECT * FROM secrets");
    assert!(s.tables.is_empty(), "{:?}", s.tables);
    let s = one("SELECT * FROM (WITH secrets AS (SELECT 1) SELECT * FROM secrets) a, secrets");
    assert!(s.tables.contains(&t(None, "secrets", false)), "{:?}", s.tables);
    let s = one("WITH x AS (SELECT * FROM x) SELECT * FROM x");
    assert!(s.tables.contains(&t(None, "x", false)), "non-recursive CTE body reads the table");
    let s = one("WITH RECURSIVE x AS (SELECT 1 UNION SELECT * FROM x) SELECT * FROM x");
    assert!(s.tables.is_empty());
    let s = one("WITH users AS (SELECT 1) DELETE FROM users");
    assert!(s.tables.contains(&t(None, "users", true)));
}

#[test]
fn functions_as_resolved() {
    let s = one("SELECT U&\"s\\0065tval\"('s', 1), pg_catalog.lower('A'), \"MyFn\"()");
    let f: Vec<Function> = s.functions.into_iter().collect();
    assert!(f.contains(&Function { schema: None, name: "setval".into() }), "{f:?}");
    assert!(f.contains(&Function { schema: Some("pg_catalog".into()), name: "lower".into() }));
    assert!(f.contains(&Function { schema: None, name: "MyFn".into() }));
}

#[test]
fn prepare_execute_deallocate() {
    let s = one("PREPARE p AS DELETE FROM t");
    assert_eq!(s.prepares.as_deref(), Some("p"));
    assert!(s.tables.contains(&t(None, "t", true)));
    assert_eq!(one("EXECUTE p (1)").executes.as_deref(), Some("p"));
    assert_eq!(one("DEALLOCATE p").deallocates, Some(Some("p".into())));
    assert_eq!(one("DEALLOCATE ALL").deallocates, Some(None));
    assert_eq!(one("DISCARD ALL").deallocates, Some(None));
    assert_eq!(one("DISCARD PLANS").deallocates, None);
}

#[test]
fn transaction_field() {
    assert_eq!(one("BEGIN").transaction, Some(Transaction::Begin));
    assert_eq!(one("COMMIT").transaction, Some(Transaction::Commit));
    assert_eq!(one("ROLLBACK TO SAVEPOINT a").transaction, Some(Transaction::RollbackTo));
    assert_eq!(one("SELECT 1").transaction, None);
}

#[test]
fn rows_countable() {
    assert!(one("UPDATE t SET a = 1 WHERE b = 2").rows_countable);
    assert!(one("DELETE FROM t").rows_countable);
    assert!(one("INSERT INTO t VALUES (1)").rows_countable);
    assert!(one("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE").rows_countable);
    assert!(one("EXECUTE p").rows_countable);
    assert!(one("WITH x AS (SELECT 1) DELETE FROM t").rows_countable);
    assert!(!one("WITH x AS (DELETE FROM u RETURNING 1) DELETE FROM t").rows_countable);
    assert!(!one("WITH x AS (DELETE FROM u RETURNING 1) SELECT * FROM x").rows_countable);
    assert!(!one("SELECT 1").rows_countable);
    assert!(!one("EXPLAIN ANALYZE DELETE FROM t").rows_countable);
}

#[test]
fn errors() {
    let a = Analyzer::default();
    assert!(matches!(a.analyze("SELEC 1"), Err(drawbridge_sql::Error::Syntax(m)) if m.contains("syntax error")));
    assert!(matches!(a.analyze("SELECT '"), Err(drawbridge_sql::Error::Syntax(_))));
    assert!(matches!(a.analyze("SELECT 1\0"), Err(drawbridge_sql::Error::Syntax(_))));
    let small = Analyzer::new(drawbridge_sql::Limits { max_bytes: 10, ..Default::default() });
    assert_eq!(small.analyze("SELECT 12345678"), Err(drawbridge_sql::Error::TooLarge { len: 15, max: 10 }));
    assert_eq!(a.analyze("").unwrap().statements.len(), 0);
}

fn pins(sql: &str) -> Option<(Option<String>, String, Vec<(String, Option<u32>)>)> {
    one(sql).pinned.map(|p| (p.table.schema.clone(), p.table.name.clone(), p.columns.clone()))
}

#[test]
fn pinned_columns_of_single_row_writes() {
    let lit = |c: &str| (c.to_owned(), None);
    let par = |c: &str, n: u32| (c.to_owned(), Some(n));
    assert_eq!(pins("UPDATE t SET a = a + 1 WHERE id = 5"), Some((None, "t".into(), vec![lit("id")])));
    assert_eq!(pins("delete from S.T where $1 = \"Id\""), Some((Some("s".into()), "t".into(), vec![par("Id", 1)])));
    assert_eq!(
        pins("UPDATE t AS x SET a = 1 WHERE x.k1 = 'a' AND (k2 = $2 AND a > 3) AND k3 = -7 RETURNING *"),
        Some((None, "t".into(), vec![lit("k1"), par("k2", 2), lit("k3")]))
    );
    assert_eq!(pins("UPDATE t SET a = 1 WHERE t.id = 1.5 AND id = NULL"), Some((None, "t".into(), vec![lit("id")])));
    // Each of these may change more than one row whatever the keys, or pins nothing.
    for sql in [
        "UPDATE t SET a = 1",
        "UPDATE t SET a = 1 WHERE id = 1 OR a > 0",
        "UPDATE t SET a = 1 WHERE NOT id <> 1",
        "UPDATE t SET a = 1 WHERE id = 1::float8",
        "UPDATE t SET a = 1 WHERE id = other",
        "UPDATE t SET a = 1 WHERE id OPERATOR(public.=) 1",
        "UPDATE t SET a = 1 WHERE id IN (1)",
        "UPDATE t SET a = 1 WHERE id = ANY('{1,2}')",
        "UPDATE t SET a = 1 WHERE u.id = 1",
        "UPDATE t AS x SET a = 1 WHERE t.id = 1",
        "UPDATE t SET a = 1 FROM u WHERE t.id = 1",
        "DELETE FROM t USING u WHERE t.id = 1",
        "WITH d AS (DELETE FROM u RETURNING 1) UPDATE t SET a = 1 WHERE id = 1",
        "WITH c AS (SELECT 1) DELETE FROM t WHERE id = 1",
        "UPDATE db.s.t SET a = 1 WHERE id = 1",
        "UPDATE t SET a = 1 WHERE id = (SELECT 1)",
        "UPDATE t SET a = 1 WHERE id = true",
        "UPDATE t SET a = 1 WHERE CURRENT OF c",
        "MERGE INTO t USING s ON t.id = 1 WHEN MATCHED THEN DELETE",
        "INSERT INTO t VALUES (1)",
        "SELECT * FROM t WHERE id = 1",
        "EXPLAIN ANALYZE DELETE FROM t WHERE id = 1",
        "PREPARE p AS DELETE FROM t WHERE id = $1",
    ] {
        assert_eq!(pins(sql), None, "{sql}");
    }
}

/// Statements that change the schema count as DDL (the policy `ddl` category), never as
/// the unclassified `other`.
#[test]
fn schema_changes_are_ddl_not_other() {
    for sql in [
        "CREATE OPERATOR public.~~~ (LEFTARG = int4, RIGHTARG = int8, FUNCTION = pg_terminate_backend)",
        "CREATE AGGREGATE a (int) (SFUNC = int4pl, STYPE = int)",
        "CREATE COLLATION c (provider = icu, locale = 'und')",
        "CREATE TEXT SEARCH DICTIONARY d (TEMPLATE = simple)",
        "CREATE TEXT SEARCH CONFIGURATION c (PARSER = default)",
        "CREATE TEXT SEARCH PARSER p (START = s, GETTOKEN = g, END = e, LEXTYPES = l)",
        "CREATE TEXT SEARCH TEMPLATE t (LEXIZE = l)",
        "CREATE TYPE shell",
        "CREATE TYPE b (INPUT = i, OUTPUT = o)",
        "CREATE TYPE pair AS (a int, b int)",
        "CREATE TYPE mood AS ENUM ('sad', 'ok')",
        "CREATE TYPE r AS RANGE (SUBTYPE = int4)",
        "SECURITY LABEL ON TABLE users IS 'x'",
        "IMPORT FOREIGN SCHEMA remote LIMIT TO (t) FROM SERVER s INTO public",
        "CREATE CAST (int AS text) WITH FUNCTION f(int)",
        "CREATE OPERATOR CLASS c FOR TYPE int USING btree AS OPERATOR 1 <",
        "ALTER OPERATOR ~~~ (int4, int8) OWNER TO bob",
        "ALTER TEXT SEARCH CONFIGURATION c ADD MAPPING FOR word WITH simple",
        "DROP OWNED BY bob",
        "REASSIGN OWNED BY bob TO alice",
        "CREATE ACCESS METHOD m TYPE INDEX HANDLER h",
        "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()",
        "CREATE PUBLICATION p FOR ALL TABLES",
        "CREATE LANGUAGE plperlu",
    ] {
        let s = one(sql);
        assert!(s.operations.iter().any(|o| o.is_ddl()), "{sql}: {:?}", s.operations);
        assert!(!s.operations.contains(&drawbridge_sql::Operation::Other), "{sql}: {:?}", s.operations);
    }
}

#[test]
fn settings_that_change_how_sql_is_read() {
    for q in [
        "SET standard_conforming_strings = on",
        "SET SESSION standard_conforming_strings TO on",
        "SET NAMES 'LATIN1'",
        "SET client_encoding = 'UTF8'",
        "RESET client_encoding",
        "RESET ALL",
        "SELECT set_config('standard_conforming_strings', 'on', false)",
        "SELECT pg_catalog.set_config('CLIENT_ENCODING', 'LATIN1', false)",
    ] {
        assert!(one(q).changes_lexing, "{q}");
    }
    for q in ["SET work_mem = '8MB'", "RESET statement_timeout", "SELECT set_config('app.user', 'x', true)", "SELECT 1"] {
        assert!(!one(q).changes_lexing, "{q}");
    }
}

#[test]
fn settings_the_parser_cannot_follow_are_refused() {
    let a = Analyzer::default();
    for q in [
        "SET standard_conforming_strings = off",
        "SET LOCAL standard_conforming_strings TO 'false'",
        "set \"Standard_Conforming_Strings\" = 0",
        "SELECT 1; SET standard_conforming_strings = no",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
        "SELECT set_config('standard_conforming_strings', current_setting('x'), false)",
        "ALTER ROLE bob SET standard_conforming_strings = off",
        "ALTER DATABASE d SET standard_conforming_strings TO off",
        "SET NAMES 'SJIS'",
        "SET client_encoding = 'Shift-JIS'",
        "SET client_encoding TO 'win932'",
        "SELECT pg_catalog.set_config('client_encoding', 'BIG5', false)",
    ] {
        assert!(matches!(a.analyze(q), Err(drawbridge_sql::Error::Unsupported(_))), "{q}: {:?}", a.analyze(q));
    }
    for q in [
        "SET standard_conforming_strings = on",
        "SET standard_conforming_strings TO true",
        "SET SESSION standard_conforming_strings = 1",
        "SET standard_conforming_strings TO DEFAULT",
        "RESET standard_conforming_strings",
        "SELECT set_config('standard_conforming_strings', 'on', false)",
        "SET NAMES 'UTF8'",
        "SET client_encoding = 'latin1'",
        "SET client_encoding = 'SQL_ASCII'",
    ] {
        assert!(a.analyze(q).is_ok(), "{q}: {:?}", a.analyze(q));
    }
    // `on` and `off` are one shape: the refusal must not be shared through it.
    assert!(a.analyze("SET standard_conforming_strings = 'on'").is_ok());
    assert!(a.analyze("SET standard_conforming_strings = 'off'").is_err());
    assert!(drawbridge_sql::encoding_is_safe("UTF8") && !drawbridge_sql::encoding_is_safe("SHIFT_JIS_2004"));
}

#[test]
fn a_bare_schedule_call_is_judged_by_its_own_text() {
    // One shape; only the second runs SQL (when `cron` is on the search path).
    let a = Analyzer::default();
    let dynamic = |q: &str| a.analyze(q).unwrap().statements[0].has(drawbridge_sql::Operation::DynamicSql);
    assert!(!dynamic("SELECT schedule('0 3 * * *', 'weekly')"));
    assert!(dynamic("SELECT schedule('0 3 * * *', 'DROP TABLE users')"));
    assert!(!dynamic("SELECT schedule('0 4 * * *', 'monthly')"));
}
