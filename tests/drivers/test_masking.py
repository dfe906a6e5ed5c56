"""Inline masking, end to end: a real gateway with mask rules, real PostgreSQL, psycopg and
asyncpg as the agent, every result compared with what the same query returns directly.

For each case three things must hold:
  1. no sensitive value of the seeded rows, nor a simple transform of it (upper, lower,
     reversed, base64, hex, md5, any 8-character piece, the digits of a card or phone) appears
     in any returned cell;
  2. columns that do not derive from a sensitive column equal the direct result exactly, and
     the sensitive ones have the form their rule's strategy gives;
  3. the session still works afterwards.

The module starts its own throwaway PostgreSQL (`drawbridge demo --no-script`) and its own
`drawbridge serve` with a policy of mask rules, two agents (`agent` is masked, `trusted` is not)
and the audit log on. It needs no URLs from the environment. Binary: target/release/drawbridge
or $DRAWBRIDGE_BIN.

Standalone: `python3 -m pytest --noconftest tests/drivers/test_masking.py`.
"""

import asyncio
import base64
import hashlib
import io
import json
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg
import psycopg
import pytest

from gateway_process import BINARY, config_table, free_port, run, stop

HERE = Path(__file__).resolve().parent

PLACEHOLDER = "[REDACTED]"
HASH16 = re.compile(r"^[0-9a-f]{16}$")

# Every rule matches the agent `agent` only: `trusted` is the contrast that sees raw values.
POLICY = """\
version: 1
include: [{pack: production}]
rules:
  - name: mask-email
    effect: mask
    match: { agents: ["agent"] }
    mask: { columns: ["public.people.email"], strategy: redact }
  - name: mask-phone
    effect: mask
    match: { agents: ["agent"] }
    mask: { columns: ["people.phone"], strategy: "null" }
  - name: mask-card
    effect: mask
    match: { agents: ["agent"] }
    mask: { columns: ["people.card"], type: card, strategy: partial, keep: 4 }
  - name: mask-ssn
    effect: mask
    match: { agents: ["agent"] }
    mask: { columns: ["ssn"], strategy: hash, hash_length: 16 }
  - name: scan-notes
    effect: mask
    match: { agents: ["agent"] }
    mask: { columns: ["people.notes"], scan: true }
"""
MASKING_TOML = '[masking]\nkey_file = "mask.key"\n'

# ---------------------------------------------------------------------------------------------
# The corpus. Cards pass Luhn with real issuer prefixes, SSN areas are neither 000, 666 nor 9xx.
# Names and prose share no 8-character piece with any sensitive value (test_corpus_is_clean).

SHARED_SSN = "372-41-5096"

# (id, name, email, phone, card, ssn, born)
PEOPLE = [
    (1, "Alice Martin", "alice.martin@example.com", "+1 415-555-0132", "4111111111111111", "123-45-6789", "1984-03-12"),
    (2, "Bruno Costa", "b.costa@mail.example.org", "(212) 555-0187", "5555-5555-5555-4444", "234-56-7891", "1979-11-02"),
    (3, "Chen Wei", "chen.wei@example.net", "+44 20 7946 0958", "378282246310005", "345-67-8912", "1991-06-30"),
    (4, "Dana Fox", "dana_fox@example.com", "312.555.0199", "4012 8888 8888 1881", "456-78-9123", "1988-01-17"),
    (5, "Emil Berg", "emil.berg+news@example.org", "+49 30 901820", "5105105105105100", "512-34-5678", "1969-09-09"),
    (6, "Fatima Zahra", "f.zahra@mail.example.net", "+1 646-555-0143", "6011111111111117", "523-45-6781", "2000-02-29"),
    (7, "Gita Rao", "gita.rao@example.com", "(415) 555-0170", "3530111333300000", SHARED_SSN, "1995-12-24"),
    (8, "Hugo Lenz", "hugo.lenz@example.org", "+33 1 70 36 42 11", "4242 4242 4242 4242", "545-67-8123", "1983-07-04"),
    (9, "Ines Duarte", "ines.d@example.net", "718-555-0121", "5200828282828210", "556-78-1234", "1976-04-19"),
    (10, "Jonas Weber", "jonas.w@mail.example.com", "+1 202-555-0165", "6011-0009-9013-9424", "567-81-2345", "1990-10-10"),
    (11, "Kira Ivanova", "kira.iv@example.org", "+7 495 739 2210", "371449635398431", "578-12-3456", "1987-08-21"),
    (12, "Liam Byrne", "liam.byrne@example.net", "(617) 555-0148", "4000056655665556", "589-23-4567", "1972-05-05"),
    (13, "Maya Cohen", "maya.cohen@example.com", "+972 3 555 0199", "2223003122003222", "601-34-5678", "1999-03-03"),
    (14, "Nils Dahl", "nils.dahl@example.org", "+46 8 555 011 22", "3566002020360505", "612-45-6789", "1981-11-11"),
    (15, "Omar Haddad", "omar.h@mail.example.org", "503-555-0110", "5431111111111111", "623-56-7891", "1993-01-28"),
    (16, "Priya Nair", "priya.nair@example.net", "+91 22 5555 0101", "4917 6100 0000 0000", "634-67-8912", "1986-09-15"),
    (17, "Quinn Ross", "quinn.ross@example.com", "(303) 555-0177", "6011000400000000", "645-78-9123", "1968-12-01"),
    (18, "Rosa Vidal", "rosa.vidal@example.org", "+34 91 555 0102", "5105-1051-0510-5100", "667-91-2345", "1997-07-07"),
    (19, "Sven Olsen", None, None, None, None, "1975-02-14"),
    (20, "Tara Singh", "tara.singh@example.net", "+1 312-555-0156", "4111 1111 1111 1111", SHARED_SSN, "1989-06-06"),
]

