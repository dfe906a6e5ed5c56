"""Just-in-time approvals, end to end: a real gateway with an approval workflow, real PostgreSQL,
psycopg as the agent, and operators deciding from other processes with `drawbridge approvals`
or the HTTP API.

The module starts its own throwaway PostgreSQL (`drawbridge demo --no-script`) and a second
gateway with its own config (policy with hold/retry approval rules, two operators, webhooks to a
receiver in this process, audit). It needs no URLs from the environment. Binary:
target/release/drawbridge or $DRAWBRIDGE_BIN.

Standalone: `python3 -m pytest --noconftest tests/drivers/test_approvals.py`.
"""

import json
import os
import queue
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest

from gateway_process import BINARY, config_table, free_port, run, stop

HERE = Path(__file__).resolve().parent

HOLD_TIMEOUT = 5
APPROVAL_ID = re.compile(r"\bapr_[a-z0-9]+\b")
GRANT_ID = re.compile(r"\bgrt_[a-z0-9]+\b")

POLICY = """\
version: 1
rules:
  - name: ddl-needs-approval
    effect: require_approval
    approval: { mode: hold }
    match: { operations: [ddl] }
  - name: deletes-need-approval
    effect: require_approval
    approval: { mode: retry }
    match: { operations: [delete] }
  - name: two-person-truncate
    effect: require_approval
    approval: { mode: hold, min_approvals: 2 }
    match: { operations: [truncate] }
  - name: everything-else
    effect: allow
"""


