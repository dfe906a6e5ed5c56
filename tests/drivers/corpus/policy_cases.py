"""The policy corpus: statements the `production` pack must refuse however they are disguised,
and look-alikes it must let through. test_policy_corpus.py runs every case through the gateway
over the simple and the extended protocol.

A case is a dict built by `deny(...)` or `allow(...)`:
  id       test id (unique)
  sql      the text sent in one simple Query
  parts    the same statements one by one, for the extended protocol (one pipeline); needed
           when `sql` holds several statements, since Parse takes only one
  setup    statements run through the gateway on the same connection first (must succeed)
  deny:  rule      rule name the refusal must name ("blocked by rule <rule>"), or a tuple of
                   names when several deny rules match and any may come first
         msg       other text the refusal must contain
         sqlstate  expected SQLSTATE (42501 unless the gateway cannot parse the text: 42601)
         in_tx     run inside BEGIN: the transaction must be left failed, as PostgreSQL would
         reconnect the gateway refuses everything on this session afterwards by design, so the
                   "still usable" check uses a new connection
  allow: rowcount  expected affected/returned row count of the (last) statement
         rows      expected rows of the (last) statement
         wrap      run inside BEGIN … ROLLBACK (for writes that really change rows)
         restore   SQL run as the superuser afterwards to undo the case's effect
         copy      "out" (COPY … TO STDOUT, expect `rowcount` lines) or "in" (COPY … FROM STDIN,
                   send `copy_data`)
  xfail    reason, when the case shows a known gateway bug (kept strict); a str for both
           protocols or a dict {protocol: reason}
"""

ROW_LIMIT = 100


def deny(id, sql, rule=None, *, parts=None, setup=(), msg=None, sqlstate="42501", in_tx=False, reconnect=False,
         xfail=None):
    return dict(id=id, expect="deny", sql=sql, parts=parts, setup=list(setup), rule=rule, msg=msg,
                sqlstate=sqlstate, in_tx=in_tx, reconnect=reconnect, xfail=xfail)


def allow(id, sql, *, parts=None, setup=(), rowcount=None, rows=None, wrap=False, restore=None, copy=None,
          copy_data=None, xfail=None):
    return dict(id=id, expect="allow", sql=sql, parts=parts, setup=list(setup), rowcount=rowcount, rows=rows,
                wrap=wrap, restore=restore, copy=copy, copy_data=copy_data, xfail=xfail)


def over_limit(id, sql, *, parts=None, in_tx=False, xfail=None):
    """A bounded write that touches more rows than the limit: runs, is rolled back, refused."""
    return deny(id, sql, "row-limit", parts=parts, msg=f"over the limit of {ROW_LIMIT}", in_tx=in_tx, xfail=xfail)


def uncountable(id, sql, **kw):
    """A row-limited write whose rows the gateway cannot count (writable CTE, EXPLAIN ANALYZE)."""
    return deny(id, sql, "row-limit", msg="cannot be counted", **kw)


BUG_A = ("gateway bug: in one simple Query, EXECUTE is judged before the PREPARE of the same message is "
         "remembered, so it is refused as unknown-prepared-statement")
BUG_B = ("gateway bug: an SQL PREPARE sent over the extended protocol (Parse) is never remembered, so a later "
         "EXECUTE of it is refused as unknown-prepared-statement")
BUG_C = ("gateway bug: PREPARE of a bounded UPDATE/DELETE is refused by row-limit as 'cannot be counted "
         "(data-modifying CTE or EXPLAIN ANALYZE)', although PREPARE changes no rows and EXECUTE is judged "
         "again with the body")

TRUNCATE = "no-truncate"
DROP_TABLE = "no-drop-table"
DEL = "no-delete-without-where"
UPD = "no-update-without-where"
DDL = "no-ddl-outside-migration-window"
PRIV = "no-privilege-changes"
ROLE = "no-role-switch"
COPY = "no-copy-program"
OPAQUE = "no-opaque-code"
ADMIN = "no-server-admin"
DROP_COL = "no-drop-column"