# Notes with an email and a card inside prose, as (id, before, email, middle, card, after);
# rows not listed get prose without sensitive values or NULL.
EMBEDDED = [
    (1, "Asked us to send invoices to ", "billing.am@example.net", " from now on; the card ", "4111 1111 1111 1111", " stays on file."),
    (3, "Prefers contact via ", "wei.chen.work@example.org", " and pays with ", "5555555555554444", " each quarter."),
    (6, "Wrote from ", "fz.personal@example.com", ", wants the card ", "3782-822463-10005", " removed."),
    (10, "Forwarded a receipt: reply to ", "receipts@jonas-w.example", ", paid by ", "4012888888881881", " in full."),
    (14, "Second address ", "nils.d@alt.example.net", "; backup card ", "6011 1111 1111 1117", " on record."),
]
PLAIN_NOTES = {
    2: "Regular customer, no remarks.",
    4: "Called about delivery times.",
    5: "Likes the quarterly newsletter.",
    8: "Visited the shop in person.",
    12: "Asked for a paper invoice.",
    16: "Returned one item, refund done.",
}


def notes_of(pid):
    for eid, before, email, middle, card, after in EMBEDDED:
        if eid == pid:
            return f"{before}{email}{middle}{card}{after}"
    return PLAIN_NOTES.get(pid)


# The check each `people` column gets when selected as is, in table order:
# id, name, email, phone, card, ssn, notes, born.
PEOPLE_KINDS = ["plain", "plain", "redact", "null", "partial", "hash", "scan", "plain"]

STAFF = [(1, "ops.lead@corp.test"), (2, "dba.oncall@corp.test"), (3, "sec.review@corp.test")]
# `ssn` without a table: the bare glob of mask-ssn covers this table's column too.
CONTRACTORS = [(1, SHARED_SSN), (2, "123-45-6789"), (3, "701-22-3344")]


def sensitive_values():
    """Every raw value the agent must never see, with whether its digits count as a value."""
    out = []
    for _, _, email, phone, card, ssn, _ in PEOPLE:
        out += [(email, False), (phone, True), (card, True), (ssn, False)]
    for _, _, email, _, card, _ in EMBEDDED:
        out += [(email, False), (card, True)]
    out += [(ssn, False) for _, ssn in CONTRACTORS]
    return [(v, digits) for v, digits in out if v]


def pieces(s, n=8, step=1):
    return {s[i:i + n] for i in range(0, max(len(s) - n + 1, 1), step)}


def build_needles(piecewise=True, encodings=True):
    """(case-insensitive needles, case-sensitive needles), each a dict needle -> what it is."""
    folded, exact = {}, {}
    for v, digits in sensitive_values():
        forms = {v: "value", v.upper(): "upper", v.lower(): "lower", v[::-1]: "reversed"}
        if digits:
            d = re.sub(r"\D", "", v)
            forms[d] = "digits"
            if piecewise:
                forms.update({p: "digits piece" for p in pieces(d)})
        if piecewise:
            forms.update({p: "8-char piece" for p in pieces(v)})
            forms.update({p: "reversed piece" for p in pieces(v[::-1])})
        if encodings:
            raw = v.encode()
            forms[raw.hex()] = "hex"
            forms[hashlib.md5(raw).hexdigest()] = "md5"
            b64 = base64.b64encode(raw).decode()
            exact[b64.rstrip("=")] = f"base64 of {v!r}"
            if piecewise:
                # Aligned pieces survive in any base64 text that encodes v from the same offset.
                exact.update({p: f"base64 piece of {v!r}" for p in pieces(b64.rstrip("="), 8, 4)})
                forms.update({p: "hex piece" for p in pieces(raw.hex(), 16, 2)})
        for needle, what in forms.items():
            if len(needle) >= 4:
                folded[needle.lower()] = f"{what} of {v!r}"
    return folded, exact


NEEDLES = build_needles()


def render(value, out):
    """Appends every textual rendering of a returned cell to out."""
    if value is None:
        return
    if isinstance(value, (bytes, bytearray, memoryview)):
        b = bytes(value)
        out.append(b.hex())
        out.append(b.decode("latin-1"))
    elif isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            render(k, out)
            render(v, out)
    elif isinstance(value, (list, tuple)) or type(value).__name__ == "Record":
        for v in value:
            render(v, out)
    else:
        out.append(str(value))


def leaks(cells, needles=NEEDLES):
    texts = []
    for cell in cells:
        render(cell, texts)
    hay = "\x00".join(texts)
    folded = hay.lower()
    found = [f"{n!r} ({what})" for n, what in needles[0].items() if n in folded]
    found += [f"{n!r} ({what})" for n, what in needles[1].items() if n in hay]
    return found


def assert_no_leak(rows, needles=NEEDLES):
    cells = [c for row in rows for c in row]
    found = leaks(cells, needles)
    assert not found, f"sensitive values in the results: {found[:10]}"


# ---------------------------------------------------------------------------------------------
# Checks of one masked column


def scan_ok(got, raw):
    """The prose of `raw` kept in order, the embedded email and card gone."""
    embedded = [s for _, _, e, _, c, _ in EMBEDDED for s in (e, c)]
    prose = [p for p in re.split("|".join(map(re.escape, embedded)), raw) if p]
    if len(prose) == 1 and prose[0] == raw:
        return got == raw
    if not isinstance(got, str):
        return False
    pos = 0
    for p in prose:
        pos = got.find(p, pos)
        if pos < 0:
            return False
        pos += len(p)
    return got.startswith(prose[0]) if raw.startswith(prose[0]) else True


def whole_ok(got, raw):
    """A value derived from a sensitive column, masked as a whole."""
    if got is None:
        return True
    if raw is None:
        return True
    if got == raw:
        return False
    if isinstance(got, str):
        # A JSON string placeholder; a partial mask is accepted for a relabelling cast (card::text).
        got = got[1:-1] if len(got) > 2 and got[0] == got[-1] == '"' else got
        return (got and PLACEHOLDER.startswith(got)) or bool(HASH16.match(got)) or bool(
            re.fullmatch(r"\*+.{0,4}", got, re.S))
    return True


