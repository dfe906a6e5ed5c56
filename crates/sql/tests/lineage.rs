//! Result-column lineage: where each output of a statement's result takes its values from.
use drawbridge_sql::{Analyzer, ColumnSource, Lineage, Output, Relation, Sources};

fn lineage(sql: &str) -> Option<Lineage> {
    let a = Analyzer::default().analyze(sql).unwrap();
    assert_eq!(a.statements.len(), 1, "{sql}");
    a.statements[0].result.as_deref().cloned()
}

fn rel(r: &Relation) -> String {
    match &r.schema {
        Some(s) => format!("{s}.{}", r.name),
        None => r.name.clone(),
    }
}

/// `=` marks a direct value; `?.c` a column of no one relation; `row(t)` a whole row.
fn src(s: &Sources) -> String {
    let mut parts: Vec<String> = s
        .columns
        .iter()
        .map(|ColumnSource { table, column }| match table {
            Some(t) => format!("{}.{column}", rel(t)),
            None => format!("?.{column}"),
        })
        .collect();
    parts.extend(s.rows.iter().map(|r| format!("row({})", rel(r))));
    if s.opaque {
        parts.push("opaque".into());
    }
    format!("{}{}", if s.direct { "=" } else { "" }, parts.join(" "))
}

fn out(o: &Output) -> String {
    match o {
        Output::Column(s) => src(s),
        Output::Star { sources, relations, width } => {
            let rels: Vec<String> = relations.iter().map(rel).collect();
            let w = width.map_or("?".to_owned(), |w| w.to_string());
            format!("*[{}]/{w}: {}", rels.join(","), src(sources))
        }
    }
}

fn outs(sql: &str) -> Vec<String> {
    let l = lineage(sql).unwrap_or_else(|| panic!("no result for {sql}"));
    l.outputs.iter().map(out).collect()
}

#[track_caller]
fn check(sql: &str, want: &[&str]) {
    assert_eq!(outs(sql), want, "{sql}");
}