DESTRUCTIVE = [
    # --- TRUNCATE in every spelling -----------------------------------------------------------
    deny("truncate", "TRUNCATE users", TRUNCATE),
    deny("truncate-lower", "truncate users", TRUNCATE),
    deny("truncate-mixed-case", "TrUnCaTe UsErS", TRUNCATE),
    deny("truncate-table-keyword", "TRUNCATE TABLE users", TRUNCATE),
    deny("truncate-only-cascade", "TRUNCATE ONLY users, orders RESTART IDENTITY CASCADE", TRUNCATE),
    deny("truncate-quoted", 'TRUNCATE "users" CASCADE', TRUNCATE),
    deny("truncate-schema-quoted", 'TRUNCATE "public"."orders"', TRUNCATE),
    deny("truncate-unicode-ident", 'TRUNCATE U&"\\0075sers" CASCADE', TRUNCATE),
    deny("truncate-unicode-uescape", "TRUNCATE U&\"!0075sers\" UESCAPE '!' CASCADE", TRUNCATE),
    deny("truncate-block-comment", "/* routine cleanup */ TRUNCATE users CASCADE", TRUNCATE),
    deny("truncate-nested-comment", "/* outer /* inner */ still a comment */ TRUNCATE orders", TRUNCATE),
    deny("truncate-line-comment", "-- just a select\nTRUNCATE orders", TRUNCATE),
    deny("truncate-comment-inside", "TRUNCATE/**/orders", TRUNCATE),
    deny("truncate-newlines-tabs", "\n\t  TRUNCATE\n\torders\t;\n", TRUNCATE),
    deny("truncate-after-select", "SELECT 1; TRUNCATE orders", TRUNCATE, parts=["SELECT 1", "TRUNCATE orders"]),
    deny("truncate-trailing-semicolons", "TRUNCATE orders;;;", TRUNCATE),
    deny("truncate-in-tx", "TRUNCATE orders", TRUNCATE, in_tx=True),
    deny("truncate-identifier-table", 'TRUNCATE "delete"', TRUNCATE),
    # --- DROP -----------------------------------------------------------------------------------
    deny("drop-table", "DROP TABLE users", DROP_TABLE),
    deny("drop-table-lower", "drop table orders", DROP_TABLE),
    deny("drop-table-if-exists-cascade", "DROP TABLE IF EXISTS users CASCADE", DROP_TABLE),
    deny("drop-comment-between", "DROP/**/TABLE/**/orders", DROP_TABLE),
    deny("drop-nested-comment-between", "DROP/* a /* b */ c */TABLE orders", DROP_TABLE),
    deny("drop-line-comment-between", "DROP -- nothing to see\nTABLE orders", DROP_TABLE),
    deny("drop-unicode-ident", 'DROP TABLE U&"\\006Frders"', DROP_TABLE),
    deny("drop-several", "DROP TABLE corpus_actions, orders", DROP_TABLE),
    deny("drop-quoted-odd-table", 'DROP TABLE "drop"', DROP_TABLE),
    deny("commit-then-drop", "COMMIT; DROP TABLE users", DROP_TABLE, parts=["COMMIT", "DROP TABLE users"]),
    deny("rollback-then-drop", "ROLLBACK; DROP TABLE orders", DROP_TABLE, parts=["ROLLBACK", "DROP TABLE orders"]),
    deny("select-then-drop", "/* cleanup */ SELECT 1; DROP TABLE users", DROP_TABLE,
         parts=["/* cleanup */ SELECT 1", "DROP TABLE users"]),
    deny("begin-drop-commit", "BEGIN; DROP TABLE orders; COMMIT", DROP_TABLE,
         parts=["BEGIN", "DROP TABLE orders", "COMMIT"]),
    deny("commit-in-tx-then-drop", "COMMIT; DROP TABLE orders", DROP_TABLE, parts=["COMMIT", "DROP TABLE orders"],
         in_tx=True),
    deny("string-then-drop", "SELECT ';'; DROP TABLE orders", DROP_TABLE, parts=["SELECT ';'", "DROP TABLE orders"]),
    deny("dollar-then-drop", "SELECT $$ $$; DROP TABLE orders", DROP_TABLE,
         parts=["SELECT $$ $$", "DROP TABLE orders"]),
    deny("drop-database", "DROP DATABASE app", "no-drop-database"),
    deny("drop-database-force", "DROP DATABASE IF EXISTS app WITH (FORCE)", "no-drop-database"),
    deny("drop-schema", "DROP SCHEMA public CASCADE", "no-drop-schema"),
    deny("drop-schema-quoted", 'DROP SCHEMA "public" CASCADE', "no-drop-schema"),
    deny("drop-view", "DROP VIEW IF EXISTS corpus_view", DDL),
    deny("drop-index", "DROP INDEX users_pkey", DDL),
    deny("drop-sequence", "DROP SEQUENCE corpus_seq", DDL),
    deny("drop-function", "DROP FUNCTION corpus_double(int)", DDL),
    deny("drop-role", "DROP ROLE IF EXISTS app_owner", PRIV),
    deny("drop-owned", "DROP OWNED BY app_owner", DDL),
    # --- DELETE / UPDATE without WHERE ----------------------------------------------------------
    deny("delete-all", "DELETE FROM users", DEL),
    deny("delete-all-lower", "delete from orders", DEL),
    deny("delete-commented-where", "DELETE FROM orders -- WHERE id = 1", DEL),
    deny("delete-block-commented-where", "DELETE FROM orders /* WHERE id = 1 */", DEL),
    deny("delete-leading-comment", "/* x */ DELETE FROM orders", DEL),
    deny("delete-only", "DELETE FROM ONLY orders", DEL),
    deny("delete-alias", "DELETE FROM orders AS o", DEL),
    deny("delete-using-no-where", "DELETE FROM orders o USING users u", DEL),
    deny("delete-returning", "DELETE FROM orders RETURNING *", DEL),
    deny("delete-unicode-table", 'DELETE FROM U&"\\006Frders"', DEL),
    deny("delete-quoted-odd-table", 'DELETE FROM "delete"', DEL),
    deny("select-then-delete", "SELECT 1; DELETE FROM users", DEL, parts=["SELECT 1", "DELETE FROM users"]),
    deny("delete-then-select", "DELETE FROM orders; SELECT 1", DEL, parts=["DELETE FROM orders", "SELECT 1"]),
    deny("cte-then-delete", "WITH x AS (SELECT 1) DELETE FROM users", DEL),
    deny("writable-cte-delete", "WITH gone AS (DELETE FROM orders RETURNING id) SELECT count(*) FROM gone", DEL),
    deny("writable-cte-nested", "WITH a AS (SELECT 1), b AS (DELETE FROM orders RETURNING 1) SELECT * FROM a", DEL),
    deny("writable-cte-in-insert",
         "WITH gone AS (DELETE FROM corpus_actions RETURNING action) INSERT INTO \"delete\" SELECT 1000, 'x'", DEL),
    deny("writable-cte-in-subquery",
         "SELECT * FROM (WITH d AS (DELETE FROM orders RETURNING id) SELECT id FROM d) s", DEL),
    deny("delete-in-tx", "DELETE FROM orders", DEL, in_tx=True),
    deny("update-all", "UPDATE users SET name = 'x'", UPD),
    deny("update-all-lower", "update orders set status = 'void'", UPD),
    deny("update-commented-where", "UPDATE orders SET status = 'void' -- WHERE id = 1", UPD),
    deny("update-from-no-where", "UPDATE orders o SET status = 'void' FROM users u", UPD),
    deny("update-returning", "UPDATE orders SET amount = 0 RETURNING id", UPD),
    deny("update-unicode-column", 'UPDATE orders SET U&"st\\0061tus" = \'void\'', UPD),
    deny("writable-cte-update", "WITH u AS (UPDATE orders SET status = 'void' RETURNING 1) SELECT count(*) FROM u",
         UPD),
    deny("cte-then-update", "WITH x AS (SELECT 1) UPDATE orders SET status = 'void'", UPD),
    deny("savepoint-then-update", "SAVEPOINT s; UPDATE orders SET status = 'void'", UPD,
         parts=["SAVEPOINT s", "UPDATE orders SET status = 'void'"], in_tx=True),
    # --- EXPLAIN ANALYZE runs its statement -----------------------------------------------------
    deny("explain-analyze-delete", "EXPLAIN ANALYZE DELETE FROM users", DEL),
    deny("explain-analyze-options-update", "EXPLAIN (ANALYZE, FORMAT JSON) UPDATE orders SET status = 'void'", UPD),
    deny("explain-analyze-lower", "explain analyze delete from orders", DEL),
    uncountable("explain-analyze-bounded-delete", "EXPLAIN ANALYZE DELETE FROM orders WHERE id = 2"),
    deny("explain-analyze-ctas", "EXPLAIN ANALYZE CREATE TABLE corpus_new AS SELECT 1", DDL),
    deny("explain-truncate-syntax", "EXPLAIN ANALYZE TRUNCATE users", sqlstate="42601"),
    # --- PREPARE / EXECUTE ----------------------------------------------------------------------
    deny("prepare-delete", "PREPARE x AS DELETE FROM users", DEL),
    deny("prepare-execute-delete", "PREPARE x AS DELETE FROM users; EXECUTE x", DEL,
         parts=["PREPARE x AS DELETE FROM users", "EXECUTE x"]),
    deny("prepare-update-lower", "prepare x (text) as update orders set status = $1", UPD),
    deny("execute-unknown", "EXECUTE never_prepared", "unknown-prepared-statement"),
    # The limit holds whether PREPARE is refused (rows uncountable) or EXECUTE is rolled back.
    deny("prepare-execute-over-limit",
         "PREPARE big AS UPDATE orders SET status = 'void' WHERE amount > 0; EXECUTE big", "row-limit",
         parts=["PREPARE big AS UPDATE orders SET status = 'void' WHERE amount > 0", "EXECUTE big"],
         xfail={"simple": BUG_A}),
    # --- row limits: the write runs, changes too much, is rolled back ---------------------------
    over_limit("update-500-rows", "UPDATE orders SET status = 'void' WHERE amount > 0"),
    over_limit("update-101-rows", "UPDATE orders SET status = 'void' WHERE id <= 101"),
    over_limit("update-where-true", "UPDATE orders SET status = 'void' WHERE true"),
    over_limit("delete-where-1-eq-1", "DELETE FROM orders WHERE 1 = 1"),
    over_limit("delete-where-subquery", "DELETE FROM orders WHERE id IN (SELECT id FROM orders)"),
    over_limit("delete-200-rows", "DELETE FROM corpus_actions WHERE id > 0"),
    over_limit("merge-update-all",
               "MERGE INTO orders o USING users u ON o.user_id = u.id WHEN MATCHED THEN UPDATE SET status = 'void'"),
    over_limit("merge-delete-all", "MERGE INTO orders o USING users u ON o.user_id = u.id WHEN MATCHED THEN DELETE"),
    over_limit("merge-lower", "merge into corpus_actions a using (select 1) s on true when matched then delete"),
    over_limit("update-over-limit-in-tx", "UPDATE orders SET status = 'void' WHERE amount > 0", in_tx=True),
    over_limit("select-then-update-over-limit", "SELECT 1; UPDATE orders SET status = 'void' WHERE amount > 0",
               parts=["SELECT 1", "UPDATE orders SET status = 'void' WHERE amount > 0"]),
    over_limit("two-updates-second-over",
               "UPDATE orders SET status = 'x' WHERE id = 3; UPDATE orders SET status = 'y' WHERE id > 10",
               parts=["UPDATE orders SET status = 'x' WHERE id = 3", "UPDATE orders SET status = 'y' WHERE id > 10"]),
    uncountable("writable-cte-bounded-delete", "WITH d AS (DELETE FROM orders WHERE id = 2 RETURNING *) SELECT * FROM d"),
    uncountable("writable-cte-bounded-update",
                "WITH u AS (UPDATE orders SET status = 'x' WHERE id = 2 RETURNING *) SELECT count(*) FROM u"),
    # --- tables created by SELECT INTO / CREATE TABLE AS and other DDL --------------------------
    deny("select-into", "SELECT * INTO corpus_copy FROM users", DDL),
    deny("select-into-lower", "select id into temp corpus_tmp from orders", DDL),
    deny("create-table-as", "CREATE TABLE corpus_copy AS SELECT * FROM users", DDL),
    deny("create-table", "CREATE TABLE corpus_new (id int)", DDL),
    deny("create-temp-table", "CREATE TEMP TABLE corpus_tmp (id int)", DDL),
    deny("create-index", "CREATE INDEX ON users (email)", DDL),
    deny("create-view", "CREATE VIEW corpus_view AS SELECT 1", DDL),
    deny("create-matview", "CREATE MATERIALIZED VIEW corpus_mv AS SELECT * FROM users", DDL),
    deny("create-schema", "CREATE SCHEMA corpus_schema", DDL),
    deny("create-extension", "CREATE EXTENSION IF NOT EXISTS dblink", DDL),
    deny("create-database", "CREATE DATABASE corpus_db", DDL),
    deny("create-rule", "CREATE RULE r AS ON SELECT TO users DO INSTEAD SELECT * FROM orders", DDL),
    deny("create-trigger", "CREATE TRIGGER t BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION corpus_trig()",
         DDL),
    deny("create-policy", "CREATE POLICY p ON users USING (false)", DDL),
    deny("alter-table-drop-column", "ALTER TABLE users DROP COLUMN email", DROP_COL),
    deny("alter-table-drop-column-lower", "alter table users drop email cascade", DROP_COL),
    deny("alter-table-drop-column-quoted", 'ALTER TABLE "users" DROP COLUMN IF EXISTS "email"', DROP_COL),
    deny("alter-table-add-column", "ALTER TABLE users ADD COLUMN x int", DDL),
    deny("alter-table-type", "ALTER TABLE orders ALTER COLUMN status TYPE varchar(1)", DDL),
    deny("alter-table-rename", "ALTER TABLE users RENAME TO people", DDL),
    deny("alter-table-disable-triggers", "ALTER TABLE orders DISABLE TRIGGER ALL", DDL),
    deny("alter-table-rls", "ALTER TABLE users ENABLE ROW LEVEL SECURITY", DDL),
    deny("alter-sequence-restart", "ALTER SEQUENCE corpus_seq RESTART WITH 1000", DDL),
    deny("comment-on", "COMMENT ON TABLE users IS 'gone'", DDL),
    deny("ddl-after-select", "SELECT 1; CREATE TABLE corpus_new (id int)", DDL,
         parts=["SELECT 1", "CREATE TABLE corpus_new (id int)"]),
    # --- privileges, roles, ownership -----------------------------------------------------------
    deny("grant-select", "GRANT SELECT ON users TO PUBLIC", PRIV),
    deny("grant-lower", "grant all on all tables in schema public to public", PRIV),
    deny("grant-role", "GRANT pg_read_server_files TO app_owner", PRIV),
    deny("revoke", "REVOKE ALL ON users FROM app_owner", PRIV),
    deny("create-role", "CREATE ROLE corpus_evil SUPERUSER LOGIN", PRIV),
    deny("create-user", "CREATE USER corpus_evil PASSWORD 'x'", PRIV),
    deny("alter-role-superuser", "ALTER ROLE app_owner SUPERUSER", PRIV),
    deny("alter-user-password", "ALTER USER app_owner WITH PASSWORD 'stolen'", PRIV),
    deny("alter-role-set-role", "ALTER ROLE app_owner SET role = 'postgres'", PRIV),
    deny("alter-owner-table", "ALTER TABLE users OWNER TO postgres", (DDL, PRIV)),
    deny("alter-owner-schema", "ALTER SCHEMA public OWNER TO app_owner", (DDL, PRIV)),
    deny("reassign-owned", "REASSIGN OWNED BY app_owner TO postgres", (DDL, PRIV)),
    deny("alter-default-privileges", "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC", (DDL, PRIV)),
    # --- role switching -------------------------------------------------------------------------
    deny("set-role", "SET ROLE postgres", ROLE),
    deny("set-role-lower-quoted", "set role 'postgres'", ROLE),
    deny("set-local-role", "SET LOCAL ROLE postgres", ROLE, in_tx=True),
    deny("set-role-as-variable", "SET role = postgres", ROLE),
    deny("set-role-quoted-name", 'SET "role" TO postgres', ROLE),
    deny("set-session-authorization", "SET SESSION AUTHORIZATION postgres", ROLE),
    deny("set-session-authorization-default", "SET SESSION AUTHORIZATION DEFAULT", ROLE),
    deny("set-config-role", "SELECT set_config('role', 'postgres', false)", ROLE),
    deny("set-config-role-upper", "SELECT set_config('ROLE', 'postgres', false)", ROLE),
    deny("set-config-session-auth", "SELECT set_config('session_authorization', 'postgres', false)", ROLE),
    deny("set-config-qualified", "SELECT pg_catalog.set_config('role', 'postgres', true)", ROLE),
    deny("set-config-unicode-name", "SELECT U&\"set_confi\\0067\"('role', 'postgres', false)", ROLE),
    deny("set-config-computed-name", "SELECT set_config('ro' || 'le', 'postgres', false)", ROLE),
    deny("set-config-escaped-name", "SELECT set_config(U&'r\\006fle', 'postgres', false)", ROLE),
    deny("set-config-in-from", "SELECT * FROM set_config('role', 'postgres', false)", ROLE),
    # --- COPY with a program or server file -----------------------------------------------------
    deny("copy-to-program", "COPY users TO PROGRAM 'cat'", COPY),
    deny("copy-from-program", "COPY users FROM PROGRAM 'true'", COPY),
    deny("copy-lower-program", "copy (select 1) to program 'cat > /dev/null'", COPY),
    deny("copy-from-file", "COPY users FROM '/etc/passwd'", COPY),
    deny("copy-to-file", "COPY users TO '/tmp/corpus_users.csv'", COPY),
    deny("copy-query-to-file", "COPY (SELECT * FROM users) TO '/tmp/corpus_users.csv' WITH (FORMAT csv)", COPY),
    deny("copy-after-select", "SELECT 1; COPY users TO PROGRAM 'cat'", COPY,
         parts=["SELECT 1", "COPY users TO PROGRAM 'cat'"]),
    # --- opaque code ----------------------------------------------------------------------------
    deny("do-block", "DO $$ BEGIN DELETE FROM users; END $$", OPAQUE),
    deny("do-block-harmless", "DO $$ BEGIN NULL; END $$", OPAQUE),
    deny("do-block-language", "DO LANGUAGE plpgsql $x$ BEGIN EXECUTE 'TRUNCATE orders'; END $x$", OPAQUE),
    deny("do-block-lower-string", "do 'begin perform 1; end'", OPAQUE),
    deny("create-function", "CREATE FUNCTION corpus_f() RETURNS void LANGUAGE sql AS 'DELETE FROM users'", (DDL, OPAQUE)),
    deny("create-or-replace-procedure",
         "CREATE OR REPLACE PROCEDURE corpus_noop() LANGUAGE sql AS $$ DELETE FROM orders $$", (DDL, OPAQUE)),
    deny("query-to-xml", "SELECT query_to_xml('delete from users', true, true, '')", OPAQUE),
    deny("query-to-xml-in-from", "SELECT * FROM query_to_xml('SELECT 1', true, true, '')", OPAQUE),
    deny("query-to-xml-schema", "SELECT query_to_xml_and_xmlschema('truncate orders', true, true, '')", OPAQUE),
    deny("query-to-xml-unicode", "SELECT U&\"query_to_x\\006dl\"('delete from orders', true, true, '')", OPAQUE),
    deny("query-to-xml-in-where", "SELECT 1 FROM users WHERE query_to_xml('delete from orders', true, true, '') IS NULL",
         OPAQUE),
    deny("dblink", "SELECT * FROM dblink('dbname=app', 'DELETE FROM users') AS t(x text)", OPAQUE),
    deny("dblink-exec", "SELECT dblink_exec('dbname=app', 'DROP TABLE users')", OPAQUE),
    # --- server administration ------------------------------------------------------------------
    deny("pg-read-file", "SELECT pg_read_file('/etc/passwd')", ADMIN),
    deny("pg-read-file-unicode", "SELECT U&\"pg_read_fil\\0065\"('/etc/passwd')", ADMIN),
    deny("pg-read-file-qualified", "SELECT pg_catalog.pg_read_file('postgresql.conf')", ADMIN),
    deny("pg-read-file-upper", "SELECT PG_READ_FILE('/etc/passwd')", ADMIN),
    deny("pg-read-file-quoted", 'SELECT "pg_read_file"(\'/etc/passwd\')', ADMIN),
    deny("pg-read-file-in-from", "SELECT * FROM pg_read_file('/etc/passwd') AS f(line)", ADMIN),
    deny("pg-read-file-rows-from", "SELECT * FROM ROWS FROM (pg_read_file('/etc/passwd')) AS f", ADMIN),
    deny("pg-read-file-nested",
         "SELECT (SELECT (SELECT length(pg_read_file('/etc/passwd')))) FROM (SELECT 1) a", ADMIN),
    deny("pg-read-file-in-insert", "INSERT INTO \"delete\" VALUES (1000, pg_read_file('/etc/passwd'))", ADMIN),
    deny("pg-read-binary-file", "SELECT pg_read_binary_file('/etc/passwd')", ADMIN),
    deny("pg-ls-dir", "SELECT pg_ls_dir('.')", ADMIN),
    deny("pg-stat-file", "SELECT pg_stat_file('postgresql.conf')", ADMIN),
    deny("pg-terminate-backend", "SELECT pg_terminate_backend(pg_backend_pid())", ADMIN),
    deny("pg-terminate-backend-all",
         "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()", ADMIN),
    deny("pg-cancel-backend", "SELECT pg_cancel_backend(pg_backend_pid())", ADMIN),
    deny("pg-reload-conf", "SELECT pg_reload_conf()", ADMIN),
    deny("pg-rotate-logfile", "SELECT pg_rotate_logfile()", ADMIN),
    deny("pg-promote", "SELECT pg_promote()", ADMIN),
    deny("lo-import", "SELECT lo_import('/etc/passwd')", ADMIN),
    deny("lo-export", "SELECT lo_export(1, '/tmp/corpus_lo')", ADMIN),
    deny("copy-with-admin-function", "COPY (SELECT pg_read_file('/etc/passwd')) TO STDOUT", ADMIN),
    deny("alter-system", "ALTER SYSTEM SET log_statement = 'none'", ADMIN),
    deny("alter-system-reset", "alter system reset all", ADMIN),
    deny("load", "LOAD 'auto_explain'", ADMIN),
    # --- settings that would let a later message mean something else ---------------------------
    deny("after-scs-off", "SELECT '\\'' ; DELETE FROM orders ; --'",
         setup=["SET standard_conforming_strings = off"], msg="standard_conforming_strings", reconnect=True),
]