def check_cell(kind, got, raw):
    """None when the gateway's `got` is right for `kind`, else what is wrong."""
    if kind == "plain":
        ok = got == raw
    elif kind == "redact":
        ok = got == PLACEHOLDER or (raw is None and got is None)
    elif kind == "null":
        ok = got is None
    elif kind == "partial":
        ok = got is None if raw is None else got == "*" * (len(raw) - 4) + raw[-4:]
    elif kind == "hash":
        ok = got is None if raw is None else isinstance(got, str) and bool(HASH16.match(got))
    elif kind == "hash_or_null":
        ok = got is None or (isinstance(got, str) and bool(HASH16.match(got)))
    elif kind == "scan":
        ok = got is None if raw is None else scan_ok(got, raw)
    elif kind == "whole":
        ok = whole_ok(got, raw)
    else:
        raise AssertionError(f"unknown check {kind}")
    return None if ok else f"{kind}: got {got!r}, direct {raw!r}"


def compare(kinds, got_rows, direct_rows, sort=False):
    got_rows, direct_rows = [tuple(r) for r in got_rows], [tuple(r) for r in direct_rows]
    assert len(got_rows) == len(direct_rows), (len(got_rows), len(direct_rows))
    if sort:
        # The first column is a plain id: both sides sort the same way.
        got_rows.sort(key=lambda r: r[0])
        direct_rows.sort(key=lambda r: r[0])
    problems = []
    for i, (g, d) in enumerate(zip(got_rows, direct_rows)):
        assert len(g) == len(d) == len(kinds), (g, d, kinds)
        for col, (kind, gv, dv) in enumerate(zip(kinds, g, d)):
            p = check_cell(kind, gv, dv)
            if p:
                problems.append(f"row {i} col {col}: {p}")
    assert not problems, "\n".join(problems[:15])
    assert_no_leak(got_rows)


# ---------------------------------------------------------------------------------------------
# Harness


def _new_agent(name):
    out = run("agent", "new", name)
    assert out.returncode == 0, out.stderr
    secret = re.search(r"^secret: (\S+)$", out.stdout, re.M).group(1)
    return secret, out.stdout[out.stdout.index(f"[agents.{name}]"):].strip() + "\n"


class Database:
    """The demo's PostgreSQL, seeded with the corpus."""

    def __init__(self, workdir):
        self.dir = workdir
        self.log = open(workdir / "demo.log", "wb")
        env_file = workdir / "demo.env"
        self.proc = subprocess.Popen(
            [str(BINARY), "demo", "--no-script", "--no-color", "--port", str(free_port()),
             "--env-file", str(env_file)],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while not env_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"drawbridge demo did not start; see {workdir / 'demo.log'}")
            time.sleep(0.1)
        values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
        self.admin_url = values["ADMIN_URL"]
        self.direct_url = values["DIRECT_URL"]
        self.app_role = psycopg.conninfo.conninfo_to_dict(self.direct_url)["user"]
        self.target_table = config_table(Path(values["DRAWBRIDGE_CONFIG"]).read_text(), "targets.app")
        self.seed()

    def seed(self):
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute("DROP VIEW IF EXISTS people_v")
            admin.execute("DROP TABLE IF EXISTS people, staff, contractors")
            admin.execute(
                "CREATE TABLE people (id int PRIMARY KEY, name text, email text, phone text, "
                "card varchar(19), ssn text, notes text, born date)")
            admin.execute("CREATE TABLE staff (id int PRIMARY KEY, email text)")
            admin.execute("CREATE TABLE contractors (id int PRIMARY KEY, ssn text)")
            with admin.cursor() as cur:
                cur.executemany(
                    "INSERT INTO people VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [(i, n, e, p, c, s, notes_of(i), b) for i, n, e, p, c, s, b in PEOPLE])
                cur.executemany("INSERT INTO staff VALUES (%s, %s)", STAFF)
                cur.executemany("INSERT INTO contractors VALUES (%s, %s)", CONTRACTORS)
            admin.execute("CREATE VIEW people_v AS SELECT id, email AS contact FROM people")
            for rel in ("TABLE people", "TABLE staff", "TABLE contractors", "VIEW people_v"):
                admin.execute(f'ALTER {rel} OWNER TO "{self.app_role}"')

    def direct(self, **kw):
        return psycopg.connect(self.direct_url, autocommit=True, **kw)

    def admin(self):
        return psycopg.connect(self.admin_url, autocommit=True)

    def close(self):
        stop(self.proc)
        self.log.close()


class Gateway:
    """Our own `drawbridge serve` with the mask policy, in front of the seeded database."""

    def __init__(self, db, workdir, policy, masking_toml):
        self.db = db
        self.dir = workdir
        self.secrets = {}
        tables = []
        for name in ("agent", "trusted"):
            self.secrets[name], table = _new_agent(name)
            tables.append(table)
        self.port = free_port()
        (workdir / "policy.yaml").write_text(policy)
        self.config = workdir / "drawbridge.toml"
        self.config.write_text(
            f'[server]\nlisten = "127.0.0.1:{self.port}"\n\n'
            '[policy]\nfile = "policy.yaml"\n\n'
            f"{db.target_table}\n" + "\n".join(tables) + "\n"
            f"{masking_toml}\n"
            '[audit]\nsqlite_path = "audit.db"\n'
        )
        self.log = open(workdir / "serve.log", "ab")
        self.proc = subprocess.Popen(
            [str(BINARY), "serve", "--config", str(self.config)],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"drawbridge serve exited: {(workdir / 'serve.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"drawbridge serve did not listen; see {workdir / 'serve.log'}")
                time.sleep(0.1)

    def conninfo(self, agent="agent"):
        return dict(host="127.0.0.1", port=self.port, dbname="app", user=agent,
                    password=self.secrets[agent])

    def connect(self, agent="agent", **kw):
        kw.setdefault("autocommit", True)
        return psycopg.connect(**self.conninfo(agent), connect_timeout=10, **kw)

    def audit(self, *args):
        return subprocess.run([str(BINARY), "audit", *args, "--config", str(self.config)],
                              capture_output=True, text=True, timeout=60)

    def close(self):
        stop(self.proc)
        self.log.close()


@pytest.fixture(scope="module")
def db(request):
    if not BINARY.exists():
        pytest.skip(f"no drawbridge binary at {BINARY}")
    workdir = Path(tempfile.mkdtemp(prefix="drawbridge-masking-"))
    failed_before = request.session.testsfailed
    database = None
    try:
        database = Database(workdir)
        yield database
    finally:
        if database is not None:
            database.close()
        # Logs and stores stay for a look when something failed.
        if request.session.testsfailed == failed_before:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\nmasking test files kept in {workdir}")


@pytest.fixture(scope="module")
def gw(db):
    gateway = Gateway(db, db.dir, POLICY, MASKING_TOML)
    try:
        yield gateway
    finally:
        gateway.close()


def assert_usable(conn):
    assert conn.execute("SELECT 40 + 2").fetchone() == (42,)


# ---------------------------------------------------------------------------------------------
# The corpus itself (direct side only; these hold whatever the gateway does)


def luhn(number):
    digits = [int(c) for c in re.sub(r"\D", "", number)][::-1]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits))
    return total % 10 == 0


