"""psycopg 3: the same operations through the gateway and directly give the same results."""

import threading
import time

import psycopg
import pytest
from psycopg import errors

from conftest import sample_rows

TYPED_QUERY = """
SELECT 42 AS i, 'héllo ✓'::text AS t, NULL::text AS n, 1.5::numeric AS num,
       '2024-01-02'::date AS d, '{1,2,3}'::int[] AS arr, '\\xdeadbeef00'::bytea AS b,
       true AS flag, '{"a": [1, null]}'::jsonb AS j, 3.25::float8 AS f,
       '12:34:56'::time AS tm, '2024-01-02 03:04:05+00'::timestamptz AS ts
"""


def both(urls, fn, **connect_kwargs):
    """Run fn(conn) on a gateway and a direct connection; return both results."""
    out = {}
    for side, url in urls.items():
        with psycopg.connect(url, autocommit=True, **connect_kwargs) as conn:
            out[side] = fn(conn)
    return out["gateway"], out["direct"]


def describe(cur):
    return [(c.name, c.type_code) for c in cur.description]


def test_text_results_match(urls):
    def run(conn):
        with conn.cursor() as cur:
            cur.execute(TYPED_QUERY)
            return describe(cur), cur.fetchall()

    gw, direct = both(urls, run)
    assert gw == direct
    assert gw[1][0][0] == 42


def test_binary_results_match(urls, make_table):
    table = make_table(rows=sample_rows(20))

    def run(conn):
        with conn.cursor(binary=True) as cur:
            cur.execute(TYPED_QUERY)
            typed = cur.fetchall()
            cur.execute(f"SELECT * FROM {table} ORDER BY id")
            return typed, cur.fetchall(), cur.pgresult.fformat(0)

    gw, direct = both(urls, run)
    assert gw == direct
    assert gw[2] == 1, "results were not binary"
    assert len(gw[1]) == 20


def test_server_side_cursor(urls):
    def run(conn):
        batches = []
        with conn.transaction():
            with conn.cursor(name="big") as cur:
                cur.itersize = 97
                cur.execute("SELECT g, md5(g::text) FROM generate_series(1, 1000) g")
                while rows := cur.fetchmany(250):
                    batches.append(rows)
        return batches

    gw, direct = both(urls, run)
    assert gw == direct
    assert sum(len(b) for b in gw) == 1000


def test_copy_out_text_and_binary(urls, make_table):
    table = make_table(rows=sample_rows())

    def run(conn):
        out = []
        with conn.cursor() as cur:
            for fmt in ("text", "csv", "binary"):
                buf = bytearray()
                with cur.copy(f"COPY (SELECT * FROM {table} ORDER BY id) TO STDOUT (FORMAT {fmt})") as copy:
                    for chunk in copy:
                        buf += chunk
                out.append(bytes(buf))
        return out

    gw, direct = both(urls, run)
    assert gw == direct
    assert b"name-50" in gw[0]


def test_copy_in(urls, make_table, admin):
    tables = {side: make_table() for side in urls}
    rows = sample_rows(200)
    for side, url in urls.items():
        with psycopg.connect(url, autocommit=True) as conn:
            with conn.cursor().copy(f"COPY {tables[side]} (id, name, score, data) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    contents = [
        admin.execute(f"SELECT * FROM {tables[side]} ORDER BY id").fetchall() for side in urls
    ]
    assert contents[0] == contents[1]
    assert len(contents[0]) == 200


def test_copy_in_error_keeps_session(urls, make_table):
    def run(conn):
        table = tables.pop()
        with pytest.raises(errors.InvalidTextRepresentation) as info:
            with conn.cursor().copy(f"COPY {table} (id) FROM STDIN") as copy:
                copy.write(b"1\nnot-a-number\n")
        return info.value.sqlstate, conn.execute("SELECT 7").fetchone()

    tables = [make_table(), make_table()]
    gw, direct = both(urls, run)
    assert gw == direct == ("22P02", (7,))


