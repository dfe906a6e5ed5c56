"""The `production` policy pack, judged at the wire: every case of corpus/policy_cases.py runs
through the real gateway against a real PostgreSQL, over the simple and the extended protocol.

Refused cases must fail with SQLSTATE 42501 (42601 for text the gateway cannot parse) and a
"drawbridge:" message naming the rule, must leave data, schema, roles and server files exactly
as they were (a fingerprint taken as the superuser, directly, before and after), and must leave
the session usable. Allowed cases must run and return what PostgreSQL returns.

Uses GATEWAY_URL / DIRECT_URL / ADMIN_URL when all three are set (scripts/test); otherwise it
starts its own `drawbridge demo --no-script` (target/release/drawbridge or $DRAWBRIDGE_BIN) and
stops it at the end. Standalone: `python3 -m pytest --noconftest test_policy_corpus.py`.
"""

import importlib.util
import os
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import pq
from psycopg import sql as pgsql

from gateway_process import BINARY, free_port, stop

HERE = Path(__file__).resolve().parent


def _load_cases():
    spec = importlib.util.spec_from_file_location("policy_cases", HERE / "corpus" / "policy_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


CASES = _load_cases()
PROTOCOLS = ["simple", "extended"]

# Objects the corpus reads and writes besides users/orders; created directly as the superuser
# (DDL through the gateway is refused) and owned by the app role.
FIXTURE_SQL = """
DROP TABLE IF EXISTS "delete", "drop", corpus_actions CASCADE;
DROP SEQUENCE IF EXISTS corpus_seq;
DROP FUNCTION IF EXISTS corpus_double(int);
DROP PROCEDURE IF EXISTS corpus_noop();
CREATE TABLE "delete" (id int PRIMARY KEY, note text);
INSERT INTO "delete" VALUES (1, 'a'), (2, 'b'), (3, 'c');
CREATE TABLE "drop" (id int PRIMARY KEY, "truncate" text);
INSERT INTO "drop" VALUES (1, 'x'), (2, 'y');
CREATE TABLE corpus_actions (id serial PRIMARY KEY, action text NOT NULL);
INSERT INTO corpus_actions (action)
    SELECT (ARRAY['delete', 'drop', 'truncate', 'update'])[1 + g % 4] FROM generate_series(1, 200) g;
CREATE SEQUENCE corpus_seq;
CREATE FUNCTION corpus_double(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2';
CREATE PROCEDURE corpus_noop() LANGUAGE sql AS 'SELECT 1';
"""
FIXTURE_OWNED = [
    'TABLE "delete"', 'TABLE "drop"', "TABLE corpus_actions", "SEQUENCE corpus_seq",
    "FUNCTION corpus_double(int)", "PROCEDURE corpus_noop()",
]
FIXTURE_DROP = """
DROP TABLE IF EXISTS "delete", "drop", corpus_actions CASCADE;
DROP SEQUENCE IF EXISTS corpus_seq;
DROP FUNCTION IF EXISTS corpus_double(int);
DROP PROCEDURE IF EXISTS corpus_noop();
"""

# Everything a destructive statement could change, outside the rows themselves. Each entry is
# one component of the fingerprint, so a failure names what changed.
CATALOG_QUERIES = {
    "relations": """SELECT n.nspname, c.relname, c.relkind, c.relowner::regrole, c.relacl, c.relnatts,
                           c.relhastriggers, c.relhasrules, c.relrowsecurity, c.relpersistence
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')""",
    "columns": """SELECT table_schema, table_name, column_name, ordinal_position, data_type,
                         column_default, is_nullable
                  FROM information_schema.columns
                  WHERE table_schema NOT IN ('pg_catalog', 'information_schema')""",
    "constraints": """SELECT conrelid::regclass, conname, pg_get_constraintdef(oid) FROM pg_constraint
                      WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)""",
    "roles": """SELECT a.rolname, a.rolsuper, a.rolinherit, a.rolcreaterole, a.rolcreatedb, a.rolcanlogin,
                       a.rolreplication, a.rolbypassrls, a.rolconnlimit, a.rolvaliduntil, a.rolpassword,
                       s.setconfig
                FROM pg_authid a LEFT JOIN pg_db_role_setting s ON s.setrole = a.oid""",
    "memberships": "SELECT roleid::regrole, member::regrole, admin_option FROM pg_auth_members",
    "namespaces": "SELECT nspname, nspowner::regrole, nspacl FROM pg_namespace",
    "functions": """SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.proowner::regrole,
                           p.proacl, md5(p.prosrc)
                    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')""",
    "databases": "SELECT datname, datdba::regrole, datacl, datallowconn, datconnlimit FROM pg_database",
    "extensions": "SELECT extname, extversion FROM pg_extension",
    "large_objects": "SELECT oid, lomowner FROM pg_largeobject_metadata",
    "default_acls": "SELECT defaclrole::regrole, defaclnamespace, defaclobjtype, defaclacl FROM pg_default_acl",
    "triggers": "SELECT tgrelid::regclass, tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal",
    "rules": "SELECT ev_class::regclass, rulename FROM pg_rewrite WHERE ev_class >= 16384",
    "policies": "SELECT polrelid::regclass, polname FROM pg_policy",
    "comments": "SELECT objoid, classoid, objsubid, description FROM pg_description WHERE objoid >= 16384",
    "prepared_xacts": "SELECT gid FROM pg_prepared_xacts",
    "auto_conf": "SELECT md5(pg_read_file('postgresql.auto.conf'))",
}


def _start_demo():
    binary = BINARY
    if not binary.exists():
        pytest.skip(f"no gateway URLs in the environment and no binary at {binary}")
    workdir = Path(tempfile.mkdtemp(prefix="drawbridge-corpus-"))
    env_file = workdir / "demo.env"
    log = open(workdir / "demo.log", "wb")
    proc = subprocess.Popen(
        [str(binary), "demo", "--no-script", "--no-color", "--port", str(free_port()), "--env-file", str(env_file)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while not env_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            log.close()
            pytest.fail(f"drawbridge demo did not start; see {workdir / 'demo.log'}")
        time.sleep(0.1)
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    return proc, log, values


@pytest.fixture(scope="module")
def env():
    names = ("GATEWAY_URL", "DIRECT_URL", "ADMIN_URL")
    if all(os.environ.get(n) for n in names):
        yield {n: os.environ[n] for n in names}
        return
    proc, log, values = _start_demo()
    try:
        yield {n: values[n] for n in names}
    finally:
        stop(proc)
        log.close()


@pytest.fixture(scope="module")
def app_role(env):
    return psycopg.conninfo.conninfo_to_dict(env["DIRECT_URL"])["user"]


@pytest.fixture(scope="module")
def admin(env, app_role):
    """A superuser connection straight to PostgreSQL, with the corpus's own objects in place."""
    with psycopg.connect(env["ADMIN_URL"], autocommit=True) as conn:
        conn.execute(FIXTURE_SQL)
        for obj in FIXTURE_OWNED:
            conn.execute(f'ALTER {obj} OWNER TO "{app_role}"')
        yield conn
        conn.execute(FIXTURE_DROP)


def fingerprint(admin):
    """Row counts and content hashes of every table and sequence of the app schema, plus the
    catalog components above."""
    fp = {}
    rels = admin.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'm', 'S') ORDER BY 1"
    ).fetchall()
    for name, kind in rels:
        ident = pgsql.Identifier("public", name)
        if kind == "S":
            q = pgsql.SQL("SELECT last_value, is_called FROM {}").format(ident)
            fp[f"sequence {name}"] = admin.execute(q).fetchone()
        else:
            q = pgsql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {} t"
            ).format(ident)
            fp[f"data {name}"] = admin.execute(q).fetchone()
    for key, q in CATALOG_QUERIES.items():
        fp[key] = admin.execute(f"SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) "
                                f"FROM ({q}) x").fetchone()[0]
    return fp