def test_corpus_values_are_well_formed():
    cards = [c for *_, c, _, _ in PEOPLE if c] + [c for _, _, _, _, c, _ in EMBEDDED]
    for card in cards:
        assert luhn(card), card
    for ssn in [p[5] for p in PEOPLE if p[5]] + [s for _, s in CONTRACTORS]:
        area, group, serial = ssn.split("-")
        assert area not in ("000", "666") and not area.startswith("9"), ssn
        assert group != "00" and serial != "0000", ssn
    assert sum(1 for p in PEOPLE if p[5] == SHARED_SSN) == 2


def test_corpus_is_clean(db):
    """Nothing returned unmasked by design contains a needle, so a hit means a leak."""
    with db.direct() as conn:
        rows = conn.execute("SELECT id, name, born FROM people ORDER BY id").fetchall()
        rows += conn.execute("SELECT id, email FROM staff ORDER BY id").fetchall()
        rows += [(PLACEHOLDER, "*" * 15 + "1111", "0123456789abcdef")]
        notes = [r[0] for r in conn.execute("SELECT notes FROM people WHERE notes IS NOT NULL")]
    assert_no_leak(rows)
    embedded = [s for _, _, e, _, c, _ in EMBEDDED for s in (e, c)]
    prose = [re.sub("|".join(map(re.escape, embedded)), "\x00", n) for n in notes]
    assert_no_leak([prose])
    # And the needles do catch what they are for.
    assert leaks(["ALICE.MARTIN@EXAMPLE.COM"]) and leaks(["moc.elpmaxe@nitram.ecila"])
    assert leaks(["xx 4111111111111111 xx"]) and leaks([b"alice.martin@example.com"])
    assert leaks([base64.b64encode(b"dana_fox@example.com").decode()])
    assert leaks(["tel 14155550132"]) and leaks(["+1 (415) 555-0132"[::-1]])


def _simulated_mask(row):
    """What the policy's strategies make of one `people` row (hash values made up)."""
    out = []
    for kind, v in zip(PEOPLE_KINDS, row):
        if v is None or kind == "plain":
            out.append(v)
        elif kind == "redact":
            out.append(PLACEHOLDER)
        elif kind == "null":
            out.append(None)
        elif kind == "partial":
            out.append("*" * (len(v) - 4) + v[-4:])
        elif kind == "hash":
            out.append(hashlib.sha256(v.encode()).hexdigest()[:16])
        elif kind == "scan":
            embedded = [x for _, _, e, _, c, _ in EMBEDDED for x in (e, c)]
            out.append(re.sub("|".join(map(re.escape, embedded)), PLACEHOLDER, v))
    return tuple(out)


def test_checks_accept_masked_and_reject_raw(db):
    """The checks themselves: right masking passes, each kind of leak fails."""
    with db.direct() as conn:
        direct = conn.execute("SELECT * FROM people ORDER BY id").fetchall()
        copied = _copy_out(conn, "COPY people TO STDOUT (FORMAT csv)").decode()
    masked = [_simulated_mask(r) for r in direct]
    compare(PEOPLE_KINDS, masked, direct)
    assert _csv_rows(copied) == [tuple(None if v is None else str(v) for v in r) for r in direct]
    with pytest.raises(AssertionError):
        compare(PEOPLE_KINDS, direct, direct)
    for col in range(len(PEOPLE_KINDS)):
        if PEOPLE_KINDS[col] == "plain":
            continue
        # One raw cell among masked ones is found.
        leaky = [list(r) for r in masked]
        leaky[0][col] = direct[0][col]
        with pytest.raises(AssertionError):
            compare(PEOPLE_KINDS, leaky, direct)
        # A derived column that keeps a transform of the value is found too.
        with pytest.raises(AssertionError):
            compare(["plain", "whole"], [(1, f"x{str(direct[0][col])[::-1].upper()}")], [(1, "y")])


# ---------------------------------------------------------------------------------------------
# The cases: (id, SQL, the check of each result column, sort rows by the first column)

