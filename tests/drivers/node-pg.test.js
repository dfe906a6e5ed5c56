// node-postgres: the same operations through the gateway and directly give the same results.
// Reads GATEWAY_URL, DIRECT_URL and ADMIN_URL like the Python tests (see conftest.py).
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { pipeline } = require('node:stream/promises');
const { Readable, Writable } = require('node:stream');
const { Client } = require('pg');
const Cursor = require('pg-cursor');
const copyStreams = require('pg-copy-streams');

const DIRECT_URL = process.env.DIRECT_URL;
const ADMIN_URL = process.env.ADMIN_URL;
const GATEWAY_URL = process.env.GATEWAY_URL;
if (!DIRECT_URL || !ADMIN_URL) {
  throw new Error('set DIRECT_URL and ADMIN_URL (scripts/test does this)');
}
const URLS = { gateway: GATEWAY_URL || DIRECT_URL, direct: DIRECT_URL };
const gatewayOnly = GATEWAY_URL ? {} : { skip: 'GATEWAY_URL not set' };

let admin;
const created = [];

before(async () => {
  admin = new Client({ connectionString: ADMIN_URL });
  await admin.connect();
});

after(async () => {
  for (const t of created) await admin.query(`DROP TABLE IF EXISTS ${t}`);
  await admin.end();
});

async function makeTable(rows = 0) {
  const name = `drv_node_${crypto.randomBytes(4).toString('hex')}`;
  const role = new URL(DIRECT_URL).username;
  await admin.query(`CREATE TABLE ${name} (id int PRIMARY KEY, name text, score numeric)`);
  await admin.query(`ALTER TABLE ${name} OWNER TO "${decodeURIComponent(role)}"`);
  if (rows > 0) {
    await admin.query(
      `INSERT INTO ${name} SELECT g, 'row-' || g || '-é', g * 1.5 FROM generate_series(1, $1::int) g`,
      [rows],
    );
  }
  created.push(name);
  return name;
}

// Run fn(client) on a gateway and a direct connection; return [gateway, direct].
// Error events after end() are checked by their own test, not by every comparison.
async function both(fn) {
  const out = [];
  for (const url of [URLS.gateway, URLS.direct]) {
    const client = new Client({ connectionString: url });
    client.on('error', () => {});
    await client.connect();
    try {
      out.push(await fn(client));
    } finally {
      await client.end();
    }
  }
  return out;
}

test('a clean disconnect raises no error', async () => {
  for (const [side, url] of Object.entries(URLS)) {
    const errors = [];
    const client = new Client({ connectionString: url });
    client.on('error', (e) => errors.push(`${e.code} ${e.message}`));
    await client.connect();
    await client.query('SELECT 1');
    await client.end();
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(errors, [], `${side}: error event after end()`);
  }
});

const fields = (res) => res.fields.map((f) => [f.name, f.dataTypeID, f.format]);

test('simple queries match', async () => {
  const table = await makeTable(40);
  const [gw, direct] = await both(async (c) => {
    const typed = await c.query(
      "SELECT 1 AS a, 'x' AS b, NULL::int AS c, 2.5::numeric AS d, '{1,2}'::int[] AS e, " +
        "'\\x01ff'::bytea AS f, '{\"k\": true}'::jsonb AS g, '2024-01-02'::date::text AS h",
    );
    const rows = await c.query(`SELECT * FROM ${table} ORDER BY id`);
    const multi = await c.query('SELECT 1 AS one; SELECT 2 AS two');
    return [fields(typed), typed.rows, rows.rows, rows.rowCount, multi.map((r) => r.rows)];
  });
  assert.deepEqual(gw, direct);
  assert.equal(gw[3], 40);
});

test('parameterised queries match', async () => {
  const table = await makeTable(40);
  const [gw, direct] = await both(async (c) => {
    const res = await c.query(`SELECT id, name FROM ${table} WHERE id = ANY($1) OR name = $2 ORDER BY id`, [
      [3, 4, 99],
      'row-10-é',
    ]);
    return [fields(res), res.rows];
  });
  assert.deepEqual(gw, direct);
  assert.deepEqual(gw[1].map((r) => r.id), [3, 4, 10]);
});

