//! Policies in the real binary: SIGHUP reload, the read-only pack against a real catalog,
//! `drawbridge check` and `drawbridge policy test`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;


async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

// ---------------------------------------------------------------------------------------------
// 6. SIGHUP reload.

const SELECT_ONLY: &str = "version: 1
rules:
  - name: allow-reads
    effect: allow
    match: { operations: [select, function_call] }
";

const SELECT_AND_INSERT: &str = "version: 1
rules:
  - name: allow-reads
    effect: allow
    match: { operations: [select, function_call] }
  - name: allow-inserts
    effect: allow
    match: { operations: [insert] }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_policy_and_keeps_the_old_one_on_error() {
    let up = Upstream::start();
    let agent = Agent::new("reloader");
    let gw = gateway()
        .target(up.target("app"))
        .agent(&agent)
        .policy("file = \"policy.yaml\"")
        .file("policy.yaml", SELECT_ONLY)
        .start();
    let policy_path = gw.dir().join("policy.yaml");
    let (client, _m) = connect(&gw.url(&agent, "app")).await.unwrap();
    assert_eq!(count(&client, "SELECT count(*) FROM users").await, 50);
    let msg = refused(&client, "INSERT INTO users (id, name) VALUES (101, 'a')").await;
    assert!(msg.contains("default-deny"), "{msg}");

    // Replace atomically so the gateway never reads half a file.
    let replace = |contents: &str| {
        let tmp = gw.dir().join("policy.yaml.tmp");
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, &policy_path).unwrap();
    };
    let occurrences = |needle: &str| gw.logs().matches(needle).count();

    replace(SELECT_AND_INSERT);
    gw.signal("HUP");
    let logs = gw.wait_logs(Duration::from_secs(10), |l| l.contains("policy reloaded"));
    assert!(logs.contains("policy reloaded"), "no reload in the log:\n{logs}");
    // The open session and a new one both judge with the new policy.
    client
        .batch_execute("INSERT INTO users (id, name) VALUES (101, 'a')")
        .await
        .unwrap();
    let (fresh, _m2) = connect(&gw.url(&agent, "app")).await.unwrap();
    fresh
        .batch_execute("INSERT INTO users (id, name) VALUES (102, 'b')")
        .await
        .unwrap();
    refused(&fresh, "DELETE FROM users WHERE id = 101").await;

    replace("version: 1\nrules:\n  - name: broken\n    effect: perhaps\n");
    gw.signal("HUP");
    let logs = gw.wait_logs(Duration::from_secs(10), |l| l.contains("policy reload failed"));
    assert!(logs.contains("policy reload failed"), "no reload error in the log:\n{logs}");
    assert!(
        logs.lines()
            .any(|l| l.contains("policy reload failed") && l.contains("policy.yaml")),
        "the error does not name the file:\n{logs}"
    );
    assert_eq!(occurrences("policy reloaded"), 1, "{logs}");
    // The previous (select + insert) policy is still in force.
    client
        .batch_execute("INSERT INTO users (id, name) VALUES (103, 'c')")
        .await
        .unwrap();
    assert_eq!(count(&client, "SELECT count(*) FROM users").await, 53);
    refused(&client, "DELETE FROM users WHERE id = 101").await;

    // Missing file: also refused, also no change.
    std::fs::remove_file(&policy_path).unwrap();
    gw.signal("HUP");
    let logs = gw.wait_logs(Duration::from_secs(10), |l| {
        l.matches("policy reload failed").count() >= 2
    });
    assert_eq!(logs.matches("policy reload failed").count(), 2, "{logs}");
    fresh
        .batch_execute("INSERT INTO users (id, name) VALUES (104, 'd')")
        .await
        .unwrap();
    assert_eq!(up.admin("SELECT count(*) FROM users").trim(), "54");
}