CASES = [
    ("columns", "SELECT id, name, email, phone, card, ssn, notes, born FROM people ORDER BY id",
     PEOPLE_KINDS, False),
    ("star", "SELECT * FROM people ORDER BY id", PEOPLE_KINDS, False),
    ("table", "TABLE people", PEOPLE_KINDS, True),
    ("star-qualified", "SELECT p.* FROM people p ORDER BY p.id", PEOPLE_KINDS, False),
    ("plain-only", "SELECT id, name, born, upper(name), born + 1 FROM people ORDER BY id",
     ["plain"] * 5, False),
    ("filter-on-sensitive", "SELECT id, name FROM people WHERE length(email) > 20 AND card IS NOT NULL "
     "ORDER BY id", ["plain", "plain"], False),
    ("alias", "SELECT id, email AS e, card AS c, ssn AS s, phone AS ph FROM people ORDER BY id",
     ["plain", "redact", "partial", "hash", "null"], False),
    ("quoted-alias", 'SELECT id AS "email", email AS "id" FROM people ORDER BY 1',
     ["plain", "redact"], False),
    ("subquery", "SELECT id, e FROM (SELECT id, email e FROM people) s ORDER BY id",
     ["plain", "redact"], False),
    ("nested-subquery", "SELECT x.i, x.c FROM (SELECT s.i, s.c FROM (SELECT id i, card c FROM people) s) x "
     "ORDER BY x.i", ["plain", "partial"], False),
    ("cte", "WITH c AS (SELECT id, email, card FROM people) SELECT id, email, card FROM c ORDER BY id",
     ["plain", "redact", "partial"], False),
    ("cte-renamed", "WITH c(i, m) AS (SELECT id, email FROM people) SELECT i, m FROM c ORDER BY i",
     ["plain", "redact"], False),
    ("view", "SELECT id, contact FROM people_v ORDER BY id", ["plain", "redact"], False),
    ("view-star", "SELECT * FROM people_v ORDER BY id", ["plain", "redact"], False),
    ("join", "SELECT p.id, p.email, s.email FROM people p JOIN staff s ON s.id = p.id ORDER BY p.id",
     ["plain", "redact", "plain"], False),
    ("expressions", "SELECT id, upper(email), lower(email), reverse(email), name || email, email || '' "
     "FROM people ORDER BY id", ["plain"] + ["whole"] * 5, False),
    ("concat-card", "SELECT id, concat(name, ' ', card), format('%s', phone) FROM people ORDER BY id",
     ["plain", "whole", "whole"], False),
    ("substr", "SELECT id, substr(card, 1, 8), substr(card, 9), left(email, 8), right(email, 9) "
     "FROM people ORDER BY id", ["plain"] + ["whole"] * 4, False),
    ("base64", "SELECT id, encode(convert_to(email, 'UTF8'), 'base64'), encode(card::bytea, 'hex') "
     "FROM people ORDER BY id", ["plain", "whole", "whole"], False),
    ("md5-casts", "SELECT id, md5(email), email::bytea, card::text, phone::varchar(40) FROM people "
     "ORDER BY id", ["plain"] + ["whole"] * 4, False),
    ("ssn-derived", "SELECT id, upper(ssn), ssn || '' FROM people ORDER BY id",
     ["plain", "hash_or_null", "hash_or_null"], False),
    ("case-coalesce", "SELECT id, CASE WHEN id > 5 THEN email ELSE name END, coalesce(phone, 'none') "
     "FROM people ORDER BY id", ["plain", "whole", "whole"], False),
    ("aggregates", "SELECT string_agg(email, ',' ORDER BY id), array_agg(ssn ORDER BY id), max(email), "
     "min(card), count(*) FROM people", ["whole", "whole", "whole", "whole", "plain"], False),
    ("grouped", "SELECT born > '1985-01-01', string_agg(card, ';' ORDER BY id), count(*) FROM people "
     "GROUP BY 1 ORDER BY 1", ["plain", "whole", "plain"], False),
    ("row-json", "SELECT id, row_to_json(p), to_jsonb(p) FROM people p ORDER BY id",
     ["plain", "whole", "whole"], False),
    ("json-agg", "SELECT json_agg(p ORDER BY id), jsonb_agg(p.email) FROM people p",
     ["whole", "whole"], False),
    ("json-build", "SELECT id, json_build_object('e', email, 'n', name) FROM people ORDER BY id",
     ["plain", "whole"], False),
    ("whole-row", "SELECT id, p FROM people p ORDER BY id", ["plain", "whole"], False),
    ("star-in-expression", "SELECT p.id, concat_ws('|', p.*) FROM people p ORDER BY p.id",
     ["plain", "whole"], False),
    ("scalar-subquery", "SELECT id, (SELECT email FROM people ORDER BY id LIMIT 1), "
     "(SELECT max(card) FROM people) FROM staff ORDER BY id", ["plain", "whole", "whole"], False),
    ("lateral", "SELECT s.id, l.email FROM staff s, LATERAL (SELECT email FROM people p WHERE p.id = s.id) l "
     "ORDER BY s.id", ["plain", "redact"], False),
    ("union", "SELECT id, email FROM people UNION ALL SELECT id + 1000, email FROM staff ORDER BY 1",
     ["plain", "whole"], False),
    ("staff-unmasked", "SELECT id, email FROM staff ORDER BY id", ["plain", "plain"], False),
    ("contractors-ssn", "SELECT id, ssn FROM contractors ORDER BY id", ["plain", "hash"], False),
    ("update-returning", "UPDATE people SET name = name WHERE id = 1 RETURNING id, name, email, card",
     ["plain", "plain", "redact", "partial"], False),
]