def test_prepared_statements(urls):
    def run(conn):
        results = []
        for i in range(8):
            cur = conn.execute("SELECT %s::int * 2, %s::text", (i, f"v{i}"), prepare=True)
            results.append(cur.fetchone())
        prepared = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
        return results, prepared

    gw, direct = both(urls, run)
    assert gw == direct
    assert gw[1] >= 1, "prepare=True did not create a server-side prepared statement"


def test_extended_protocol_parameters(urls, make_table):
    table = make_table(rows=sample_rows())

    def run(conn):
        cur = conn.execute(
            f"SELECT id, name FROM {table} WHERE id = ANY(%s) AND name LIKE %s ORDER BY id",
            ([1, 5, 9, 1000], "name-%"),
        )
        return cur.fetchall()

    gw, direct = both(urls, run)
    assert gw == direct
    assert [r[0] for r in gw] == [1, 5, 9]


def test_pipeline_mode(urls):
    def run(conn):
        with conn.pipeline():
            curs = [conn.execute("SELECT %s::int + 1", (i,)) for i in range(20)]
        return [c.fetchone()[0] for c in curs]

    gw, direct = both(urls, run)
    assert gw == direct == list(range(1, 21))


def cancel(conn):
    if hasattr(conn, "cancel_safe"):
        conn.cancel_safe()
    else:
        conn.cancel()


def test_cancel_then_session_usable(urls):
    def run(conn):
        timer = threading.Timer(0.5, cancel, (conn,))
        timer.start()
        started = time.monotonic()
        with pytest.raises(errors.QueryCanceled) as info:
            conn.execute("SELECT pg_sleep(20)")
        elapsed = time.monotonic() - started
        timer.join()
        assert elapsed < 10, f"cancel took {elapsed:.1f}s"
        return info.value.sqlstate, conn.execute("SELECT 'alive'").fetchone()

    gw, direct = both(urls, run)
    assert gw == direct == ("57014", ("alive",))


def test_listen_notify_both_ways(urls):
    for listener_url, notifier_url in (
        (urls["gateway"], urls["direct"]),
        (urls["direct"], urls["gateway"]),
    ):
        with psycopg.connect(listener_url, autocommit=True) as listener, psycopg.connect(
            notifier_url, autocommit=True
        ) as notifier:
            listener.execute("LISTEN drv_channel")
            notifier.execute("SELECT pg_notify('drv_channel', 'payload ✓')")
            got = list(listener.notifies(timeout=5, stop_after=1))
            assert [(n.channel, n.payload) for n in got] == [("drv_channel", "payload ✓")]