// ---------------------------------------------------------------------------------------------
// 7. The read-only pack, judged with the target's real catalog.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_pack_refuses_every_write_path() {
    let up = Upstream::start();
    up.admin(
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2), (3);
         CREATE SEQUENCE s; SELECT nextval('s');
         ALTER TABLE t OWNER TO app_owner; ALTER SEQUENCE s OWNER TO app_owner;",
    );
    let agent = Agent::new("reader");
    let gw = gateway()
        .target(up.target("app"))
        .agent(&agent)
        .policy("pack = \"read-only\"")
        .start();
    let (client, _m) = connect(&gw.url(&agent, "app")).await.unwrap();
    let row = client
        .query_one("SELECT now() IS NOT NULL, lower('X')", &[])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), "x");
    client
        .batch_execute("SELECT now(), lower('X')")
        .await
        .unwrap();
    assert_eq!(count(&client, "SELECT count(*) FROM t").await, 3);

    let seq_before = up.admin("SELECT last_value || ',' || is_called FROM s");
    let search_path = up.admin("SELECT setting FROM pg_settings WHERE name = 'search_path'");
    for sql in [
        "SELECT nextval('s')",
        "SELECT setval('s', 5)",
        "SELECT set_config('search_path', 'public', false)",
        "SELECT pg_advisory_lock(1)",
        "SELECT lo_import('/etc/hosts')",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * INTO t2 FROM t",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "BEGIN READ WRITE",
        "COMMIT; INSERT INTO t VALUES (1)",
        "select pg_catalog.nextval('s')",
        "SELECT U&\"s\\0065tval\"('s', 9)",
    ] {
        refused(&client, sql).await;
        // The session stays usable, and not inside a transaction the refusal left open.
        assert_eq!(count(&client, "SELECT count(*) FROM t").await, 3, "after {sql}");
    }
    // Also through the extended protocol.
    let err = client
        .query("SELECT nextval('s')", &[])
        .await
        .expect_err("nextval over the extended protocol");
    assert_eq!(db_error(&err).0, "42501");

    assert_eq!(up.admin("SELECT count(*) FROM t").trim(), "3");
    assert_eq!(up.admin("SELECT last_value || ',' || is_called FROM s"), seq_before);
    assert_eq!(up.admin("SELECT to_regclass('public.t2') IS NULL").trim(), "t");
    assert_eq!(up.admin("SELECT count(*) FROM pg_largeobject_metadata").trim(), "0");
    assert_eq!(
        up.admin("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").trim(),
        "0"
    );
    let path_now: String = client
        .query_one("SHOW search_path", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(path_now.trim(), search_path.trim());
}

// ---------------------------------------------------------------------------------------------
// 8. `drawbridge check` and `drawbridge policy test`.

fn packs_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy/packs/tests")
}

#[test]
fn check_explains_and_exits_by_decision() {
    let agent = Agent::new("checker");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("drawbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[policy]\npack = \"production\"\nwith = {{ max_rows = 100 }}\n\n[targets.app]\nhost = \"127.0.0.1\"\ndatabase = \"app\"\nuser = \"app\"\n\n{}\n",
            agent.snippet.trim()
        ),
    )
    .unwrap();
    let check = |extra: &[&str], sql: &str| {
        let mut args = vec!["check", "--config", config.to_str().unwrap()];
        args.extend_from_slice(&["--agent", "checker", "--target", "app"]);
        args.extend_from_slice(extra);
        args.push(sql);
        let out = drawbridge(&args);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };

    let (code, out, err) = check(&[], "SELECT id FROM users WHERE id = 1");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("operations: select"), "{out}");
    assert!(out.contains("everything-else"), "{out}");
    assert!(out.contains("verdict: allow"), "{out}");

    let (code, out, err) = check(&[], "UPDATE users SET name = 'x' WHERE id = 1");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("row-limit") && out.contains("100 rows"), "{out}");

    // What the gateway refuses because it cannot count the rows, `check` refuses too.
    let (code, out, err) = check(&[], "WITH d AS (DELETE FROM users WHERE id < 10 RETURNING id) SELECT count(*) FROM d");
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("row-limit") && out.contains("cannot be counted"), "{out}");

    let (code, out, err) = check(&[], "/* hi */ truncate users");
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("operations: truncate"), "{out}");
    assert!(out.contains("no-truncate"), "{out}");
    assert!(out.contains("verdict: deny"), "{out}");

    // Each statement of a message is explained; the worst decides.
    let (code, out, _) = check(&[], "SELECT 1; DELETE FROM users");
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(out.matches("statement:").count(), 2, "{out}");
    assert!(out.contains("no-delete-without-where"), "{out}");

    let (code, out, err) = check(&["--json"], "DROP TABLE users");
    assert_eq!(code, Some(1), "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["effect"], "deny", "{v}");
    assert!(v["rules"].as_array().unwrap().iter().any(|r| r == "no-drop-table"), "{v}");
    assert_eq!(v["statements"][0]["decision"]["effect"], "deny", "{v}");

    let (code, out, _) = check(&["--json"], "SELECT 1");
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["effect"], "allow", "{v}");

    let (code, out, _) = check(&[], "SELEC 1");
    assert_eq!(code, Some(1), "unparsable SQL must not pass: {out}");
}