MODES = {
    "simple": {},                   # text results, simple protocol
    "extended": {"prepare": True},  # named prepared statement, text results
    "binary": {"binary": True},     # unnamed statement, binary results
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case_id,sql,kinds,sort", CASES, ids=[c[0] for c in CASES])
def test_psycopg(gw, db, case_id, sql, kinds, sort, mode):
    opts = MODES[mode]
    with db.direct() as d:
        direct = d.execute(sql, **opts).fetchall()
    with gw.connect() as conn:
        got = conn.execute(sql, **opts).fetchall()
        # The same statement again: a cached analysis or a reused prepared statement masks too.
        again = conn.execute(sql, **opts).fetchall()
        assert_usable(conn)
    compare(kinds, got, direct, sort)
    compare(kinds, again, direct, sort)


def test_psycopg_parameters(gw, db):
    sql = "SELECT id, email, card, ssn FROM people WHERE id > %s AND name <> %s ORDER BY id"
    kinds = ["plain", "redact", "partial", "hash"]
    for binary in (False, True):
        with db.direct() as d:
            direct = d.execute(sql, (3, "nobody"), binary=binary).fetchall()
        with gw.connect() as conn:
            compare(kinds, conn.execute(sql, (3, "nobody"), binary=binary).fetchall(), direct)
            assert_usable(conn)


def test_several_statements_in_one_message(gw, db):
    sql = "SELECT id, email FROM people ORDER BY id; SELECT id, name FROM people ORDER BY id; " \
          "SELECT card FROM people ORDER BY id"
    kinds = [["plain", "redact"], ["plain", "plain"], ["partial"]]

    def results(conn):
        cur = conn.execute(sql)
        out = [cur.fetchall()]
        while cur.nextset():
            out.append(cur.fetchall())
        return out

    with db.direct() as d:
        direct = results(d)
    with gw.connect() as conn:
        got = results(conn)
        assert_usable(conn)
    assert len(got) == 3
    for k, g, dr in zip(kinds, got, direct):
        compare(k, g, dr)


def _sql_prepared(conn, binary):
    conn.execute("PREPARE pe(int) AS SELECT id, email, card, upper(ssn) FROM people WHERE id > $1 ORDER BY id")
    rows = conn.execute("EXECUTE pe(2)", binary=binary).fetchall()
    rows += conn.execute("EXECUTE pe(15)", binary=binary).fetchall()
    conn.execute("DEALLOCATE pe")
    return rows


def test_masking_holds_after_refused_batches(gw, db):
    """A batch whose Bind and Execute are both refused gets one ReadyForQuery; the results
    after it must still be matched to their masking plans."""
    from psycopg.pq import ExecStatus

    with gw.connect() as conn:
        conn.autocommit = True
        for _ in range(3):
            res = conn.pgconn.exec_prepared(b"no_such_statement", [])
            assert res.status == ExecStatus.FATAL_ERROR and b"drawbridge" in res.error_message
        for prepare in (False, True):
            email = conn.execute("SELECT email FROM people WHERE id = 1", prepare=prepare).fetchone()[0]
            assert email != "alice.martin@example.com", email


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_sql_prepare_execute(gw, db, binary):
    """EXECUTE's result has the lineage of the statement PREPARE named."""
    with db.direct() as d:
        direct = _sql_prepared(d, binary)
    with gw.connect() as conn:
        got = _sql_prepared(conn, binary)
        assert_usable(conn)
    compare(["plain", "redact", "partial", "hash_or_null"], got, direct)


# ---------------------------------------------------------------------------------------------
# asyncpg: extended protocol, binary results for most types


def _asyncpg_run(coro_fn, *urls):
    async def side(target):
        conn = await asyncpg.connect(**target) if isinstance(target, dict) else await asyncpg.connect(target)
        try:
            return await coro_fn(conn)
        finally:
            await conn.close()

    async def run():
        return [await side(u) for u in urls]

    return asyncio.run(run())


def _asyncpg_target(gw, agent="agent"):
    c = gw.conninfo(agent)
    return dict(host=c["host"], port=c["port"], database=c["dbname"], user=c["user"],
                password=c["password"], ssl=False)


@pytest.mark.parametrize("case_id,sql,kinds,sort", CASES, ids=[c[0] for c in CASES])
def test_asyncpg(gw, db, case_id, sql, kinds, sort):
    async def run(conn):
        rows = [tuple(r) for r in await conn.fetch(sql)]
        # A prepared statement executed twice: the second Execute reuses the first Parse.
        stmt = await conn.prepare(sql)
        again = [tuple(r) for r in await stmt.fetch()]
        assert await conn.fetchval("SELECT 40 + 2") == 42
        return rows, again

    (got, again), (direct, _) = _asyncpg_run(run, _asyncpg_target(gw), db.direct_url)
    compare(kinds, got, direct, sort)
    compare(kinds, again, direct, sort)


def test_asyncpg_cursor_and_copy(gw, db):
    async def run(conn):
        async with conn.transaction():
            cur = await conn.cursor("SELECT id, email, card FROM people ORDER BY id")
            first = await cur.fetch(7)
            rest = await cur.fetch(100)
        out = io.BytesIO()
        await conn.copy_from_query("SELECT id, email, ssn FROM people ORDER BY id", output=out, format="csv")
        table = io.BytesIO()
        await conn.copy_from_table("people", output=table, format="text")
        assert await conn.fetchval("SELECT 40 + 2") == 42
        return [tuple(r) for r in first + rest], out.getvalue().decode(), table.getvalue().decode()

    (rows, csv_text, table_text), (d_rows, d_csv, d_table) = _asyncpg_run(
        run, _asyncpg_target(gw), db.direct_url)
    compare(["plain", "redact", "partial"], rows, d_rows)
    compare(["plain", "redact", "hash"], _csv_rows(csv_text), _csv_rows(d_csv))
    compare(PEOPLE_KINDS, _copy_text_rows(table_text), _copy_text_rows(d_table), sort=True)


# ---------------------------------------------------------------------------------------------
# Server-side cursors


def _cursor_sql(conn, binary):
    rows = []
    with conn.transaction():
        conn.execute("DECLARE c CURSOR FOR SELECT id, name, email, card, ssn FROM people ORDER BY id")
        rows += conn.execute("FETCH 7 FROM c", binary=binary).fetchall()
        rows += conn.execute("FETCH NEXT FROM c", binary=binary).fetchall()
        conn.execute("MOVE 2 FROM c")
        rows += conn.execute("FETCH ALL FROM c", binary=binary).fetchall()
        conn.execute("CLOSE c")
    return rows


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_declare_fetch(gw, db, binary):
    kinds = ["plain", "plain", "redact", "partial", "hash"]
    with db.direct() as d:
        direct = _cursor_sql(d, binary)
    with gw.connect() as conn:
        got = _cursor_sql(conn, binary)
        assert_usable(conn)
    assert len(got) == 18
    compare(kinds, got, direct)


def _named_cursor(conn, binary):
    with conn.transaction():
        with conn.cursor("srv", binary=binary) as cur:
            cur.execute("SELECT id, email AS contact, phone, notes FROM people ORDER BY id")
            rows = cur.fetchmany(5)
            rows += cur.fetchall()
    return rows


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_psycopg_server_cursor(gw, db, binary):
    with db.direct() as d:
        direct = _named_cursor(d, binary)
    with gw.connect() as conn:
        got = _named_cursor(conn, binary)
        assert_usable(conn)
    compare(["plain", "redact", "null", "scan"], got, direct)


# ---------------------------------------------------------------------------------------------
# COPY … TO STDOUT


def _copy_out(conn, sql):
    with conn.cursor() as cur:
        with cur.copy(sql) as copy:
            return b"".join(bytes(chunk) for chunk in copy)


def _unescape_copy(field):
    if field == r"\N":
        return None
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(m.group(1), m.group(1)),
                  field)


