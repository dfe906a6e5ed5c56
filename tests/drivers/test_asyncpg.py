"""asyncpg: the same operations through the gateway and directly give the same results."""

import asyncio
import io

import asyncpg
import pytest

from conftest import sample_rows


def both(urls, fn):
    """Run the coroutine fn(conn) on a gateway and a direct connection; return both results."""

    async def side(url):
        conn = await asyncpg.connect(url)
        try:
            return await fn(conn)
        finally:
            await conn.close()

    async def run():
        return await side(urls["gateway"]), await side(urls["direct"])

    return asyncio.run(run())


def plain(records):
    return [tuple(r.items()) for r in records]


def test_fetch(urls, make_table):
    table = make_table(rows=sample_rows(30))

    async def run(conn):
        typed = await conn.fetch(
            "SELECT 1::int2 a, 2::int8 b, 'x'::varchar c, NULL::int d, 2.5::numeric e, "
            "'{\"k\": 1}'::json f, '2024-05-06'::date g, ARRAY['a', NULL] h, '\\x00ff'::bytea i"
        )
        rows = await conn.fetch(f"SELECT * FROM {table} WHERE id > $1 ORDER BY id", 10)
        val = await conn.fetchval("SELECT count(*) FROM generate_series(1, $1::int)", 123)
        return plain(typed), plain(rows), val

    gw, direct = both(urls, run)
    assert gw == direct
    assert len(gw[1]) == 20 and gw[2] == 123


def test_prepared_statement(urls):
    async def run(conn):
        stmt = await conn.prepare("SELECT $1::int + $2::int AS total, $3::text AS label")
        attrs = [(a.name, a.type.name) for a in stmt.get_attributes()]
        params = [t.name for t in stmt.get_parameters()]
        results = [tuple(await stmt.fetchrow(i, i * 10, f"r{i}")) for i in range(10)]
        return attrs, params, results

    gw, direct = both(urls, run)
    assert gw == direct
    assert gw[2][3] == (33, "r3")


def test_copy_records_to_table(urls, make_table, admin):
    tables = {side: make_table() for side in urls}
    rows = [(i, f"n{i}", i * 0.5, bytes([i % 256])) for i in range(1, 501)]

    async def side_copy(url, table):
        conn = await asyncpg.connect(url)
        try:
            return await conn.copy_records_to_table(
                table, records=rows, columns=["id", "name", "score", "data"]
            )
        finally:
            await conn.close()

    async def run():
        return [await side_copy(urls[s], tables[s]) for s in urls]

    statuses = asyncio.run(run())
    assert statuses == ["COPY 500", "COPY 500"]
    contents = [admin.execute(f"SELECT * FROM {tables[s]} ORDER BY id").fetchall() for s in urls]
    assert contents[0] == contents[1] and len(contents[0]) == 500


def test_copy_from_query(urls, make_table):
    table = make_table(rows=sample_rows(100))

    async def run(conn):
        out = []
        for fmt in ("text", "binary"):
            buf = io.BytesIO()
            status = await conn.copy_from_query(
                f"SELECT * FROM {table} WHERE id <= $1 ORDER BY id", 60, output=buf, format=fmt
            )
            out.append((status, buf.getvalue()))
        return out

    gw, direct = both(urls, run)
    assert gw == direct
    assert gw[0][0] == "COPY 60"


def test_cancel_via_timeout(urls):
    async def run(conn):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(asyncio.TimeoutError):
            await conn.fetch("SELECT pg_sleep(20)", timeout=0.5)
        elapsed = loop.time() - started
        assert elapsed < 10
        # The server-side statement must have been cancelled for this to answer promptly.
        return await asyncio.wait_for(conn.fetchval("SELECT 'alive'"), 10)

    gw, direct = both(urls, run)
    assert gw == direct == "alive"


def test_transaction_and_errors(urls, make_table):
    tables = [make_table(), make_table()]

    async def run(conn):
        table = tables.pop()
        try:
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
                await conn.execute("SELECT 1/0")
        except asyncpg.DivisionByZeroError as e:
            err = (e.sqlstate, str(e))
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {table} (id) VALUES (2)")
        return err, [r["id"] for r in await conn.fetch(f"SELECT id FROM {table}")]

    gw, direct = both(urls, run)
    assert gw == direct == (("22012", "division by zero"), [2])


@pytest.mark.gateway_only
def test_refused_statement(urls, make_table, admin):
    table = make_table(rows=sample_rows(4))

    async def run():
        conn = await asyncpg.connect(urls["gateway"])
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError) as info:
                await conn.execute(f"TRUNCATE {table}")
            assert info.value.sqlstate == "42501"
            assert str(info.value).startswith("drawbridge:"), str(info.value)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(f"DELETE FROM {table} RETURNING id")
            return await conn.fetchval(f"SELECT count(*) FROM {table}")
        finally:
            await conn.close()

    assert asyncio.run(run()) == 4
    assert admin.execute(f"SELECT count(*) FROM {table}").fetchone() == (4,)