#[test]
fn policy_test_runs_pack_cases_and_fails_wrong_ones() {
    let dir = packs_tests();
    let files = [dir.join("production.yaml"), dir.join("read-only.yaml")];
    for f in &files {
        assert!(f.exists(), "{} missing", f.display());
    }
    let mut args = vec!["policy".as_ref(), "test".as_ref()];
    args.extend(files.iter().map(|f| f.as_os_str()));
    let out = drawbridge(&args);
    let report = text(&out.stdout);
    assert!(out.status.success(), "pack tests fail:\n{report}{}", text(&out.stderr));
    assert!(report.contains(" 0 failed"), "{report}");

    let tmp = tempfile::tempdir().unwrap();
    let wrong = tmp.path().join("wrong.yaml");
    std::fs::write(
        &wrong,
        "pack: production
cases:
  - { name: select is allowed, sql: \"SELECT 1\", expect: allow }
  - { name: truncate claimed allowed, sql: \"TRUNCATE users\", expect: allow }
  - { name: drop blamed on the wrong rule, sql: \"DROP TABLE users\", expect: deny, rule: no-truncate }
",
    )
    .unwrap();
    let out = drawbridge(&["policy".as_ref(), "test".as_ref(), wrong.as_os_str()]);
    let report = text(&out.stdout);
    assert!(!out.status.success(), "wrong expectations passed:\n{report}");
    assert!(report.contains("1 passed, 2 failed"), "{report}");
    assert!(report.contains("truncate claimed allowed"), "{report}");
    assert!(report.contains("drop blamed on the wrong rule"), "{report}");

    // A good file next to a failing one still fails the run.
    let out = drawbridge(&[
        "policy".as_ref(),
        "test".as_ref(),
        files[0].as_os_str(),
        wrong.as_os_str(),
    ]);
    assert!(!out.status.success());
}

// ---------------------------------------------------------------------------------------------
// 8. Writes that pin a unique key run without the row-limit guard; nothing else does.

const ROW_LIMIT_TWO: &str = "version: 1
rules:
  - name: row-limit
    effect: allow
    max_rows: 2
    match: { operations: [update, delete] }
  - name: everything-else
    effect: allow
";

/// Ten rows under a primary key, owned by the target's role.
const KEYED: &str = "CREATE TABLE keyed (id bigint PRIMARY KEY, grp int, v int);
     INSERT INTO keyed SELECT g, 1, 0 FROM generate_series(1, 10) g;
     ALTER TABLE keyed OWNER TO app_owner;";

fn row_limit_two(up: &Upstream, agent: &Agent) -> GatewayBuilder {
    gateway()
        .target(up.target("app"))
        .agent(agent)
        .policy("file = \"policy.yaml\"")
        .file("policy.yaml", ROW_LIMIT_TWO)
        .http()
}

fn metric(gw: &Gateway, name: &str) -> u64 {
    let (status, body) = gw.http_get("/metrics");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} present"))
}

fn bounded_by_key(gw: &Gateway) -> u64 {
    metric(gw, "drawbridge_writes_bounded_by_key_total")
}

fn key_checks(gw: &Gateway, result: &str) -> u64 {
    metric(gw, &format!("drawbridge_key_checks_total{{result=\"{result}\"}}"))
}

/// Key writes until one skips the guard (the background check of the keys has answered).
async fn until_bounded(gw: &Gateway, client: &tokio_postgres::Client, sql: &str, before: u64) {
    for _ in 0..100 {
        client.batch_execute(sql).await.unwrap();
        if bounded_by_key(gw) > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{sql} never skipped the guard again");
}

/// Past the check interval, `UPDATE keyed SET v = {v} WHERE {pin}` is refused each time it is
/// tried (before and after the check answers), and changes nothing.
async fn stays_guarded(gw: &Gateway, up: &Upstream, client: &tokio_postgres::Client, v: i32, pin: &str, bounded: u64) {
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..5 {
        refused(client, &format!("UPDATE keyed SET v = {v} WHERE {pin}")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(up.admin(&format!("SELECT count(*) FROM keyed WHERE v = {v}")).trim(), "0");
    assert_eq!(bounded_by_key(gw), bounded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_changed_outside_the_gateway_stop_vouching_within_the_check_interval() {
    let up = Upstream::start();
    up.admin(KEYED);
    let agent = Agent::new("keyed");
    let gw = row_limit_two(&up, &agent).server("key_check_secs = 1").start();
    let (a, _m) = connect(&gw.url(&agent, "app")).await.unwrap();
    a.batch_execute("UPDATE keyed SET v = 1 WHERE id = 1").await.unwrap();
    assert_eq!(bounded_by_key(&gw), 1);

    // Past the interval the keys are asked about again; unchanged, they vouch again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    until_bounded(&gw, &a, "UPDATE keyed SET v = 2 WHERE id = 2", 1).await;
    let bounded = bounded_by_key(&gw);
    assert!(key_checks(&gw, "confirmed") >= 1);
    assert_eq!(key_checks(&gw, "changed"), 0);

    // A DBA's own connection drops the key and adds duplicates; the agent's session, open
    // all along, must go back to the guard.
    up.admin(
        "ALTER TABLE keyed DROP CONSTRAINT keyed_pkey;
         INSERT INTO keyed VALUES (3, 2, 0), (3, 2, 0);",
    );
    stays_guarded(&gw, &up, &a, 8, "id = 3", bounded).await;
    assert!(key_checks(&gw, "changed") >= 1);

    // The key back: trusted again without a new session.
    up.admin("DELETE FROM keyed WHERE grp = 2; ALTER TABLE keyed ADD PRIMARY KEY (id);");
    until_bounded(&gw, &a, "UPDATE keyed SET v = 4 WHERE id = 4", bounded).await;
    let bounded = bounded_by_key(&gw);

    // Renamed columns: `id` now names a column every row shares.
    up.admin("ALTER TABLE keyed RENAME COLUMN id TO old_id; ALTER TABLE keyed RENAME COLUMN grp TO id;");
    stays_guarded(&gw, &up, &a, 9, "id = 1", bounded).await;
    assert!(key_checks(&gw, "changed") >= 2);
    assert_eq!(key_checks(&gw, "failed"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_writes_pinned_to_a_unique_key_skip_the_row_limit_guard() {
    let up = Upstream::start();
    up.admin(KEYED);
    up.admin(
        "CREATE TABLE deferred (k int UNIQUE DEFERRABLE INITIALLY DEFERRED, v int);
         CREATE TABLE partial (k int, v int);
         CREATE UNIQUE INDEX ON partial (k) WHERE v > 0;
         INSERT INTO partial VALUES (1, 0), (1, 0), (1, 0);
         ALTER TABLE deferred OWNER TO app_owner;
         ALTER TABLE partial OWNER TO app_owner;",
    );
    let agent = Agent::new("keyed");
    let gw = row_limit_two(&up, &agent).start();
    let (a, _m) = connect(&gw.url(&agent, "app")).await.unwrap();
    let v = |id: i64| up.admin(&format!("SELECT v FROM keyed WHERE id = {id}")).trim().to_owned();

    // Pinned by the primary key: simple protocol, then extended with inferred parameter types.
    a.batch_execute("UPDATE keyed SET v = 1 WHERE id = 3").await.unwrap();
    assert_eq!(a.execute("UPDATE keyed SET v = $1 WHERE id = $2 AND grp = 1", &[&2i32, &4i64]).await.unwrap(), 1);
    assert_eq!(a.execute("DELETE FROM keyed WHERE id = $1", &[&10i64]).await.unwrap(), 1);
    assert_eq!((v(3), v(4)), ("1".into(), "2".into()));
    assert_eq!(bounded_by_key(&gw), 3);

    // Not a whole key, an OR, a deferrable key, a partial key: guarded, rolled back.
    for sql in [
        "UPDATE keyed SET v = 7 WHERE grp = 1",
        "UPDATE keyed SET v = 7 WHERE id = 1 OR grp = 1",
        "UPDATE partial SET v = 0 WHERE k = 1",
    ] {
        let msg = refused(&a, sql).await;
        assert!(msg.contains("row limit") || msg.contains("over the limit"), "{sql}: {msg}");
    }
    a.batch_execute("BEGIN; INSERT INTO deferred VALUES (1, 0), (1, 0), (1, 0)").await.unwrap();
    refused(&a, "UPDATE deferred SET v = 1 WHERE k = 1").await;
    a.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(up.admin("SELECT count(*) FROM keyed WHERE v = 7").trim(), "0");
    assert_eq!(bounded_by_key(&gw), 3);

    // A key dropped inside the agent's own transaction stops vouching at once.
    a.batch_execute("BEGIN; ALTER TABLE keyed DROP CONSTRAINT keyed_pkey; INSERT INTO keyed VALUES (3, 2, 0), (3, 2, 0)")
        .await
        .unwrap();
    refused(&a, "UPDATE keyed SET v = 8 WHERE id = 3").await;
    a.batch_execute("ROLLBACK").await.unwrap();

    // Another session loads the catalog while the drop is uncommitted, so it still sees the
    // key; once the drop commits, that catalog must not vouch for the key any more.
    a.batch_execute("BEGIN; ALTER TABLE keyed DROP CONSTRAINT keyed_pkey; INSERT INTO keyed VALUES (3, 2, 0), (3, 2, 0)")
        .await
        .unwrap();
    let (b, _m2) = connect(&gw.url(&agent, "app")).await.unwrap();
    b.batch_execute("SELECT 1").await.unwrap();
    a.batch_execute("COMMIT").await.unwrap();
    refused(&b, "UPDATE keyed SET v = 8 WHERE id = 3").await;
    let err = a.execute("UPDATE keyed SET v = 8 WHERE id = $1", &[&3i64]).await.unwrap_err();
    assert_eq!(db_error(&err).0, "42501", "{err}");
    let (c, _m3) = connect(&gw.url(&agent, "app")).await.unwrap();
    refused(&c, "UPDATE keyed SET v = 8 WHERE id = 3").await;
    assert_eq!(up.admin("SELECT count(*) FROM keyed WHERE v = 8").trim(), "0");
    assert_eq!(bounded_by_key(&gw), 3);

    // A key the agent adds back is trusted again by the sessions that come after.
    a.batch_execute("DELETE FROM keyed WHERE grp = 2").await.unwrap();
    a.batch_execute("ALTER TABLE keyed ADD PRIMARY KEY (id)").await.unwrap();
    let (d, _m4) = connect(&gw.url(&agent, "app")).await.unwrap();
    d.batch_execute("UPDATE keyed SET v = 5 WHERE id = 5").await.unwrap();
    assert_eq!(v(5), "5");
    assert_eq!(bounded_by_key(&gw), 4);
}