def _copy_text_rows(text):
    return [tuple(_unescape_copy(f) for f in line.split("\t")) for line in text.splitlines()]


def _csv_rows(text):
    """COPY's CSV: an unquoted empty field is NULL, a quoted one the empty string."""
    rows, row, field, quoted, in_quotes, i = [], [], "", False, False, 0
    while i < len(text):
        ch = text[i]
        if in_quotes:
            if ch == '"' and text[i + 1:i + 2] == '"':
                field += '"'
                i += 1
            elif ch == '"':
                in_quotes = False
            else:
                field += ch
        elif ch == '"':
            in_quotes = quoted = True
        elif ch in ",\n":
            row.append(field if field or quoted else None)
            field, quoted = "", False
            if ch == "\n":
                rows.append(tuple(row))
                row = []
        elif ch != "\r":
            field += ch
        i += 1
    if field or quoted or row:
        row.append(field if field or quoted else None)
        rows.append(tuple(row))
    return rows


COPY_CASES = [
    ("table-text", "COPY people TO STDOUT", _copy_text_rows, PEOPLE_KINDS),
    ("table-csv", "COPY people TO STDOUT (FORMAT csv)", _csv_rows, PEOPLE_KINDS),
    ("columns-csv-header", "COPY people (id, email, card) TO STDOUT WITH CSV HEADER", None,
     ["plain", "redact", "partial"]),
    ("query-text", "COPY (SELECT id, email FROM people ORDER BY id) TO STDOUT", _copy_text_rows,
     ["plain", "redact"]),
    ("query-derived-csv", "COPY (SELECT id, upper(email), name || card FROM people ORDER BY id) TO STDOUT "
     "(FORMAT csv)", _csv_rows, ["plain", "whole", "whole"]),
    ("query-delimiter", "COPY (SELECT id, ssn, born FROM people ORDER BY id) TO STDOUT (DELIMITER '|')",
     lambda t: _copy_text_rows(t.replace("|", "\t")), ["plain", "hash", "plain"]),
    ("staff-text", "COPY staff TO STDOUT", _copy_text_rows, ["plain", "plain"]),
]


@pytest.mark.parametrize("case_id,sql,parse,kinds", COPY_CASES, ids=[c[0] for c in COPY_CASES])
def test_copy_to_stdout(gw, db, case_id, sql, parse, kinds):
    with db.direct() as d:
        direct = _copy_out(d, sql).decode()
    with gw.connect() as conn:
        got = _copy_out(conn, sql).decode()
        assert_usable(conn)
    if parse is None:
        d_lines, g_lines = direct.splitlines(), got.splitlines()
        assert g_lines[0] == d_lines[0] == "id,email,card"
        direct, got, parse = "\n".join(d_lines[1:]), "\n".join(g_lines[1:]), _csv_rows
    compare(kinds, parse(got), parse(direct), sort=True)
    assert_no_leak([[got]])


def test_binary_copy_of_masked_table_is_refused(gw, db):
    with gw.connect() as conn:
        for sql in ("COPY people TO STDOUT (FORMAT binary)",
                    "COPY (SELECT id, email FROM people) TO STDOUT (FORMAT binary)"):
            with pytest.raises(psycopg.Error) as excinfo:
                _copy_out(conn, sql)
            assert excinfo.value.sqlstate == "42501", excinfo.value
            assert (excinfo.value.diag.message_primary or "").startswith("drawbridge:"), excinfo.value
            assert_usable(conn)


def test_binary_copy_of_unmasked_table_is_unchanged(gw, db):
    sql = "COPY staff TO STDOUT (FORMAT binary)"
    with db.direct() as d:
        direct = _copy_out(d, sql)
    with gw.connect() as conn:
        assert _copy_out(conn, sql) == direct
        assert_usable(conn)


# ---------------------------------------------------------------------------------------------
# Strategies


def test_hash_equal_values_give_equal_hashes(gw, db):
    same = [p[0] for p in PEOPLE if p[5] == SHARED_SSN]
    with gw.connect() as conn:
        rows = dict(conn.execute("SELECT id, ssn FROM people ORDER BY id").fetchall())
        assert_usable(conn)
    assert all(HASH16.match(h) for h in rows.values() if h is not None), rows
    assert rows[same[0]] == rows[same[1]], rows
    distinct = {p[5] for p in PEOPLE if p[5]}
    assert len({h for h in rows.values() if h is not None}) == len(distinct)
    # Deterministic across sessions, protocols and tables (one rule, one key).
    with gw.connect() as conn:
        binary = dict(conn.execute("SELECT id, ssn FROM people ORDER BY id", binary=True).fetchall())
        contractors = dict(conn.execute("SELECT id, ssn FROM contractors ORDER BY id").fetchall())
    assert binary == rows
    assert contractors[1] == rows[same[0]]
    assert contractors[2] == rows[1]
    assert contractors[3] not in rows.values()


def test_join_by_hash(gw, db):
    """A client can join two masked result sets on the hashed column and get the true pairs."""
    join = "SELECT p.id, c.id FROM people p JOIN contractors c ON c.ssn = p.ssn ORDER BY 1, 2"
    with db.direct() as d:
        expected = d.execute(join).fetchall()
    with gw.connect() as conn:
        # The join on raw values in SQL runs as usual: its output columns are plain.
        assert conn.execute(join).fetchall() == expected
        people = conn.execute("SELECT id, ssn FROM people").fetchall()
    with gw.connect() as conn:
        contractors = conn.execute("SELECT id, ssn FROM contractors", binary=True).fetchall()
    assert all(HASH16.match(h) for _, h in people + contractors if h is not None)
    pairs = sorted((p, c) for p, ph in people for c, ch in contractors if ph is not None and ph == ch)
    assert pairs == expected
    assert len(expected) == 3


def test_partial_keeps_last_four(gw, db):
    with gw.connect() as conn:
        rows = conn.execute("SELECT id, card FROM people WHERE id IN (1, 2, 3) ORDER BY id").fetchall()
    assert rows == [(1, "************1111"), (2, "***************4444"), (3, "***********0005")]