BENIGN = [
    # --- destructive words where they are only data ---------------------------------------------
    allow("string-delete", "SELECT 'delete'", rows=[("delete",)]),
    allow("string-drop-table", "SELECT 'DROP TABLE users'", rows=[("DROP TABLE users",)]),
    allow("string-with-semicolons", "SELECT 'x; DELETE FROM users; --'", rows=[("x; DELETE FROM users; --",)]),
    allow("dollar-quoted", "SELECT $$DROP TABLE users$$", rows=[("DROP TABLE users",)]),
    allow("dollar-tagged", "SELECT $t$TRUNCATE users; $$ DELETE FROM users $$$t$",
          rows=[("TRUNCATE users; $$ DELETE FROM users $$",)]),
    allow("escape-string", "SELECT E'it\\'s fine; DROP TABLE users; --'", rows=[("it's fine; DROP TABLE users; --",)]),
    allow("escape-string-backslashes", "SELECT E'\\\\'';DELETE FROM users;--'", rows=[("\\';DELETE FROM users;--",)]),
    allow("doubled-quotes", "SELECT 'a'';DROP TABLE users;--'", rows=[("a';DROP TABLE users;--",)]),
    allow("unicode-string", "SELECT U&'d\\0065lete'", rows=[("delete",)]),
    allow("comment-with-delete", "SELECT 1 /* DELETE FROM users */", rows=[(1,)]),
    allow("line-comment-with-drop", "SELECT 2 -- ; DROP TABLE users", rows=[(2,)]),
    allow("nested-comment-with-drop", "SELECT 3 /* a /* DROP TABLE users */ TRUNCATE users */", rows=[(3,)]),
    allow("where-action-delete", "SELECT count(*) FROM corpus_actions WHERE action = 'delete'", rows=[(50,)]),
    allow("where-action-in", "SELECT count(*) FROM corpus_actions WHERE action IN ('drop', 'truncate')", rows=[(100,)]),
    allow("like-delete", "SELECT count(*) FROM corpus_actions WHERE action LIKE '%elete%'", rows=[(50,)]),
    allow("column-alias-delete", 'SELECT 1 AS "delete", 2 AS "drop table"', rows=[(1, 2)]),
    allow("table-named-delete", 'SELECT id FROM "delete" ORDER BY id', rows=[(1,), (2,), (3,)]),
    allow("table-named-drop", 'SELECT "truncate" FROM "drop" ORDER BY id', rows=[("x",), ("y",)]),
    allow("table-named-drop-unicode", 'SELECT count(*) FROM U&"dro\\0070"', rows=[(2,)]),
    allow("json-with-delete", "SELECT '{\"sql\": \"DELETE FROM users\"}'::jsonb ->> 'sql'",
          rows=[("DELETE FROM users",)]),
    allow("regex-with-drop", "SELECT 'DROP TABLE users' ~* 'drop\\s+table'", rows=[(True,)]),
    allow("format-with-delete", "SELECT format('DELETE FROM %I', 'users')", rows=[("DELETE FROM users",)]),
    allow("quote-ident-drop", "SELECT quote_ident('Drop Table')", rows=[('"Drop Table"',)]),
    # --- reads ----------------------------------------------------------------------------------
    allow("select-users", "SELECT id, name FROM users ORDER BY id LIMIT 3", rowcount=3),
    allow("select-lower", "select count(*) from users", rows=[(50,)]),
    allow("select-join", "SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id", rows=[(500,)]),
    allow("select-cte", "WITH x AS (SELECT id FROM users WHERE id <= 5) SELECT count(*) FROM x", rows=[(5,)]),
    allow("select-recursive-cte",
          "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 10) SELECT sum(n) FROM t",
          rows=[(55,)]),
    allow("select-nested-subqueries",
          "SELECT (SELECT (SELECT count(*) FROM (SELECT * FROM (SELECT id FROM users) a) b))", rows=[(50,)]),
    allow("select-union", "SELECT 1 UNION SELECT 2 ORDER BY 1", rows=[(1,), (2,)]),
    allow("select-window", "SELECT max(rn) FROM (SELECT row_number() OVER () AS rn FROM orders) s", rows=[(500,)]),
    allow("select-values", "VALUES (1, 'delete'), (2, 'drop')", rowcount=2),
    allow("table-command", "TABLE \"delete\"", rowcount=3),
    allow("select-for-update", "SELECT id FROM users WHERE id = 1 FOR UPDATE", rows=[(1,)]),
    allow("select-for-share-skip-locked", "SELECT id FROM orders ORDER BY id LIMIT 2 FOR SHARE SKIP LOCKED",
          rowcount=2),
    allow("select-for-update-in-tx", "SELECT id FROM users WHERE id <= 2 FOR UPDATE", rowcount=2, wrap=True),
    allow("now", "SELECT now() <= now() + interval '1 second'", rows=[(True,)]),
    allow("generate-series", "SELECT count(*) FROM generate_series(1, 1000)", rows=[(1000,)]),
    allow("json-build", "SELECT json_build_object('a', 1, 'b', 'delete')::text", rows=[('{"a" : 1, "b" : "delete"}',)]),
    allow("jsonb-agg", "SELECT jsonb_agg(id ORDER BY id) FROM users WHERE id <= 3", rows=[([1, 2, 3],)]),
    allow("json-each", "SELECT count(*) FROM json_each('{\"a\":1,\"b\":2}')", rows=[(2,)]),
    allow("function-in-from", "SELECT * FROM corpus_double(21)", rows=[(42,)]),
    allow("function-in-select", "SELECT corpus_double(id) FROM users WHERE id = 4", rows=[(8,)]),
    allow("call-procedure", "CALL corpus_noop()"),
    allow("nextval", "SELECT nextval('corpus_seq') > 0", rows=[(True,)]),
    allow("nextval-unicode", "SELECT U&\"n\\0065xtval\"('corpus_seq') > 0", rows=[(True,)]),
    allow("setval-unicode", "SELECT U&\"s\\0065tval\"('corpus_seq', 5)", rows=[(5,)]),
    allow("currval-after-nextval", "SELECT currval('corpus_seq') > 0", setup=["SELECT nextval('corpus_seq')"],
          rows=[(True,)]),
    allow("set-config-harmless", "SELECT set_config('application_name', 'corpus', false)", rows=[("corpus",)]),
    allow("current-setting", "SELECT current_setting('server_version_num')::int >= 150000", rows=[(True,)]),
    allow("pg-backend-pid", "SELECT pg_backend_pid() > 0", rows=[(True,)]),
    allow("catalog-read", "SELECT count(*) FROM pg_class WHERE relname = 'users'", rows=[(1,)]),
    allow("information-schema", "SELECT column_name FROM information_schema.columns "
          "WHERE table_name = 'users' ORDER BY ordinal_position", rowcount=4),
    allow("has-table-privilege", "SELECT has_table_privilege('users', 'DELETE')", rows=[(True,)]),
    # --- EXPLAIN without ANALYZE plans, does not run --------------------------------------------
    allow("explain-delete", "EXPLAIN DELETE FROM users"),
    allow("explain-update", "EXPLAIN UPDATE orders SET status = 'void'"),
    allow("explain-verbose-delete", "EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM orders"),
    allow("explain-analyze-select", "EXPLAIN ANALYZE SELECT * FROM users"),
    allow("explain-analyze-false", "EXPLAIN (ANALYZE false) DELETE FROM orders"),
    # --- bounded writes -------------------------------------------------------------------------
    allow("update-5-rows", "UPDATE orders SET status = status WHERE id <= 5", rowcount=5),
    allow("update-100-rows", "UPDATE orders SET status = status WHERE id <= 100", rowcount=100),
    allow("update-50-users", "UPDATE users SET name = name WHERE id > 0", rowcount=50),
    allow("update-one-change", "UPDATE orders SET status = 'shipped' WHERE id = 7", rowcount=1, wrap=True),
    allow("update-one-autocommit", "UPDATE \"delete\" SET note = 'changed' WHERE id = 1", rowcount=1,
          restore="UPDATE \"delete\" SET note = 'a' WHERE id = 1"),
    allow("update-bounded-returning", "UPDATE orders SET status = status WHERE id = 9 RETURNING id", rows=[(9,)]),
    allow("update-no-rows", "UPDATE orders SET status = 'void' WHERE id < 0", rowcount=0),
    allow("update-in-tx", "UPDATE orders SET status = 'void' WHERE user_id = 3", rowcount=10, wrap=True),
    allow("delete-one", "DELETE FROM orders WHERE id = 11", rowcount=1, wrap=True),
    allow("delete-50", "DELETE FROM corpus_actions WHERE action = 'delete'", rowcount=50, wrap=True),
    allow("delete-autocommit", "DELETE FROM \"delete\" WHERE id = 3", rowcount=1,
          restore="INSERT INTO \"delete\" VALUES (3, 'c')"),
    allow("delete-no-rows", "DELETE FROM users WHERE id < 0", rowcount=0),
    allow("delete-using-where", "DELETE FROM orders o USING users u WHERE o.user_id = u.id AND u.id = 4",
          rowcount=10, wrap=True),
    allow("delete-where-comment", "DELETE FROM orders /* all of them? no: */ WHERE id = 12", rowcount=1, wrap=True),
    allow("merge-one-row",
          "MERGE INTO orders o USING (SELECT 13 AS id) s ON o.id = s.id WHEN MATCHED THEN UPDATE SET status = o.status",
          rowcount=1),
    allow("merge-insert",
          "MERGE INTO \"delete\" d USING (SELECT 50 AS id) s ON d.id = s.id "
          "WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'merged')", rowcount=1,
          restore="DELETE FROM \"delete\" WHERE id = 50"),
    allow("insert", "INSERT INTO \"delete\" (id, note) VALUES (100, 'DROP TABLE users')", rowcount=1,
          restore="DELETE FROM \"delete\" WHERE id = 100"),
    allow("insert-returning", "INSERT INTO orders (user_id, amount) VALUES (1, 9.99) RETURNING status",
          rows=[("paid",)], wrap=True),
    allow("insert-select", "INSERT INTO \"drop\" SELECT 10 + id, 'copy' FROM \"drop\"", rowcount=2,
          restore="DELETE FROM \"drop\" WHERE id > 10"),
    allow("insert-on-conflict", "INSERT INTO \"delete\" VALUES (1, 'z') ON CONFLICT (id) DO NOTHING", rowcount=0),
    allow("insert-many", "INSERT INTO corpus_actions (action) SELECT 'insert' FROM generate_series(1, 300)",
          rowcount=300, wrap=True),
    allow("insert-identifiers", 'INSERT INTO "drop" (id, "truncate") VALUES (99, \'delete\')', rowcount=1,
          restore='DELETE FROM "drop" WHERE id = 99'),
    allow("cte-insert-bounded", "WITH v AS (SELECT 101 AS id) INSERT INTO \"delete\" SELECT id, 'v' FROM v",
          rowcount=1, restore="DELETE FROM \"delete\" WHERE id = 101"),
    # --- COPY to and from the client ------------------------------------------------------------
    allow("copy-to-stdout", "COPY users TO STDOUT", copy="out", rowcount=50),
    allow("copy-query-to-stdout", "COPY (SELECT * FROM orders WHERE id <= 10) TO STDOUT WITH (FORMAT csv)",
          copy="out", rowcount=10),
    allow("copy-lower-to-stdout", "copy \"delete\" to stdout", copy="out", rowcount=3),
    allow("copy-from-stdin", "COPY \"delete\" FROM STDIN", copy="in", copy_data="200\tcopied\n201\tcopied too\n",
          restore="DELETE FROM \"delete\" WHERE id >= 200"),
    # --- transactions and session settings ------------------------------------------------------
    allow("begin-commit", "BEGIN; SELECT 1; COMMIT", parts=["BEGIN", "SELECT 1", "COMMIT"]),
    allow("begin-rollback", "BEGIN; UPDATE orders SET status = 'void' WHERE id = 14; ROLLBACK",
          parts=["BEGIN", "UPDATE orders SET status = 'void' WHERE id = 14", "ROLLBACK"],
          xfail={"simple": "gateway limitation: a row-limited write sharing one simple Query with "
                           "BEGIN/ROLLBACK is refused (\"send them separately\")"}),
    allow("start-transaction-read-only", "START TRANSACTION READ ONLY; SELECT count(*) FROM users; COMMIT",
          parts=["START TRANSACTION READ ONLY", "SELECT count(*) FROM users", "COMMIT"]),
    allow("begin-isolation", "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT 1; ROLLBACK",
          parts=["BEGIN ISOLATION LEVEL SERIALIZABLE", "SELECT 1", "ROLLBACK"]),
    allow("savepoints", "SAVEPOINT a; SELECT 1; RELEASE SAVEPOINT a; SAVEPOINT b; ROLLBACK TO SAVEPOINT b",
          parts=["SAVEPOINT a", "SELECT 1", "RELEASE SAVEPOINT a", "SAVEPOINT b", "ROLLBACK TO SAVEPOINT b"],
          wrap=True),
    allow("lock-table-in-tx", "LOCK TABLE users IN ACCESS SHARE MODE", wrap=True),
    allow("set-search-path", "SET search_path = public, pg_catalog"),
    allow("set-statement-timeout", "SET statement_timeout = '5s'"),
    allow("set-local-timeout", "SET LOCAL statement_timeout = 1000", wrap=True),
    allow("set-application-name", "SET application_name TO 'delete everything'"),
    allow("reset-all", "RESET ALL"),
    allow("show", "SHOW search_path", rowcount=1),
    allow("show-all", "SHOW ALL"),
    allow("set-then-show", "SET work_mem = '8MB'; SHOW work_mem", parts=["SET work_mem = '8MB'", "SHOW work_mem"],
          rows=[("8MB",)]),
    allow("reset-role", "RESET ROLE"),
    allow("listen-notify", "LISTEN corpus; NOTIFY corpus, 'drop table users'; UNLISTEN corpus",
          parts=["LISTEN corpus", "NOTIFY corpus, 'drop table users'", "UNLISTEN corpus"]),
    allow("prepare-execute-select", "PREPARE q AS SELECT count(*) FROM users; EXECUTE q",
          parts=["PREPARE q AS SELECT count(*) FROM users", "EXECUTE q"], rows=[(50,)],
          xfail={"simple": BUG_A, "extended": BUG_B}),
    allow("execute-after-separate-prepare", "EXECUTE q2", setup=["PREPARE q2 AS SELECT 2"], rows=[(2,)],
          xfail={"extended": BUG_B}),
    allow("prepare-bounded-update", "PREPARE u (int) AS UPDATE orders SET status = status WHERE id = $1",
          xfail=BUG_C),
    allow("prepare-execute-bounded-update", "PREPARE u (int) AS UPDATE orders SET status = status WHERE id = $1; "
          "EXECUTE u(15)", parts=["PREPARE u (int) AS UPDATE orders SET status = status WHERE id = $1",
                                  "EXECUTE u(15)"], rowcount=1, xfail=BUG_C),
    allow("deallocate-all", "PREPARE q AS SELECT 1; DEALLOCATE ALL",
          parts=["PREPARE q AS SELECT 1", "DEALLOCATE ALL"]),
    allow("declare-fetch", "BEGIN; DECLARE c CURSOR FOR SELECT id FROM users ORDER BY id; FETCH 2 FROM c; "
          "CLOSE c; COMMIT", parts=["BEGIN", "DECLARE c CURSOR FOR SELECT id FROM users ORDER BY id",
                                   "FETCH 2 FROM c", "CLOSE c", "COMMIT"]),
    allow("analyze-table", "ANALYZE users"),
    allow("discard-all", "DISCARD ALL"),
]

CASES = DESTRUCTIVE + BENIGN