class Hooks:
    """A webhook receiver: records every POSTed JSON body with its path."""

    def __init__(self):
        self.received = []
        self.lock = threading.Lock()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"unparsed": body.decode("utf-8", "replace")}
                with hooks.lock:
                    hooks.received.append((self.path, payload))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, path, predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                hits = [p for (got, p) in self.received if got == path and predicate(p)]
            if hits:
                return hits
            time.sleep(0.05)
        with self.lock:
            seen = list(self.received)
        pytest.fail(f"no webhook on {path} matched within {timeout}s; received: {seen}")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Gateway:
    """The demo's PostgreSQL plus our own `drawbridge serve` in front of it."""

    def __init__(self, workdir, hooks):
        self.dir = workdir
        self.hooks = hooks
        self.demo_log = open(workdir / "demo.log", "wb")
        env_file = workdir / "demo.env"
        self.demo = subprocess.Popen(
            [str(BINARY), "demo", "--no-script", "--no-color", "--port", str(free_port()),
             "--env-file", str(env_file)],
            stdout=self.demo_log, stderr=subprocess.STDOUT,
        )
        self.serve = None
        self.serve_log = None
        deadline = time.monotonic() + 120
        while not env_file.exists():
            if self.demo.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"drawbridge demo did not start; see {workdir / 'demo.log'}")
            time.sleep(0.1)
        values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
        self.admin_url = values["ADMIN_URL"]
        self.app_role = psycopg.conninfo.conninfo_to_dict(values["DIRECT_URL"])["user"]
        target = config_table(Path(values["DRAWBRIDGE_CONFIG"]).read_text(), "targets.app")

        agent = run("agent", "new", "agent")
        assert agent.returncode == 0, agent.stderr
        self.agent_secret = re.search(r"^secret: (\S+)$", agent.stdout, re.M).group(1)
        agent_table = agent.stdout[agent.stdout.index("[agents.agent]"):]
        self.tokens = {}
        operator_tables = []
        for name in ("alice", "bob"):
            out = run("operator", "new", name)
            assert out.returncode == 0, out.stderr
            self.tokens[name] = re.search(r"^token: (\S+)$", out.stdout, re.M).group(1)
            operator_tables.append(out.stdout[out.stdout.index(f"[operators.{name}]"):])

        self.port = free_port()
        self.http_port = free_port()
        self.api = f"http://127.0.0.1:{self.http_port}"
        (workdir / "policy.yaml").write_text(POLICY)
        self.target_table = target
        self.agent_table = agent_table
        self.config = workdir / "drawbridge.toml"
        self.config.write_text(
            f'[server]\nlisten = "127.0.0.1:{self.port}"\n\n'
            '[policy]\nfile = "policy.yaml"\n\n'
            f"{target}\n{agent_table}\n"
            f'[http]\nlisten = "127.0.0.1:{self.http_port}"\n\n'
            "[approvals]\n"
            f"hold_timeout_secs = {HOLD_TIMEOUT}\n"
            f'webhooks = [{{ url = "http://127.0.0.1:{hooks.port}/hook", format = "json" }}, '
            f'{{ url = "http://127.0.0.1:{hooks.port}/slack", format = "slack" }}]\n'
            f'public_url = "{self.api}"\n\n'
            "[audit]\n\n" + "\n".join(operator_tables)
        )
        self.start()

    def start(self):
        self.serve_log = open(self.dir / "serve.log", "ab")
        self.serve = subprocess.Popen(
            [str(BINARY), "serve", "--config", str(self.config)],
            stdout=self.serve_log, stderr=subprocess.STDOUT, cwd=self.dir,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.serve.poll() is not None:
                pytest.fail(f"drawbridge serve exited: {(self.dir / 'serve.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                urllib.request.urlopen(f"{self.api}/healthz", timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"drawbridge serve did not listen; see {self.dir / 'serve.log'}")
                time.sleep(0.1)

    def stop(self):
        if self.serve is not None:
            stop(self.serve)
            self.serve_log.close()
            self.serve = None

    def close(self):
        self.stop()
        stop(self.demo)
        self.demo_log.close()

    def connect(self):
        """An agent session (autocommit) whose notices collect in `conn.notices`."""
        conn = psycopg.connect(host="127.0.0.1", port=self.port, dbname="app", user="agent",
                               password=self.agent_secret, autocommit=True, connect_timeout=10)
        conn.notices = queue.Queue()
        # The diagnostic is only readable inside the callback.
        conn.add_notice_handler(lambda d: conn.notices.put(
            {"severity": d.severity_nonlocalized, "message": d.message_primary, "hint": d.message_hint}))
        return conn

    def admin(self):
        return psycopg.connect(self.admin_url, autocommit=True)

    def cli(self, *args, operator="alice", check=True):
        env = dict(os.environ, DRAWBRIDGE_URL=self.api, DRAWBRIDGE_OPERATOR_TOKEN=self.tokens[operator])
        out = run("approvals", *args, env=env)
        if check:
            assert out.returncode == 0, f"drawbridge approvals {' '.join(args)}: {out.stdout}{out.stderr}"
        return out

    def http(self, method, path, token=None, body=None):
        """(status, parsed JSON body) of one API call."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.api}{path}", data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode("utf-8", "replace")

    def request(self, approval_id):
        status, body = self.http("GET", f"/api/approvals/{approval_id}", token=self.tokens["alice"])
        assert status == 200, body
        return body


@pytest.fixture(scope="module")
def gw(request):
    if not BINARY.exists():
        pytest.skip(f"no drawbridge binary at {BINARY}")
    hooks = Hooks()
    workdir = Path(tempfile.mkdtemp(prefix="drawbridge-approvals-"))
    failed_before = request.session.testsfailed
    gateway = None
    try:
        gateway = Gateway(workdir, hooks)
        yield gateway
    finally:
        if gateway is not None:
            gateway.close()
        hooks.close()
        # Logs and stores stay for a look when something failed.
        if request.session.testsfailed == failed_before:
            shutil.rmtree(workdir, ignore_errors=True)


class Held:
    """Runs one statement on a session in a thread, so the test can decide while it waits."""

    def __init__(self, conn, sql, **execute):
        self.conn = conn
        self.execute = execute
        self.error = None
        self.done = threading.Event()
        self.started = time.monotonic()
        self.elapsed = None
        self.thread = threading.Thread(target=self._run, args=(sql,), daemon=True)
        self.thread.start()

    def _run(self, sql):
        try:
            self.conn.execute(sql, **self.execute)
        except psycopg.Error as e:
            self.error = e
        finally:
            self.elapsed = time.monotonic() - self.started
            self.done.set()

    def notice_id(self, rule, timeout=HOLD_TIMEOUT - 1):
        """The approval id from the held-for-approval notice, which must arrive while the
        statement is still waiting."""
        try:
            diag = self.conn.notices.get(timeout=timeout)
        except queue.Empty:
            pytest.fail("no notice arrived while the statement was held")
        msg = diag["message"] or ""
        assert diag["severity"] == "NOTICE", diag
        assert msg.startswith("drawbridge: statement held for approval apr_"), msg
        assert f"by rule {rule}" in msg, msg
        assert not self.done.is_set(), "the statement finished before anyone decided"
        m = APPROVAL_ID.search(msg)
        assert m, msg
        assert "drawbridge approvals approve " + m.group(0) in (diag["hint"] or ""), diag
        return m.group(0)

    def wait(self, timeout=HOLD_TIMEOUT + 10):
        assert self.done.wait(timeout), "the held statement never finished"
        return self.error


def assert_usable(conn):
    assert conn.execute("SELECT 40 + 2").fetchone() == (42,)


def table_exists(gw, name):
    with gw.admin() as admin:
        return admin.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{name}",)).fetchone()[0]


def refused(excinfo):
    """(message, hint) of a 42501 refusal."""
    e = excinfo.value
    assert e.sqlstate == "42501", f"{e.sqlstate}: {e}"
    return e.diag.message_primary or "", e.diag.message_hint or ""


def retry_pending(conn, sql, rule="deletes-need-approval"):
    """Sends a retry-mode statement, expects the immediate refusal, returns the approval id."""
    with pytest.raises(psycopg.Error) as excinfo:
        conn.execute(sql)
    msg, hint = refused(excinfo)
    assert msg.startswith(f"drawbridge: approval required by rule {rule}"), msg
    m = re.search(r"approval (apr_[a-z0-9]+) is pending", msg)
    assert m, msg
    assert f"drawbridge approvals approve {m.group(1)}" in hint, hint
    return m.group(1)


def order_exists(gw, order_id):
    with gw.admin() as admin:
        return admin.execute("SELECT count(*) FROM orders WHERE id = %s", (order_id,)).fetchone()[0] == 1


def test_hold_approved_by_operator_in_another_process(gw):
    assert not table_exists(gw, "t_held")
    with gw.connect() as conn:
        held = Held(conn, "CREATE TABLE t_held (x int)")
        approval = held.notice_id("ddl-needs-approval")

        listing = gw.cli("list").stdout
        line = next((l for l in listing.splitlines() if l.startswith(approval)), None)
        assert line is not None, listing
        assert "pending" in line and "agent@app" in line and "rule=ddl-needs-approval" in line, line
        assert "CREATE TABLE t_held" in line, line
        time.sleep(0.3)
        assert not held.done.is_set(), "the statement ran before it was approved"
        assert not table_exists(gw, "t_held")

        out = gw.cli("approve", approval).stdout
        assert f"{approval} approved" in out, out
        assert held.wait() is None, f"approved statement failed: {held.error}"
        assert table_exists(gw, "t_held")
        assert_usable(conn)
    request = gw.request(approval)
    assert request["state"] == "consumed", request
    assert [a["operator"] for a in request["approvals"]] == ["alice"], request
    assert approval not in gw.cli("list").stdout


def test_hold_denied(gw):
    with gw.connect() as conn:
        held = Held(conn, "CREATE TABLE t_denied (x int)")
        approval = held.notice_id("ddl-needs-approval")
        out = gw.cli("deny", approval, "--reason", "not today").stdout
        assert f"{approval} denied" in out, out
        error = held.wait()
        assert isinstance(error, psycopg.Error), "a denied statement ran"
        assert error.sqlstate == "42501", error
        msg = error.diag.message_primary
        assert msg.startswith("drawbridge:"), msg
        assert approval in msg and "denied by alice" in msg and "not today" in msg, msg
        assert not table_exists(gw, "t_denied")
        assert_usable(conn)
    assert gw.request(approval)["state"] == "denied"


def test_deny_needs_a_reason(gw):
    with gw.connect() as conn:
        approval = retry_pending(conn, "DELETE FROM orders WHERE id = 7")
    status, body = gw.http("POST", f"/api/approvals/{approval}/deny", token=gw.tokens["alice"], body={"reason": ""})
    assert status == 400, body
    assert gw.request(approval)["state"] == "pending"


def test_each_decision_wakes_only_its_own_session(gw):
    with gw.connect() as a, gw.connect() as b:
        held_a = Held(a, "CREATE TABLE t_two_a (x int)")
        held_b = Held(b, "CREATE TABLE t_two_b (x int)")
        id_a = held_a.notice_id("ddl-needs-approval")
        id_b = held_b.notice_id("ddl-needs-approval")
        assert id_a != id_b
        gw.cli("deny", id_b, "--reason", "only one")
        error = held_b.wait()
        assert isinstance(error, psycopg.Error) and "denied by alice" in str(error), error
        assert not held_a.done.is_set(), "denying one request released another session"
        gw.cli("approve", id_a)
        assert held_a.wait() is None, held_a.error
        assert table_exists(gw, "t_two_a") and not table_exists(gw, "t_two_b")
        assert_usable(a)
        assert_usable(b)


def test_hold_expires_without_decision(gw):
    with gw.connect() as conn:
        held = Held(conn, "CREATE TABLE t_expired (x int)")
        approval = held.notice_id("ddl-needs-approval")
        error = held.wait()
        assert isinstance(error, psycopg.Error), "an undecided statement ran"
        assert error.sqlstate == "42501", error
        msg = error.diag.message_primary
        assert approval in msg and "expired" in msg, msg
        assert held.elapsed >= HOLD_TIMEOUT - 0.5, held.elapsed
        assert held.elapsed < HOLD_TIMEOUT + 5, held.elapsed
        assert not table_exists(gw, "t_expired")
        assert_usable(conn)
    assert gw.request(approval)["state"] == "expired"
    # Deciding after expiry changes nothing.
    status, body = gw.http("POST", f"/api/approvals/{approval}/approve", token=gw.tokens["alice"])
    assert status == 409, body


def test_retry_mode_approval_is_single_use(gw):
    sql = "DELETE FROM orders WHERE id = 3"
    assert order_exists(gw, 3)
    with gw.connect() as conn:
        first = retry_pending(conn, sql)
        assert order_exists(gw, 3)
        assert_usable(conn)

        # An approval covers this statement only: a different one stays refused.
        other = retry_pending(conn, "DELETE FROM orders WHERE id = 8")
        assert other != first

        out = gw.cli("approve", first).stdout
        assert f"{first} approved" in out, out
        assert gw.request(first)["state"] == "approved"

        cur = conn.execute(sql)
        assert cur.rowcount == 1
        assert not order_exists(gw, 3)
        assert order_exists(gw, 8)
        assert gw.request(first)["state"] == "consumed"

        third = retry_pending(conn, sql)
        assert third not in (first, other)
        assert_usable(conn)


def test_hold_over_extended_protocol(gw):
    with gw.connect() as conn:
        # binary results force the extended protocol (Parse/Bind/Execute).
        held = Held(conn, "CREATE TABLE t_held_extended (x int)", binary=True)
        approval = held.notice_id("ddl-needs-approval")
        assert not table_exists(gw, "t_held_extended")
        gw.cli("approve", approval)
        assert held.wait() is None, f"approved statement failed: {held.error}"
        assert table_exists(gw, "t_held_extended")
        assert_usable(conn)


def test_retry_over_extended_protocol_runs_once(gw):
    sql = "DELETE FROM orders WHERE id = 12"
    with gw.connect() as conn:
        with pytest.raises(psycopg.Error) as excinfo:
            conn.execute(sql, binary=True)
        msg, _ = refused(excinfo)
        approval = APPROVAL_ID.search(msg).group(0)
        gw.cli("approve", approval)
        assert conn.execute(sql, binary=True).rowcount == 1
        assert not order_exists(gw, 12)
        with pytest.raises(psycopg.Error) as excinfo:
            conn.execute(sql, binary=True)
        refused(excinfo)
        assert_usable(conn)


def test_retry_approval_is_bound_to_parameters(gw):
    sql = "DELETE FROM orders WHERE id = %s"
    with gw.connect() as conn:
        with pytest.raises(psycopg.Error) as excinfo:
            conn.execute(sql, (13,))
        msg, _ = refused(excinfo)
        approval = APPROVAL_ID.search(msg).group(0)
        gw.cli("approve", approval)
        # The operator approved deleting order 13; order 14 is another statement.
        try:
            conn.execute(sql, (14,))
        except psycopg.Error as e:
            assert e.sqlstate == "42501", e
        assert order_exists(gw, 14), "order 14 was deleted under the approval given for order 13"
        assert order_exists(gw, 13)


def test_retry_approval_is_single_use_for_prepared_statements(gw):
    sql = "DELETE FROM orders WHERE id = 15 OR id = 16 AND %s"
    with gw.connect() as conn:
        with pytest.raises(psycopg.Error) as excinfo:
            conn.execute(sql, (False,), prepare=True)
        msg, _ = refused(excinfo)
        approval = APPROVAL_ID.search(msg).group(0)
        gw.cli("approve", approval)
        assert conn.execute(sql, (False,), prepare=True).rowcount == 1
        assert not order_exists(gw, 15)
        # psycopg reuses the server-side statement: only Bind/Execute reach the gateway.
        try:
            conn.execute(sql, (True,), prepare=True)
        except psycopg.Error as e:
            assert e.sqlstate == "42501", e
        assert order_exists(gw, 16), "a single-use approval ran twice"


def test_agent_credentials_cannot_decide(gw):
    with gw.connect() as conn:
        approval = retry_pending(conn, "DELETE FROM orders WHERE id = 4")
    path = f"/api/approvals/{approval}/approve"
    for token in (gw.agent_secret, None, "dbop_" + "A" * 43, ""):
        status, body = gw.http("POST", path, token=token)
        assert status == 401, (token, status, body)
    status, body = gw.http("GET", "/api/approvals", token=gw.agent_secret)
    assert status == 401, body
    status, body = gw.http("POST", "/api/grants", token=gw.agent_secret,
                           body={"agent": "agent", "target": "app", "rules": ["deletes-need-approval"],
                                 "minutes": 5, "reason": "self-service"})
    assert status == 401, body
    assert gw.request(approval)["state"] == "pending"
    assert order_exists(gw, 4)
    # The CLI with the agent's secret as its token is refused too.
    env = dict(os.environ, DRAWBRIDGE_URL=gw.api, DRAWBRIDGE_OPERATOR_TOKEN=gw.agent_secret)
    out = run("approvals", "approve", approval, env=env)
    assert out.returncode != 0, out.stdout
    assert gw.request(approval)["state"] == "pending"


def test_operator_named_like_an_agent_is_refused(gw):
    bad = gw.dir / "bad.toml"
    token_hash = re.search(r'token_sha256 = "([0-9a-f]+)"', run("operator", "new", "agent").stdout).group(1)
    bad.write_text(
        f'[server]\nlisten = "127.0.0.1:{free_port()}"\n\n[policy]\nfile = "policy.yaml"\n\n'
        f"{gw.target_table}\n{gw.agent_table}\n"
        f'[http]\nlisten = "127.0.0.1:{free_port()}"\n\n[approvals]\nsqlite_path = "bad-approvals.db"\n\n'
        f'[operators.agent]\ntoken_sha256 = "{token_hash}"\n'
    )
    try:
        out = run("serve", "--config", str(bad), timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("drawbridge serve started with an operator named like an agent")
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "operator agent" in text and "same name" in text, text


def test_two_person_rule_needs_two_distinct_operators(gw):
    with gw.admin() as admin:
        admin.execute("DROP TABLE IF EXISTS scratch_truncate")
        admin.execute("CREATE TABLE scratch_truncate (x int)")
        admin.execute("INSERT INTO scratch_truncate SELECT generate_series(1, 5)")
        admin.execute(f'ALTER TABLE scratch_truncate OWNER TO "{gw.app_role}"')

    def rows():
        with gw.admin() as admin:
            return admin.execute("SELECT count(*) FROM scratch_truncate").fetchone()[0]

    with gw.connect() as conn:
        held = Held(conn, "TRUNCATE scratch_truncate")
        approval = held.notice_id("two-person-truncate")
        alice = gw.tokens["alice"]
        status, body = gw.http("POST", f"/api/approvals/{approval}/approve", token=alice)
        assert status == 200, body
        assert body["state"] == "pending" and len(body["approvals"]) == 1, body
        status, body = gw.http("POST", f"/api/approvals/{approval}/approve", token=alice)
        assert status == 409, body
        request = gw.request(approval)
        assert request["state"] == "pending" and len(request["approvals"]) == 1, request
        time.sleep(0.3)
        assert not held.done.is_set(), "one operator approving twice released the statement"
        assert rows() == 5

        status, body = gw.http("POST", f"/api/approvals/{approval}/approve", token=gw.tokens["bob"])
        assert status == 200, body
        assert body["state"] == "approved", body
        assert held.wait() is None, f"twice-approved TRUNCATE failed: {held.error}"
        assert rows() == 0
        assert_usable(conn)
    assert sorted(a["operator"] for a in gw.request(approval)["approvals"]) == ["alice", "bob"]


def test_strictest_approval_rule_of_a_message_applies(gw):
    with gw.admin() as admin:
        admin.execute("DROP TABLE IF EXISTS scratch_two")
        admin.execute("CREATE TABLE scratch_two (x int)")
        admin.execute("INSERT INTO scratch_two SELECT generate_series(1, 3)")
        admin.execute(f'ALTER TABLE scratch_two OWNER TO "{gw.app_role}"')
    sql = "DELETE FROM orders WHERE id = 18; TRUNCATE scratch_two"
    with gw.connect() as conn:
        held = Held(conn, sql)
        deadline = time.monotonic() + HOLD_TIMEOUT - 1
        request = None
        while request is None and time.monotonic() < deadline:
            status, listing = gw.http("GET", "/api/approvals?state=pending", token=gw.tokens["alice"])
            assert status == 200, listing
            request = next((r for r in listing if r["statement"] == sql), None)
            time.sleep(0.05)
        assert request is not None, "no approval request for the message"
        try:
            assert request["min_approvals"] == 2, request
            status, body = gw.http("POST", f"/api/approvals/{request['id']}/approve", token=gw.tokens["alice"])
            assert status == 200, body
            assert body["state"] == "pending", "one operator approved a message holding a two-person TRUNCATE"
        finally:
            gw.http("POST", f"/api/approvals/{request['id']}/deny", token=gw.tokens["alice"],
                    body={"reason": "cleanup"})
            held.wait()
            # Retry mode leaves nothing waiting; make sure the approved message can't run either.
            with pytest.raises(psycopg.Error):
                conn.execute(sql)
        with gw.admin() as admin:
            assert admin.execute("SELECT count(*) FROM scratch_two").fetchone()[0] == 3
        assert order_exists(gw, 18)


def test_grant_exempts_until_revoked(gw):
    sql = "CREATE TABLE IF NOT EXISTS t_granted (x int)"
    out = gw.cli("grant", "agent", "--target", "app", "--rule", "ddl-needs-approval",
                 "--minutes", "1", "--reason", "migration").stdout
    m = GRANT_ID.search(out)
    assert m, out
    grant = m.group(0)
    assert "agent@app" in out and "by=alice" in out, out
    assert grant in gw.cli("grants").stdout
    try:
        with gw.connect() as conn:
            started = time.monotonic()
            conn.execute(sql)
            assert time.monotonic() - started < 2
            assert conn.notices.empty(), conn.notices.get()
            assert table_exists(gw, "t_granted")
            # The grant names one rule: the other approval rules still apply.
            retry_pending(conn, "DELETE FROM orders WHERE id = 9")
            assert order_exists(gw, 9)
    finally:
        out = gw.cli("revoke", grant).stdout
    assert f"{grant} revoked" in out, out
    assert grant not in gw.cli("grants").stdout
    assert grant in gw.cli("grants", "--all").stdout

    with gw.admin() as admin:
        admin.execute("DROP TABLE t_granted")
    with gw.connect() as conn:
        # The same text that ran under the grant must be held again.
        held = Held(conn, sql)
        approval = held.notice_id("ddl-needs-approval")
        gw.cli("deny", approval, "--reason", "grant is over")
        error = held.wait()
        assert isinstance(error, psycopg.Error) and error.sqlstate == "42501", error
        assert not table_exists(gw, "t_granted")
        assert_usable(conn)


def test_grant_longer_than_allowed_is_refused(gw):
    out = gw.cli("grant", "agent", "--target", "app", "--rule", "ddl-needs-approval",
                 "--minutes", str(24 * 60 + 1), "--reason", "too long", check=False)
    assert out.returncode != 0, out.stdout
    assert not GRANT_ID.search(gw.cli("grants").stdout)


def test_webhooks_announce_new_requests(gw):
    sql = "DELETE FROM orders WHERE id = 5"
    with gw.connect() as conn:
        approval = retry_pending(conn, sql)

    generic = gw.hooks.wait_for("/hook", lambda p: p.get("request", {}).get("id") == approval)[0]
    request = generic["request"]
    assert generic["type"] == "approval_requested", generic
    assert request["agent"] == "agent" and request["target"] == "app", request
    assert request["statement"] == sql, request
    assert request["rule"] == "deletes-need-approval" and request["mode"] == "retry", request
    assert request["state"] == "pending", request
    assert generic["approve_command"] == f"drawbridge approvals approve {approval}", generic
    assert generic["url"] == f"{gw.api}/api/approvals/{approval}", generic

    chat = gw.hooks.wait_for("/slack", lambda p: approval in p.get("text", ""))[0]
    assert "deletes-need-approval" in chat["text"], chat
    blocks = chat["blocks"]
    assert isinstance(blocks, list) and blocks, chat
    flat = json.dumps(blocks)
    assert approval in flat and "DELETE FROM orders WHERE id = 5" in flat, flat
    assert f"drawbridge approvals approve {approval}" in flat, flat


def _audit(gw, *args):
    return subprocess.run([str(BINARY), "audit", *args, "--config", str(gw.config)],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("before", [True, False], ids=["config-first", "config-last"])
def test_audit_cli_takes_config_once(gw, before):
    tail = ["export", "--format", "jsonl"]
    args = ["audit", "--config", str(gw.config), *tail] if before else ["audit", *tail, "--config", str(gw.config)]
    out = subprocess.run([str(BINARY), *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip(), "no records"


def _approval_events(gw):
    out = _audit(gw, "export", "--format", "jsonl")
    assert out.returncode == 0, out.stderr
    events = []
    for line in out.stdout.splitlines():
        event = json.loads(line)["event"]
        if event.get("kind") == "approval":
            events.append(event["approval"])
    return events


def test_audit_records_approval_steps(gw):
    with gw.connect() as conn:
        approved = retry_pending(conn, "DELETE FROM orders WHERE id = 10")
        denied = retry_pending(conn, "DELETE FROM orders WHERE id = 11")
        gw.cli("approve", approved)
        gw.cli("deny", denied, "--reason", "audit check")
        conn.execute("DELETE FROM orders WHERE id = 10")

    wanted = {(approved, "requested"), (approved, "approved"), (approved, "consumed"),
              (denied, "requested"), (denied, "denied")}
    deadline = time.monotonic() + 10
    while True:
        events = _approval_events(gw)
        seen = {(e.get("id"), e.get("event")) for e in events}
        if wanted <= seen or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert wanted <= seen, f"missing {wanted - seen}"
    by_step = {(e["id"], e["event"]): e for e in events}
    assert by_step[(approved, "requested")]["rule"] == "deletes-need-approval"
    assert by_step[(approved, "requested")]["agent"] == "agent"
    assert by_step[(approved, "approved")]["operator"] == "alice"
    assert by_step[(denied, "denied")]["operator"] == "alice"
    assert by_step[(denied, "denied")]["reason"] == "audit check"


def test_approved_statements_have_outcomes(gw):
    """An approved statement that runs is recorded with its result, in either protocol."""
    statements = {"DELETE FROM orders WHERE id = 19": False, "DELETE FROM orders WHERE id = 20": True}
    with gw.connect() as conn:
        for sql, binary in statements.items():
            with pytest.raises(psycopg.Error) as excinfo:
                conn.execute(sql, binary=binary)
            msg, _ = refused(excinfo)
            gw.cli("approve", APPROVAL_ID.search(msg).group(0))
            assert conn.execute(sql, binary=binary).rowcount == 1

    deadline = time.monotonic() + 10
    while True:
        out = _audit(gw, "export", "--format", "jsonl")
        assert out.returncode == 0, out.stderr
        events = [json.loads(line)["event"] for line in out.stdout.splitlines()]
        # A session records the outcomes of what it forwarded in batches.
        events += [dict(o, kind="outcome", session=e["session"]) for e in events if e.get("kind") == "outcomes"
                   for o in e["outcomes"]]
        ran = {(e["session"], e["statement"]): e["text"] for e in events
               if e.get("kind") == "statement" and e.get("text") in statements and e.get("effect") == "require_approval"}
        tags = {ran[(e["session"], e["statement"])]: e.get("tag") for e in events
                if e.get("kind") == "outcome" and (e.get("session"), e.get("statement")) in ran}
        if len(tags) == len(statements) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert tags == {sql: "DELETE 1" for sql in statements}, tags


def test_pending_retry_request_survives_restart(gw):
    sql = "DELETE FROM orders WHERE id = 6"
    with gw.connect() as conn:
        approval = retry_pending(conn, sql)
    gw.stop()
    gw.start()
    assert approval in gw.cli("list").stdout
    out = gw.cli("approve", approval).stdout
    assert f"{approval} approved" in out, out
    assert order_exists(gw, 6)
    with gw.connect() as conn:
        assert conn.execute(sql).rowcount == 1
        assert_usable(conn)
    assert not order_exists(gw, 6)
    assert gw.request(approval)["state"] == "consumed"