def diff(before, after):
    keys = sorted(set(before) | set(after))
    return {k: (before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)}


def restore_sequences(admin, before):
    """Allowed INSERTs and nextval move sequences, even when rolled back; put them back."""
    for key, value in before.items():
        if key.startswith("sequence "):
            last, called = value
            name = pgsql.Identifier("public", key.removeprefix("sequence ")).as_string(admin)
            admin.execute("SELECT setval(%s::regclass, %s, %s)", (name, last, called))


def run_copy(conn, case, protocol):
    """COPY to or from the client. The extended variant goes through libpq's PQexecParams, the
    only way to send COPY without the simple protocol."""
    if protocol == "simple":
        with conn.cursor() as cur, cur.copy(case["sql"]) as copy:
            if case["copy"] == "in":
                copy.write(case["copy_data"])
                return None
            return sum(1 for _ in copy)
    pg = conn.pgconn
    res = pg.exec_params(case["sql"].encode(), [])
    if res.status == pq.ExecStatus.FATAL_ERROR:
        raise psycopg.errors.error_from_result(res, encoding=conn.info.encoding)
    lines = 0
    if case["copy"] == "in":
        assert res.status == pq.ExecStatus.COPY_IN, res.status
        pg.put_copy_data(case["copy_data"].encode())
        pg.put_copy_end()
    else:
        assert res.status == pq.ExecStatus.COPY_OUT, res.status
        while True:
            n, _ = pg.get_copy_data(0)
            if n < 0:
                break
            lines += 1
    final = pg.get_result()
    assert final is not None and final.status == pq.ExecStatus.COMMAND_OK, final and final.error_message
    while pg.get_result() is not None:
        pass
    return lines if case["copy"] == "out" else None