#[test]
fn plain_columns_are_direct() {
    check("SELECT id, email FROM users", &["=users.id", "=users.email"]);
    check("SELECT u.email AS e FROM users u", &["=users.email"]);
    check("SELECT public.users.email FROM public.users", &["=public.users.email"]);
    check("SELECT users.email FROM public.users", &["=public.users.email"]);
    check(r#"SELECT "Email" FROM "Users""#, &["=Users.Email"]);
    check(r#"SELECT U&"\0065mail" FROM users"#, &["=users.email"]);
}

#[test]
fn functions_and_operators_are_not_direct() {
    check("SELECT upper(e) FROM (SELECT email AS e FROM users) s", &["users.email"]);
    check("SELECT substr(card,1,8), substr(card,9) FROM payments", &["payments.card", "payments.card"]);
    check("SELECT encode(convert_to(email,'UTF8'),'base64') FROM users u", &["users.email"]);
    check("SELECT reverse(email) FROM users", &["users.email"]);
    check("SELECT email::text FROM users", &["users.email"]);
    check("SELECT CAST(email AS varchar(3)) FROM users", &["users.email"]);
    check("SELECT name || '<' || email || '>' FROM users", &["users.email users.name"]);
    check("SELECT email COLLATE \"C\" FROM users", &["users.email"]);
    check("SELECT (email)[1], email IS NULL FROM users", &["users.email", "users.email"]);
}

#[test]
fn case_coalesce_arrays_rows() {
    check("SELECT CASE WHEN ssn > '5' THEN 'a' ELSE name END FROM users", &["users.name users.ssn"]);
    check("SELECT coalesce(email, phone), greatest(a, b) FROM users", &["users.email users.phone", "users.a users.b"]);
    check("SELECT ARRAY[email, name], ROW(email, 1) FROM users", &["users.email users.name", "users.email"]);
    check("SELECT nullif(email, '') FROM users", &["users.email"]);
}

#[test]
fn aggregates_and_windows() {
    check("SELECT string_agg(email, ',') FROM users", &["users.email"]);
    check("SELECT count(*) FROM users", &[""]);
    let l = lineage("SELECT count(*) FROM users").unwrap();
    let Output::Column(s) = &l.outputs[0] else { panic!() };
    assert!(s.is_empty() && !s.direct && !s.opaque);
    check("SELECT string_agg(name, ',' ORDER BY ssn) FROM users", &["users.name users.ssn"]);
    check("SELECT count(*) FILTER (WHERE salary > 10) FROM users", &["users.salary"]);
    check("SELECT rank() OVER (PARTITION BY dept ORDER BY salary) FROM users", &["users.dept users.salary"]);
    check(
        "SELECT sum(1) OVER w FROM users WINDOW w AS (PARTITION BY dept ORDER BY salary)",
        &["users.dept users.salary"],
    );
    check(
        "SELECT first_value(1) OVER (w ROWS UNBOUNDED PRECEDING) FROM users WINDOW w AS (ORDER BY salary)",
        &["users.salary"],
    );
    check("SELECT dept, max(salary) FROM users GROUP BY dept HAVING count(*) > 1", &["=users.dept", "users.salary"]);
}

#[test]
fn whole_rows() {
    // Column `u` first, whole row second: without a catalog both are taken.
    check("SELECT row_to_json(u) FROM users u", &["users.u row(users)"]);
    check("SELECT to_jsonb(users) FROM users", &["users.users row(users)"]);
    check("SELECT row_to_json(u.*) FROM users u", &["row(users)"]);
    check("SELECT ROW(u.*) FROM users u", &["row(users)"]);
    check("SELECT (u).email FROM users u", &["users.u row(users)"]);
    check("SELECT row_to_json(s) FROM (SELECT email, 1 AS one FROM users) s", &["users.email"]);
    check("SELECT json_agg(x) FROM (SELECT * FROM users) x", &["users.x row(users)"]);
}

#[test]
fn stars() {
    check("SELECT u.*, 1 FROM users u", &["*[users]/?: =row(users)", ""]);
    check("SELECT * FROM users", &["*[users]/?: =row(users)"]);
    check("TABLE users", &["*[users]/?: =row(users)"]);
    check("WITH x AS (SELECT email FROM users) SELECT * FROM x", &["*[]/1: =users.email"]);
    check(
        "SELECT * FROM (SELECT id, upper(email) FROM users) s, staff",
        &["*[staff]/?: users.email users.id row(staff)"],
    );
    check("SELECT s.* FROM (SELECT * FROM users) s", &["*[users]/?: =row(users)"]);
    check("SELECT * FROM users u(a, b)", &["*[users]/?: row(users)"]);
}

#[test]
fn subqueries_ctes_and_aliases() {
    check("SELECT (SELECT email FROM users LIMIT 1)", &["users.email"]);
    check("SELECT ARRAY(SELECT email FROM users)", &["users.email"]);
    check("SELECT EXISTS (SELECT 1 FROM users WHERE email = 'x')", &[""]);
    check("SELECT 'a' IN (SELECT email FROM users)", &["users.email"]);
    check("SELECT e FROM (SELECT email AS e, name FROM users) s", &["=users.email"]);
    check("SELECT s.e FROM (SELECT email FROM users) s(e)", &["=users.email"]);
    check("WITH a AS (SELECT email FROM users), b AS (SELECT email AS m FROM a) SELECT m FROM b", &["=users.email"]);
    check("WITH x(m) AS (SELECT email FROM users) SELECT m, x.m FROM x", &["=users.email", "=users.email"]);
    check("SELECT x FROM (SELECT email FROM users) s(x), staff", &["=users.email"]);
    // Correlated: the inner `u.email` names the outer level.
    check("SELECT (SELECT u.email FROM staff s WHERE s.id = u.id) FROM users u", &["users.email"]);
    // A name in a sublink's WHERE does not feed the value.
    check("SELECT (SELECT 1 FROM staff WHERE ssn = 'x')", &[""]);
}

#[test]
fn recursive_cte() {
    check(
        "WITH RECURSIVE r AS (SELECT id, manager, email FROM staff WHERE id = 1 \
         UNION ALL SELECT s.id, s.manager, s.email FROM staff s JOIN r ON s.manager = r.id) SELECT email FROM r",
        &["=staff.email"],
    );
    check(
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + length(ssn) FROM t, users) SELECT n FROM t",
        &["users.ssn"],
    );
}

#[test]
fn joins() {
    check("SELECT a.email, b.email FROM users a JOIN staff b ON a.id = b.id", &["=users.email", "=staff.email"]);
    check("SELECT email FROM users JOIN staff USING (id)", &["=?.email"]);
    check("SELECT id FROM users NATURAL JOIN staff", &["=?.id"]);
    // A merged column belongs to no one relation, even beside a derived one.
    check("SELECT id FROM users JOIN (SELECT 1 AS id) s USING (id)", &["?.id"]);
    check("SELECT * FROM users u JOIN staff s USING (id)", &["*[users,staff]/?: =row(staff) row(users)"]);
    check("SELECT email FROM users TABLESAMPLE SYSTEM (10)", &["=users.email"]);
    check("SELECT j.email FROM (users JOIN staff USING (id)) AS j", &["=?.email"]);
    check("SELECT email FROM users u LEFT JOIN LATERAL (SELECT u.name AS nm) l ON true", &["=users.email"]);
    check("SELECT l.nm FROM users u, LATERAL (SELECT upper(u.name) AS nm) l", &["users.name"]);
    check("SELECT e FROM users, (SELECT 'x' AS e) s", &[""]);
}

#[test]
fn functions_in_from() {
    check("SELECT x FROM unnest(ARRAY(SELECT email FROM users)) x", &["users.email"]);
    check("SELECT g FROM generate_series(1, 10) g", &[""]);
    check("SELECT r.a FROM users u, json_to_record(u.profile) AS r(a int, b text)", &["users.profile"]);
    check("SELECT * FROM json_to_record('{}') AS r(a int, b text)", &["*[]/2: "]);
    check("SELECT v FROM users, jsonb_each(users.prefs) AS e(k, v)", &["users.prefs"]);
}

#[test]
fn values_and_set_operations() {
    check("VALUES (1, 'a'), (2, 'b')", &["", ""]);
    check("SELECT column2 FROM (VALUES (1, 'a')) v", &[""]);
    check("SELECT b FROM (VALUES (1, 'a')) v(a, b)", &[""]);
    check("SELECT email FROM users UNION SELECT name FROM staff", &["=staff.name users.email"]);
    check(
        "SELECT id, email FROM users UNION ALL SELECT id, upper(name) FROM staff",
        &["=staff.id users.id", "staff.name users.email"],
    );
    check("SELECT * FROM users UNION SELECT * FROM staff", &["*[users,staff]/?: row(staff) row(users)"]);
    check("SELECT email FROM users INTERSECT SELECT email FROM staff", &["=staff.email users.email"]);
    check("SELECT email FROM users EXCEPT SELECT email FROM staff ORDER BY 1", &["=staff.email users.email"]);
}

#[test]
fn json_and_xml() {
    check("SELECT json_build_object('e', email) FROM users", &["users.email"]);
    check("SELECT JSON_OBJECT('e': email) FROM users", &["users.email"]);
    check("SELECT JSON_ARRAYAGG(email ORDER BY id) FROM users", &["users.email users.id"]);
    check("SELECT JSON_ARRAY(SELECT ssn FROM staff)", &["staff.ssn"]);
    check("SELECT xmlelement(name e, xmlattributes(name AS n), email) FROM users", &["users.email users.name"]);
    check("SELECT jt.a FROM users u, JSON_TABLE(u.profile, '$' COLUMNS (a text PATH '$.a')) jt", &["users.profile"]);
    check("SELECT x.a FROM users u, XMLTABLE('/r' PASSING u.doc COLUMNS a text PATH 'a') x", &["users.doc"]);
    check("SELECT email -> 'k', email ->> 'k' FROM users", &["users.email", "users.email"]);
}

#[test]
fn stars_inside_expressions_are_whole_rows() {
    check("SELECT (SELECT u.* FROM users u LIMIT 1)", &["row(users)"]);
    check("SELECT ARRAY(SELECT s FROM (SELECT * FROM staff) s)", &["staff.s row(staff)"]);
    check(
        "(SELECT email FROM users ORDER BY 1 LIMIT 1) UNION ALL (SELECT name FROM staff)",
        &["=staff.name users.email"],
    );
    check(
        "WITH x AS (SELECT id, email FROM users) SELECT * FROM x UNION SELECT 1, ssn FROM staff",
        &["*[]/2: staff.ssn users.email users.id"],
    );
}

#[test]
fn locking_and_parameters() {
    check("SELECT email FROM users WHERE id = $1 FOR UPDATE", &["=users.email"]);
    check("SELECT $1::text, current_user", &["", ""]);
}

#[test]
fn dml_returning() {
    check("UPDATE users SET name='x' WHERE id=1 RETURNING email", &["=users.email"]);
    check("DELETE FROM users WHERE id=1 RETURNING *", &["*[users]/?: =row(users)"]);
    check("INSERT INTO users (email) VALUES ('a') RETURNING id, upper(email)", &["=users.id", "users.email"]);
    check(
        "UPDATE users u SET name = s.name FROM staff s WHERE u.id = s.id RETURNING u.email, s.ssn",
        &["=users.email", "=staff.ssn"],
    );
    check("DELETE FROM users USING staff WHERE users.id = staff.id RETURNING ssn", &["=?.ssn"]);
    check("UPDATE users SET email = 'x' RETURNING old.email, new.email", &["=users.email", "=users.email"]);
    check(
        "MERGE INTO users u USING staff s ON u.id = s.id WHEN MATCHED THEN UPDATE SET name = s.name RETURNING u.email",
        &["=users.email"],
    );
    check("WITH d AS (DELETE FROM users RETURNING email) SELECT upper(email) FROM d", &["users.email"]);
    assert_eq!(lineage("INSERT INTO users (email) VALUES ('a')"), None);
    assert_eq!(lineage("UPDATE users SET email = 'x'"), None);
    assert_eq!(lineage("DELETE FROM users"), None);
}

#[test]
fn cursors_prepare_copy() {
    check("DECLARE c CURSOR FOR SELECT email FROM users", &["=users.email"]);
    check("PREPARE p AS SELECT upper(email) FROM users WHERE id = $1", &["users.email"]);
    check("PREPARE p AS DELETE FROM users RETURNING ssn", &["=users.ssn"]);
    check("COPY users TO STDOUT", &["*[users]/?: =row(users)"]);
    check("COPY users (id, email) TO STDOUT", &["=users.id", "=users.email"]);
    check("COPY (SELECT email FROM users) TO STDOUT", &["=users.email"]);
    assert_eq!(lineage("COPY users TO '/tmp/x'"), None);
    assert_eq!(lineage("COPY users FROM STDIN"), None);
    assert_eq!(lineage("PREPARE p AS INSERT INTO users VALUES ($1)"), None);
}

#[test]
fn statements_without_result() {
    assert_eq!(lineage("EXPLAIN SELECT email FROM users"), None);
    assert_eq!(lineage("EXPLAIN ANALYZE SELECT email FROM users"), None);
    assert_eq!(lineage("SELECT email INTO copy FROM users"), None);
    assert_eq!(lineage("CREATE TABLE c AS SELECT email FROM users"), None);
    assert_eq!(lineage("SET search_path = x"), None);
    assert_eq!(lineage("EXECUTE p(1)"), None);
    assert_eq!(lineage("FETCH ALL FROM c"), None);
    check("SELECT 1", &[""]);
    check("SELECT FROM users", &[]);
}

#[test]
fn what_cannot_be_followed_is_opaque() {
    check("SELECT nothing_here", &["opaque"]);
    check("SELECT query_to_xml('select ssn from users', true, true, '')", &["opaque"]);
    check("SELECT ts_rewrite('a'::tsquery, 'select q, s from secrets')", &["opaque"]);
    check("SELECT word FROM ts_stat('SELECT to_tsvector(ssn) FROM users')", &["opaque"]);
    check("SELECT table_to_xml('users', true, false, '')", &["opaque"]);
    check("SELECT * FROM ts_stat('SELECT to_tsvector(ssn) FROM users')", &["*[]/?: opaque"]);
    // A name that no derived relation carries, with no base relation to fall back on.
    check("SELECT zz FROM (SELECT 1 AS a) s", &["opaque"]);
    // `q.x` with no relation q: field x of a column q.
    check("SELECT q.x FROM users", &["users.q"]);
}

#[test]
fn whole_row_by_name_is_taken_with_the_column() {
    // `SELECT t FROM t` may be a column named t or the whole row: both are reported.
    check("SELECT users FROM users", &["users.users row(users)"]);
}

#[test]
fn shared_through_the_literal_cache() {
    let a = Analyzer::default();
    let first = a.analyze("SELECT upper(email) FROM users WHERE id = 1").unwrap();
    let second = a.analyze("SELECT upper(email) FROM users WHERE id = 2").unwrap();
    assert_eq!(a.stats().normalized_hits, 1);
    assert_eq!(first.statements[0].result, second.statements[0].result);
    let l = second.statements[0].result.as_deref().unwrap();
    assert_eq!(l.outputs.iter().map(out).collect::<Vec<_>>(), ["users.email"]);
}

#[test]
fn many_statements_each_get_their_own() {
    let a = Analyzer::default().analyze("SELECT email FROM users; DELETE FROM t; SELECT ssn FROM staff").unwrap();
    let got: Vec<Option<Vec<String>>> =
        a.statements.iter().map(|s| s.result.as_ref().map(|l| l.outputs.iter().map(out).collect())).collect();
    assert_eq!(got, [Some(vec!["=users.email".to_owned()]), None, Some(vec!["=staff.ssn".to_owned()])]);
}

#[test]
fn stays_out_of_the_serialised_facts() {
    // The audit log stores every statement's facts; lineage is working data, not evidence.
    let a = Analyzer::default().analyze("SELECT email FROM users").unwrap();
    assert!(a.statements[0].result.is_some());
    let v = serde_json::to_value(&a.statements[0]).unwrap();
    assert!(v.get("result").is_none(), "{v}");
    let a = Analyzer::default().analyze("COPY users TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';')").unwrap();
    let c = a.statements[0].copy.as_ref().unwrap();
    assert!(c.csv && c.header && !c.binary);
    assert_eq!(c.delimiter.as_deref(), Some(";"));
    let a = Analyzer::default().analyze("COPY users TO STDOUT BINARY").unwrap();
    assert!(a.statements[0].copy.as_ref().unwrap().binary);
}

#[test]
fn deep_and_wide_input_stays_bounded() {
    let sum = format!("SELECT {} FROM users", vec!["email"; 400].join(" || "));
    check(&sum, &["users.email"]);
    let nested = format!("SELECT {}email{} FROM users", "upper(".repeat(200), ")".repeat(200));
    check(&nested, &["users.email"]);
    let subs = format!("SELECT {}email FROM users{}", "(SELECT ".repeat(60), ")".repeat(60));
    check(&subs, &["users.email"]);
    // Many references to a wide CTE row: work is capped, and the answer fails closed.
    let cols: Vec<String> = (0..600).map(|i| format!("c{i}")).collect();
    let wide = format!(
        "WITH x AS (SELECT {} FROM users) SELECT {} FROM x",
        cols.join(", "),
        vec!["row_to_json(x)"; 4000].join(", ")
    );
    let got = outs(&wide);
    assert_eq!(got.len(), 4000);
    assert!(got.iter().all(|o| o.contains("users.c599") || o.contains("opaque")), "{:?}", &got[..1]);
}