def test_scan_replaces_only_detected_values(gw, db):
    with gw.connect() as conn:
        rows = dict(conn.execute("SELECT id, notes FROM people ORDER BY id").fetchall())
        assert_usable(conn)
    for pid, before, email, middle, card, after in EMBEDDED:
        got = rows[pid]
        assert got.startswith(before) and got.endswith(after), got
        assert middle in got, got
        assert email not in got and card not in got, got
        assert re.sub(r"\D", "", card) not in re.sub(r"\D", "", got), got
    for pid, text in PLAIN_NOTES.items():
        assert rows[pid] == text
    assert rows[19] is None


def test_null_strategy_and_nulls_stay_null(gw, db):
    with gw.connect() as conn:
        rows = conn.execute("SELECT id, phone, email, card, ssn FROM people ORDER BY id").fetchall()
    assert all(r[1] is None for r in rows)
    # Row 19 has no sensitive values at all: NULL stays NULL whatever the strategy.
    assert rows[18] == (19, None, None, None, None)


# ---------------------------------------------------------------------------------------------
# Who is masked


def test_unmatched_agent_sees_raw_values(gw, db):
    sql = "SELECT * FROM people ORDER BY id"
    derived = "SELECT id, upper(email), row_to_json(p) FROM people p ORDER BY id"
    with db.direct() as d:
        direct = [d.execute(s, binary=b).fetchall() for s in (sql, derived) for b in (False, True)]
    with gw.connect("trusted") as conn:
        got = [conn.execute(s, binary=b).fetchall() for s in (sql, derived) for b in (False, True)]
        copied = _copy_out(conn, "COPY people TO STDOUT")
        assert_usable(conn)
    with db.direct() as d:
        assert copied == _copy_out(d, "COPY people TO STDOUT")
    assert got == direct
    assert leaks([c for row in got[0] for c in row]), "the trusted agent should see raw values"

    async def run(conn):
        return [tuple(r) for r in await conn.fetch(sql)]

    trusted, plain = _asyncpg_run(run, _asyncpg_target(gw, "trusted"), db.direct_url)
    assert trusted == plain


def test_masked_and_trusted_sessions_side_by_side(gw, db):
    sql = "SELECT id, email FROM people ORDER BY id"
    with gw.connect("agent") as masked, gw.connect("trusted") as trusted:
        a = masked.execute(sql).fetchall()
        b = trusted.execute(sql).fetchall()
        c = masked.execute(sql).fetchall()
    assert [r[1] for r in b] == [p[2] for p in PEOPLE]
    assert a == c
    assert all(r[1] in (PLACEHOLDER, None) for r in a)


# ---------------------------------------------------------------------------------------------
# Evidence


def _export(gw):
    out = gw.audit("export", "--format", "jsonl")
    assert out.returncode == 0, out.stderr
    return out.stdout, [json.loads(line)["event"] for line in out.stdout.splitlines() if line.strip()]


def _masked_columns(events, marker):
    """{column name: masked-column entry} of the masked event of the statement whose text holds
    marker, or None while it is not in the store yet."""
    stmt = next((e for e in events if e.get("kind") == "statement" and marker in e.get("text", "")), None)
    if stmt is None:
        return None
    for e in events:
        if e.get("kind") == "masked" and e.get("session") == stmt["session"] \
                and e.get("statement") == stmt["statement"]:
            return {c["name"]: c for c in e["columns"]}
    return None


def test_audit_records_masking_without_values(gw, db):
    token = secrets.token_hex(4)
    exact = f"SELECT id, email, card, ssn, notes FROM people /* audit-{token}-exact */ ORDER BY id"
    derived = f"SELECT id, upper(email) AS shout FROM people /* audit-{token}-derived */ ORDER BY id"
    plain = f"SELECT id, name FROM people /* audit-{token}-plain */ ORDER BY id"
    with gw.connect() as conn:
        conn.execute(exact).fetchall()
        conn.execute(derived, binary=True).fetchall()
        conn.execute(plain).fetchall()
    with gw.connect("trusted") as conn:
        conn.execute(exact.replace("-exact", "-trusted")).fetchall()
    deadline = time.monotonic() + 15
    while True:
        text, events = _export(gw)
        columns = _masked_columns(events, f"audit-{token}-exact")
        trusted_seen = any(e.get("kind") == "statement" and f"audit-{token}-trusted" in e.get("text", "")
                           for e in events)
        # The store takes records in batches: wait for the last statement of all, too.
        if columns is not None and _masked_columns(events, f"audit-{token}-derived") is not None \
                and trusted_seen:
            break
        assert time.monotonic() < deadline, "no masked event for the masked statements"
        time.sleep(0.5)

    assert set(columns) == {"email", "card", "ssn", "notes"}, columns
    for name, rule in (("email", "mask-email"), ("card", "mask-card"), ("ssn", "mask-ssn")):
        c = columns[name]
        assert c["rule"] == rule and c["how"] == "exact", c
        # 20 rows, one of them NULL in every sensitive column.
        assert c["values"] in (19, 20), c
    assert columns["notes"]["rule"] == "scan-notes", columns
    assert columns["email"]["position"] == 1 and columns["ssn"]["position"] == 3, columns
    shout = _masked_columns(events, f"audit-{token}-derived")
    assert shout["shout"]["rule"] == "mask-email" and shout["shout"]["how"] == "derived", shout
    # Statements with nothing to mask, and agents no rule masks, leave no masked event.
    assert _masked_columns(events, f"audit-{token}-plain") is None
    assert _masked_columns(events, f"audit-{token}-trusted") is None
    assert any(e.get("kind") == "statement" and f"audit-{token}-trusted" in e.get("text", "") for e in events)

    # No raw value, whole or transformed, anywhere in the exported evidence. Pieces are not
    # checked here: statement texts and hashes are long enough to hit a piece by chance.
    found = leaks([text], build_needles(piecewise=False))
    assert not found, f"sensitive values in the audit export: {found[:10]}"
    search = gw.audit("search", "--agent", "agent", "--json")
    assert search.returncode == 0, search.stderr
    assert f"audit-{token}-exact" in search.stdout
    assert not leaks([search.stdout], build_needles(piecewise=False))