def run(conn, sql, parts, protocol):
    """Sends one case; returns the cursor holding the last statement's result."""
    if protocol == "simple":
        cur = conn.execute(sql)
        while cur.nextset():
            pass
        return cur
    if parts is None:
        return conn.execute(sql, prepare=True)
    # Parse takes one statement: send them one by one in a single pipeline (one Sync).
    with conn.pipeline():
        curs = [conn.execute(p, prepare=True) for p in parts]
    return curs[-1]


def assert_usable(conn, app_role):
    assert conn.info.transaction_status == pq.TransactionStatus.IDLE
    assert conn.execute("SELECT 1").fetchone() == (1,)
    assert conn.execute("SELECT 2", prepare=True).fetchone() == (2,)
    assert conn.execute("SELECT current_user, session_user").fetchone() == (app_role, app_role)


def params():
    out = []
    for case in CASES:
        for protocol in PROTOCOLS:
            reason = case.get("xfail")
            if isinstance(reason, dict):
                reason = reason.get(protocol)
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(case, protocol, id=f"{case['expect']}-{case['id']}-{protocol}", marks=marks))
    return out


def test_corpus_size():
    assert len(CASES) >= 150
    assert len({c["id"] for c in CASES}) == len(CASES)
    assert sum(c["expect"] == "deny" for c in CASES) >= 100


@pytest.mark.parametrize(("case", "protocol"), params())
def test_policy_case(case, protocol, env, admin, app_role):
    with psycopg.connect(env["GATEWAY_URL"], autocommit=True) as conn:
        for s in case["setup"]:
            run(conn, s, None, protocol)
        before = fingerprint(admin)
        if case["expect"] == "deny":
            check_refused(conn, case, protocol, env, admin, app_role, before)
        else:
            check_allowed(conn, case, protocol, admin, app_role, before)


def check_refused(conn, case, protocol, env, admin, app_role, before):
    if case["in_tx"]:
        conn.execute("BEGIN")
    with pytest.raises(psycopg.Error) as caught:
        if case.get("copy"):
            run_copy(conn, case, protocol)
        else:
            run(conn, case["sql"], case["parts"], protocol)
    err = caught.value
    message = err.diag.message_primary or str(err)
    assert err.sqlstate == case["sqlstate"], f"{err.sqlstate}: {message}"
    assert message.startswith("drawbridge:"), message
    if case["rule"]:
        # Several deny rules may match (ALTER … OWNER TO is DDL and a privilege change); the
        # message names the first of the pack.
        rules = case["rule"] if isinstance(case["rule"], tuple) else (case["rule"],)
        assert any(f"rule {r}" in message for r in rules), message
    if case["msg"]:
        assert case["msg"] in message, message

    status = conn.info.transaction_status
    if case["in_tx"] and status == pq.TransactionStatus.IDLE:
        # Statements sent one by one: a COMMIT/ROLLBACK before the refused one really ran.
        assert protocol == "extended" and any(
            p.upper().startswith(("COMMIT", "ROLLBACK", "END", "ABORT")) for p in case["parts"] or ()
        ), "the refusal ended the transaction"
    elif case["in_tx"]:
        # A failed statement inside a transaction block aborts it, refused or not.
        assert status == pq.TransactionStatus.INERROR, status
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.execute("ROLLBACK")
    elif status == pq.TransactionStatus.INERROR:
        # The text itself opened a transaction block (BEGIN; …) before the refused statement.
        assert "BEGIN" in case["sql"].upper(), case["sql"]
        conn.execute("ROLLBACK")

    after = fingerprint(admin)
    assert diff(before, after) == {}, "a refused statement changed the database"
    if case["reconnect"]:
        with psycopg.connect(env["GATEWAY_URL"], autocommit=True) as fresh:
            assert_usable(fresh, app_role)
    else:
        assert_usable(conn, app_role)


def check_allowed(conn, case, protocol, admin, app_role, before):
    if case["wrap"]:
        conn.execute("BEGIN")
    if case["copy"]:
        lines = run_copy(conn, case, protocol)
        if case["rowcount"] is not None:
            assert lines == case["rowcount"]
    else:
        cur = run(conn, case["sql"], case["parts"], protocol)
        if case["rowcount"] is not None:
            assert cur.rowcount == case["rowcount"]
        if case["rows"] is not None:
            assert cur.fetchall() == case["rows"]
        elif cur.description is not None:
            cur.fetchall()
    if case["wrap"]:
        assert conn.info.transaction_status == pq.TransactionStatus.INTRANS
        conn.execute("ROLLBACK")
    assert_usable(conn, app_role)
    if case["restore"]:
        admin.execute(case["restore"])
    restore_sequences(admin, before)
    after = fingerprint(admin)
    assert diff(before, after) == {}, "the case's effect was not undone; later cases would depend on it"