def test_transactions(urls, make_table):
    def run(conn):
        table = tables.pop()
        states = []
        conn.autocommit = False
        conn.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'rolled back')")
        states.append(conn.info.transaction_status.name)
        conn.rollback()
        conn.execute(f"INSERT INTO {table} (id, name) VALUES (2, 'kept')")
        conn.commit()
        with pytest.raises(errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        states.append(conn.info.transaction_status.name)
        with pytest.raises(errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        states.append(conn.info.transaction_status.name)
        conn.autocommit = True
        return states, conn.execute(f"SELECT id, name FROM {table}").fetchall()

    tables = [make_table(), make_table()]
    gw, direct = both(urls, run)
    assert gw == direct
    assert gw == (["INTRANS", "INERROR", "IDLE"], [(2, "kept")])


def test_errors_match(urls):
    def run(conn):
        seen = []
        for sql in ("SELEC 1", "SELECT * FROM no_such_table_x", "SELECT 1/0", "SELECT 'x'::int"):
            try:
                conn.execute(sql)
            except psycopg.Error as e:
                seen.append((e.sqlstate, e.diag.message_primary, e.diag.severity))
        return seen

    gw, direct = both(urls, run)
    assert [s[0] for s in direct] == ["42601", "42P01", "22012", "22P02"]
    assert [(s[0], s[2]) for s in gw] == [(s[0], s[2]) for s in direct]
    # The gateway answers what it cannot parse itself; its message must still carry the
    # server's wording. Errors raised by the server pass through unchanged.
    assert gw[0][1].startswith("drawbridge:") or gw[0][1] == direct[0][1], gw[0]
    assert gw[0][1].endswith(direct[0][1]), (gw[0], direct[0])
    assert gw[1:] == direct[1:]


def test_parameter_status_and_identity(urls):
    keys = ("server_version", "server_encoding", "client_encoding", "DateStyle",
            "integer_datetimes", "standard_conforming_strings", "TimeZone")

    def run(conn):
        params = {k: conn.info.parameter_status(k) for k in keys}
        ident = conn.execute("SELECT current_user, current_database()").fetchone()
        return params, ident

    gw, direct = both(urls, run)
    assert gw == direct


@pytest.mark.gateway_only
@pytest.mark.parametrize("prepare", [False, True])
def test_refused_statement_keeps_session(urls, make_table, admin, prepare):
    table = make_table(rows=sample_rows(5))
    with psycopg.connect(urls["gateway"], autocommit=True) as conn:
        for sql in (f"TRUNCATE {table}", f"DELETE FROM {table}", f"DROP TABLE {table}"):
            with pytest.raises(errors.InsufficientPrivilege) as info:
                conn.execute(sql, prepare=prepare)
            assert info.value.sqlstate == "42501"
            assert info.value.diag.message_primary.startswith("drawbridge:"), info.value
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (5,)
    assert admin.execute(f"SELECT count(*) FROM {table}").fetchone() == (5,)


@pytest.mark.gateway_only
def test_prepared_statement_names_are_one_namespace(urls, make_table, admin):
    """SQL PREPARE and protocol Parse name statements in one namespace at the target, and a
    PREPARE or DEALLOCATE may fail there: the gateway must judge whatever body may run."""
    from psycopg.pq import ExecStatus

    table = make_table(rows=sample_rows(150))  # over the demo policy's row limit of 100
    wipe = f"UPDATE {table} SET name = 'wiped' WHERE true".encode()

    def refused(res):
        return res.status == ExecStatus.FATAL_ERROR and b"drawbridge" in res.error_message

    with psycopg.connect(urls["gateway"], autocommit=True) as conn:
        pg = conn.pgconn
        # A PREPARE the target rejects, then a Parse of the name with other text: refused, as
        # the gateway cannot tell whether the target holds the name.
        assert pg.exec_(b"PREPARE a AS SELECT * FROM no_such_table").status == ExecStatus.FATAL_ERROR
        assert refused(pg.prepare(b"a", wipe))
        # A Parse, then EXECUTE of its name: judged as the Parse's body.
        assert pg.prepare(b"b", wipe).status == ExecStatus.COMMAND_OK
        assert refused(pg.exec_(b"EXECUTE b"))
        # Parse, DEALLOCATE, PREPARE with other text: neither Bind nor EXECUTE escapes the limit.
        assert pg.prepare(b"c", b"SELECT 1").status == ExecStatus.COMMAND_OK
        assert pg.exec_(b"DEALLOCATE c").status == ExecStatus.COMMAND_OK
        assert pg.exec_(b"PREPARE c AS " + wipe).status == ExecStatus.COMMAND_OK
        assert refused(pg.exec_prepared(b"c", []))
        assert refused(pg.exec_(b"EXECUTE c"))
        # A DEALLOCATE that never ran (its message failed first) frees nothing: a Parse of the
        # name with other text is refused, and Bind still judges the first body.
        assert pg.prepare(b"e", wipe).status == ExecStatus.COMMAND_OK
        assert pg.exec_(b"SELECT 1/0; DEALLOCATE e").status == ExecStatus.FATAL_ERROR
        assert refused(pg.prepare(b"e", b"SELECT 1"))
        assert refused(pg.exec_prepared(b"e", []))
        # The unnamed statement: a Parse skipped after an error leaves the older statement
        # there, so a Bind in a later batch must not be judged as the skipped text.
        assert pg.prepare(b"boom", b"SELECT 1/0").status == ExecStatus.COMMAND_OK
        assert pg.prepare(b"", wipe).status == ExecStatus.COMMAND_OK
        pg.nonblocking = 0
        pg.enter_pipeline_mode()
        pg.send_query_prepared(b"boom", None)
        pg.send_prepare(b"", b"SELECT 1")
        pg.pipeline_sync()
        statuses = [r.status for r in pipeline_results(pg, syncs=1)]
        pg.exit_pipeline_mode()
        assert ExecStatus.FATAL_ERROR in statuses
        assert refused(pg.exec_prepared(b"", []))
        assert pg.prepare(b"", b"SELECT 3").status == ExecStatus.COMMAND_OK
        res = pg.exec_prepared(b"", [])
        assert res.get_value(0, 0) == b"3", res.error_message
        # The same text may be prepared again under its name.
        assert pg.prepare(b"f", b"SELECT 2").status == ExecStatus.COMMAND_OK
        assert pg.exec_(b"DEALLOCATE f").status == ExecStatus.COMMAND_OK
        assert pg.prepare(b"f", b"SELECT 2").status == ExecStatus.COMMAND_OK
        assert pg.exec_prepared(b"f", []).get_value(0, 0) == b"2"
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert admin.execute(f"SELECT count(*) FILTER (WHERE name = 'wiped') FROM {table}").fetchone() == (0,)


def pipeline_results(pg, syncs):
    """Flushes a libpq pipeline and reads results through its `syncs`-th Sync."""
    from psycopg.pq import ExecStatus

    pg.flush()
    results = []
    while syncs:
        res = pg.get_result()
        if res is None:
            continue
        results.append(res)
        if res.status == ExecStatus.PIPELINE_SYNC:
            syncs -= 1
    return results


@pytest.mark.gateway_only
def test_freed_statement_names_can_be_prepared_again(urls, make_table, admin):
    """Once the target has answered a Close or DEALLOCATE without an error, its name is free
    for other text; a Close skipped after an error frees nothing."""
    from psycopg.pq import ExecStatus

    table = make_table(rows=sample_rows(150))  # over the demo policy's row limit of 100
    wipe = f"UPDATE {table} SET name = 'wiped' WHERE true".encode()
    ok = ExecStatus.COMMAND_OK

    def refused(res):
        return res.status == ExecStatus.FATAL_ERROR and b"drawbridge" in res.error_message

    def value(res):
        assert res.status == ExecStatus.TUPLES_OK, res.error_message
        return res.get_value(0, 0)

    with psycopg.connect(urls["gateway"], autocommit=True) as conn:
        pg = conn.pgconn
        # Protocol Close, SQL DEALLOCATE, DEALLOCATE ALL.
        assert pg.prepare(b"g", b"SELECT 1").status == ok
        assert pg.close_prepared(b"g").status == ok
        assert pg.prepare(b"g", b"SELECT 2").status == ok
        assert value(pg.exec_prepared(b"g", [])) == b"2"
        assert pg.exec_(b"DEALLOCATE g").status == ok
        assert pg.prepare(b"g", b"SELECT 3").status == ok
        assert value(pg.exec_prepared(b"g", [])) == b"3"
        assert pg.exec_(b"DEALLOCATE ALL").status == ok
        assert pg.exec_(b"PREPARE g AS SELECT 4").status == ok
        assert value(pg.exec_(b"EXECUTE g")) == b"4"
        assert pg.exec_(b"DEALLOCATE g").status == ok
        # A driver that names statements by counter, closing old ones, never runs out.
        for i in range(50):
            name = f"auto_{i % 5}".encode()
            assert pg.prepare(name, f"SELECT {i}".encode()).status == ok
            assert value(pg.exec_prepared(name, [])) == str(i).encode()
            assert pg.close_prepared(name).status == ok

        # A Close after an error in its batch is skipped: the name keeps its first body.
        assert pg.prepare(b"boom", b"SELECT 1/0").status == ok
        assert pg.prepare(b"w", wipe).status == ok
        pg.nonblocking = 0
        pg.enter_pipeline_mode()
        pg.send_query_prepared(b"boom", None)
        pg.send_close_prepared(b"w")
        pg.pipeline_sync()
        # A Close not yet answered frees nothing either.
        pg.send_close_prepared(b"boom")
        pg.send_prepare(b"boom", b"SELECT 5")
        pg.pipeline_sync()
        results = pipeline_results(pg, syncs=2)
        pg.exit_pipeline_mode()
        assert results[0].status == ExecStatus.FATAL_ERROR and b"division by zero" in results[0].error_message
        assert any(refused(r) for r in results), [r.status for r in results]
        assert refused(pg.prepare(b"w", b"SELECT 1"))
        assert refused(pg.exec_prepared(b"w", []))
        # The refusal failed the second batch too, so its Close counts as skipped; a Close on
        # its own frees the name.
        assert refused(pg.prepare(b"boom", b"SELECT 6"))
        assert pg.close_prepared(b"boom").status == ok
        assert pg.prepare(b"boom", b"SELECT 6").status == ok
        assert value(pg.exec_prepared(b"boom", [])) == b"6"
    assert admin.execute(f"SELECT count(*) FILTER (WHERE name = 'wiped') FROM {table}").fetchone() == (0,)


@pytest.mark.gateway_only
@pytest.mark.parametrize("sync_between", [True, False])
def test_settings_change_is_seen_before_pipelined_sql(urls, make_table, admin, sync_between):
    """With standard_conforming_strings off the target reads \\' as a quote; text sent right
    behind the SET must not be judged as if the setting were still on."""
    from psycopg.pq import ExecStatus

    table = make_table(rows=sample_rows(3))
    sneaky = f"SELECT 'a\\' , ' ; DROP TABLE {table}; -- '".encode()
    with psycopg.connect(urls["gateway"], autocommit=True) as conn:
        pg = conn.pgconn
        pg.nonblocking = 0
        pg.enter_pipeline_mode()
        pg.send_query_params(b"SET standard_conforming_strings = off", None)
        if sync_between:
            pg.pipeline_sync()
        pg.send_query_params(sneaky, None)
        pg.pipeline_sync()
        results = pipeline_results(pg, syncs=2 if sync_between else 1)
        errors_ = [r.error_message for r in results if r.status == ExecStatus.FATAL_ERROR]
        assert errors_ and b"drawbridge" in errors_[-1], [r.status for r in results]
    assert admin.execute(f"SELECT count(*) FROM {table}").fetchone() == (3,)


@pytest.mark.gateway_only
@pytest.mark.parametrize("sql", [
    "SET standard_conforming_strings = off",
    "SET LOCAL standard_conforming_strings TO false",
    "SELECT set_config('standard_conforming_strings', 'off', false)",
    "SET NAMES 'SJIS'",
    "SET client_encoding = 'big5'",
])
def test_settings_the_gateway_cannot_read_under_are_refused_up_front(urls, sql):
    """Refused before it runs, so the session keeps reading SQL as before and stays usable."""
    with psycopg.connect(urls["gateway"], autocommit=True) as conn:
        with pytest.raises(errors.FeatureNotSupported, match="drawbridge"):
            conn.execute(sql)
        assert conn.execute("SHOW standard_conforming_strings").fetchone() == ("on",)
        assert conn.execute("SHOW client_encoding").fetchone() == ("UTF8",)
        assert conn.execute("SELECT 'a\\b'").fetchone() == ("a\\b",)
        conn.execute("SET standard_conforming_strings = on")
        conn.execute("SET client_encoding = 'LATIN1'")
        assert conn.execute("SHOW client_encoding").fetchone() == ("LATIN1",)


@pytest.mark.gateway_only
def test_refused_inside_transaction_then_rollback(urls, make_table, admin):
    table = make_table(rows=sample_rows(3))
    with psycopg.connect(urls["gateway"]) as conn:
        conn.execute(f"UPDATE {table} SET name = 'changed' WHERE id = 1")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"TRUNCATE {table}")
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert admin.execute(f"SELECT count(*), count(*) FILTER (WHERE name = 'changed') FROM {table}").fetchone() == (3, 0)