test('named prepared statements match', async () => {
  const [gw, direct] = await both(async (c) => {
    const results = [];
    for (let i = 0; i < 6; i++) {
      const res = await c.query({ name: 'double_it', text: 'SELECT $1::int * 2 AS v', values: [i] });
      results.push(res.rows[0].v);
    }
    const prepared = await c.query("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = 'double_it'");
    return [results, prepared.rows[0].n];
  });
  assert.deepEqual(gw, direct);
  assert.deepEqual(gw, [[0, 2, 4, 6, 8, 10], 1]);
});

test('binary results match', async () => {
  const [gw, direct] = await both(async (c) => {
    const res = await c.query({ text: 'SELECT 42::int4 AS i, $1::text AS t, 1.5::float8 AS f', values: ['b'], binary: true });
    return [fields(res), res.rows];
  });
  assert.deepEqual(gw, direct);
  assert.equal(gw[0][0][2], 'binary');
});

test('errors match and the session survives', async () => {
  const [gw, direct] = await both(async (c) => {
    const seen = [];
    for (const sql of ['SELEC 1', 'SELECT * FROM no_such_table_node', 'SELECT 1/0']) {
      try {
        await c.query(sql);
      } catch (e) {
        seen.push([e.code, e.message, e.severity]);
      }
    }
    seen.push((await c.query('SELECT 1 AS ok')).rows);
    return seen;
  });
  assert.deepEqual(direct.slice(0, 3).map((e) => e[0]), ['42601', '42P01', '22012']);
  // The gateway answers what it cannot parse itself, keeping the SQLSTATE and the server's
  // wording; errors raised by the server pass through unchanged.
  assert.deepEqual([gw[0][0], gw[0][2]], [direct[0][0], direct[0][2]]);
  assert.ok(gw[0][1].endsWith(direct[0][1]), gw[0][1]);
  assert.deepEqual(gw.slice(1), direct.slice(1));
});

test('cursor reads in batches', async () => {
  const table = await makeTable(500);
  const [gw, direct] = await both(async (c) => {
    const cursor = c.query(new Cursor(`SELECT * FROM ${table} ORDER BY id`));
    const batches = [];
    for (;;) {
      const rows = await cursor.read(64);
      if (rows.length === 0) break;
      batches.push(rows);
    }
    await cursor.close();
    return batches;
  });
  assert.deepEqual(gw, direct);
  assert.equal(gw.flat().length, 500);
});

test('COPY out and in', async () => {
  const source = await makeTable(300);
  const targets = [await makeTable(), await makeTable()];
  const [gw, direct] = await both(async (c) => {
    const chunks = [];
    await pipeline(
      c.query(copyStreams.to(`COPY (SELECT * FROM ${source} ORDER BY id) TO STDOUT`)),
      new Writable({
        write(chunk, _enc, cb) {
          chunks.push(chunk);
          cb();
        },
      }),
    );
    const data = Buffer.concat(chunks);
    const target = targets.shift();
    const ingest = c.query(copyStreams.from(`COPY ${target} FROM STDIN`));
    await pipeline(Readable.from([data]), ingest);
    return [data.toString('utf8'), ingest.rowCount, target];
  });
  assert.equal(gw[0], direct[0]);
  assert.equal(gw[1], 300);
  assert.equal(direct[1], 300);
  const copied = await Promise.all(
    [gw[2], direct[2]].map((t) => admin.query(`SELECT * FROM ${t} ORDER BY id`).then((r) => r.rows)),
  );
  assert.deepEqual(copied[0], copied[1]);
});

test('refused statements raise 42501 and the session stays usable', gatewayOnly, async () => {
  const table = await makeTable(5);
  const client = new Client({ connectionString: URLS.gateway });
  client.on('error', () => {});
  await client.connect();
  try {
    for (const q of [`TRUNCATE ${table}`, { text: `DELETE FROM ${table}`, values: [] }, { name: 'drop_it', text: `DROP TABLE ${table}` }]) {
      await assert.rejects(client.query(q), (e) => {
        assert.equal(e.code, '42501');
        assert.ok(e.message.startsWith('drawbridge:'), e.message);
        return true;
      });
      const res = await client.query(`SELECT count(*)::int AS n FROM ${table}`);
      assert.equal(res.rows[0].n, 5);
    }
  } finally {
    await client.end();
  }
  const res = await admin.query(`SELECT count(*)::int AS n FROM ${table}`);
  assert.equal(res.rows[0].n, 5);
});
