//! The audit trail of the real binary: durability across `kill -9`, tamper detection by
//! `drawbridge audit verify`, two gateways on one PostgreSQL store, redaction of secrets, and
//! `audit replay` / `search` / `tail`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// `[audit]` on the embedded store, small checkpoints so tests see several.
const AUDIT_SQLITE: &str = "[audit]\ninstance = \"gw1\"\ncheckpoint_every = 5\ncheckpoint_secs = 1";

/// Every record of `drawbridge audit export --format jsonl`, parsed.
fn export(gw: &Gateway) -> Vec<Value> {
    let out = gw.cli(&["audit", "export", "--format", "jsonl"]);
    assert!(
        out.status.success(),
        "audit export failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad export line {l}: {e}")))
        .collect()
}

fn event_str<'a>(r: &'a Value, field: &str) -> &'a str {
    r["event"][field].as_str().unwrap_or("")
}

fn kind(r: &Value) -> &str {
    event_str(r, "kind")
}

/// Waits until the store holds `n` `session_closed` records (the writer works in the background).
fn wait_closed_sessions(gw: &Gateway, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let records = export(gw);
        let closed = records.iter().filter(|r| kind(r) == "session_closed").count();
        if closed >= n {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "only {closed} of {n} sessions closed in the store; logs:\n{}",
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn verify(config: &Path) -> (Option<i32>, String) {
    let out = drawbridge(&[
        "audit".as_ref(),
        "verify".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    (
        out.status.code(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}


// ---------------------------------------------------------------------------------------------
// 1. kill -9 mid-load: every row that reached the database has its statement in the log.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_row_is_audited_across_kill_9() {
    let up = Upstream::start();
    up.admin(
        "CREATE TABLE marks (id bigserial PRIMARY KEY, marker text NOT NULL UNIQUE);
         ALTER TABLE marks OWNER TO app_owner;",
    );
    let agent = Agent::new("loader");
    let mut gw = gateway()
        .target(up.target("app"))
        .agent(&agent)
        .extra(AUDIT_SQLITE)
        .start();

    let url = gw.url(&agent, "app");
    let mut tasks = Vec::new();
    for t in 0..4 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let (client, _m) = connect(&url).await.unwrap();
            let mut acked = 0u64;
            for i in 0.. {
                let sql = format!("INSERT INTO marks (marker) VALUES ('k{t}-{i}')");
                if client.batch_execute(&sql).await.is_err() {
                    break;
                }
                acked += 1;
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    gw.kill9();
    let mut acked = 0;
    for t in tasks {
        acked += tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("a client hung after the gateway died")
            .unwrap();
    }
    assert!(acked > 20, "too little load to mean anything: {acked} inserts");

    gw.restart();
    let (code, report) = verify(&gw.config_path);
    assert_eq!(code, Some(0), "verify after kill -9 and restart:\n{report}\nlogs:\n{}", gw.logs());

    let rows = up.admin("SELECT marker FROM marks");
    let markers: Vec<&str> = rows.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert!(
        markers.len() as u64 >= acked,
        "{} rows but {acked} acknowledged inserts",
        markers.len()
    );
    let audited: BTreeSet<String> = export(&gw)
        .iter()
        .filter(|r| kind(r) == "statement")
        .map(|r| event_str(r, "text").to_owned())
        .collect();
    let missing: Vec<&&str> = markers
        .iter()
        .filter(|m| !audited.iter().any(|t| t.contains(&format!("'{m}'"))))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} committed rows have no statement record, e.g. {:?}",
        missing.len(),
        markers.len(),
        &missing[..missing.len().min(5)]
    );

    // The restarted gateway continues the same chain.
    let (client, _m) = connect(&url).await.unwrap();
    client
        .batch_execute("INSERT INTO marks (marker) VALUES ('after-restart')")
        .await
        .unwrap();
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !export(&gw)
        .iter()
        .any(|r| event_str(r, "text").contains("'after-restart'"))
    {
        assert!(Instant::now() < deadline, "post-restart statement never reached the store");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, report) = verify(&gw.config_path);
    assert_eq!(code, Some(0), "verify after more traffic:\n{report}");
    assert!(report.contains("OK: 1 streams verified"), "{report}");
}

// ---------------------------------------------------------------------------------------------
// 2. Tampering with the SQLite store is found and the record named.

/// A copy of the stopped gateway's store and public key, with a config naming them.
fn copy_store(gw: &Gateway) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(gw.dir().join("audit.db"), dir.path().join("audit.db")).unwrap();
    std::fs::copy(gw.dir().join("audit.key.pub"), dir.path().join("audit.key.pub")).unwrap();
    std::fs::write(
        dir.path().join("drawbridge.toml"),
        "[audit]\ninstance = \"gw1\"\n",
    )
    .unwrap();
    dir
}

fn sql_exec(db: &Path, sql: &str) {
    let store = audit::store::SqliteStore::open(db).unwrap();
    store.connection().execute_batch(sql).unwrap();
}

fn sql_int(db: &Path, sql: &str) -> i64 {
    let store = audit::store::SqliteStore::open(db).unwrap();
    store.connection().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Verify fails (exit 1, not a usage error) and a PROBLEM line holds every one of `needles`.
fn assert_problem(dir: &Path, what: &str, needles: &[&str]) {
    let (code, report) = verify(&dir.join("drawbridge.toml"));
    assert_eq!(code, Some(1), "{what}: verify should fail:\n{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("PROBLEM") && needles.iter().all(|n| l.contains(n))),
        "{what}: no PROBLEM line with {needles:?}:\n{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_edited_deleted_swapped_and_truncated_records() {
    let up = Upstream::start();
    let agent = Agent::new("tamper");
    let mut gw = gateway()
        .target(up.target("app"))
        .agent(&agent)
        .extra(AUDIT_SQLITE)
        .start();
    {
        let (client, _m) = connect(&gw.url(&agent, "app")).await.unwrap();
        for i in 0..20 {
            client
                .batch_execute(&format!("SELECT 'marker-{i}'"))
                .await
                .unwrap();
        }
        refused(&client, "TRUNCATE users").await;
    }
    wait_closed_sessions(&gw, 1);
    // checkpoint_secs = 1: give the writer time to seal the tail.
    std::thread::sleep(Duration::from_millis(2500));
    gw.kill9();

    let (code, report) = verify(&gw.config_path);
    assert_eq!(code, Some(0), "untouched store must verify:\n{report}");
    assert!(!report.contains("not yet sealed"), "tail not sealed:\n{report}");
    let db = gw.dir().join("audit.db");
    // Fold the WAL into the main file so a copy of it is the whole store.
    let store = audit::store::SqliteStore::open(&db).unwrap();
    store
        .connection()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(store);
    let last = sql_int(&db, "SELECT max(seq) FROM drawbridge_audit_records");
    let k = sql_int(
        &db,
        "SELECT seq FROM drawbridge_audit_records WHERE kind = 'statement' AND event LIKE '%marker-7''%'",
    );
    assert!(k > 1 && k + 1 < last, "seq {k} of {last}");

    let edited = copy_store(&gw);
    sql_exec(
        &edited.path().join("audit.db"),
        &format!("UPDATE drawbridge_audit_records SET event = replace(event, 'marker-7', 'marker-8') WHERE seq = {k}"),
    );
    assert_problem(edited.path(), "edited event", &[&format!("seq {k}:"), "edited"]);

    let deleted = copy_store(&gw);
    sql_exec(
        &deleted.path().join("audit.db"),
        &format!("DELETE FROM drawbridge_audit_records WHERE seq = {k}"),
    );
    assert_problem(deleted.path(), "deleted record", &[&format!("seq {k}:"), "missing"]);

    let swapped = copy_store(&gw);
    sql_exec(
        &swapped.path().join("audit.db"),
        &format!(
            "UPDATE drawbridge_audit_records SET seq = -1 WHERE seq = {k};
             UPDATE drawbridge_audit_records SET seq = {k} WHERE seq = {k} + 1;
             UPDATE drawbridge_audit_records SET seq = {k} + 1 WHERE seq = -1;"
        ),
    );
    assert_problem(swapped.path(), "swapped records", &[&format!("seq {k}:")]);

    let truncated = copy_store(&gw);
    let tdb = truncated.path().join("audit.db");
    let cp = sql_int(&tdb, "SELECT max(seq) FROM drawbridge_audit_checkpoints");
    assert!(cp >= 3, "no checkpoint to truncate under (newest at seq {cp})");
    sql_exec(
        &tdb,
        &format!("DELETE FROM drawbridge_audit_records WHERE seq >= {}", cp - 1),
    );
    assert_problem(
        truncated.path(),
        "truncated tail",
        &[&format!("seq {}:", cp - 1), "truncated"],
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Two gateways, one PostgreSQL store.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_a_postgres_store() {
    let up = Upstream::start();
    up.pg
        .create_database("auditstore", up.pg.superuser(), None)
        .unwrap();
    let store_url = up.pg.admin_url("auditstore");
    let agent = Agent::new("twin");
    let audit_pg = |instance: &str| {
        format!(
            "[audit]\nstore = \"postgres\"\npostgres_url = {}\ninstance = \"{instance}\"\ncheckpoint_every = 5\ncheckpoint_secs = 1",
            toml_str(&store_url)
        )
    };
    // Started at the same time: both create the schema on first use.
    let (gw_a, gw_b) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            gateway()
                .target(up.target("app"))
                .agent(&agent)
                .extra(&audit_pg("gw-a"))
                .start()
        });
        let b = s.spawn(|| {
            gateway()
                .target(up.target("app"))
                .agent(&agent)
                .extra(&audit_pg("gw-b"))
                .start()
        });
        (a.join().unwrap(), b.join().unwrap())
    });

    let mut tasks = Vec::new();
    for (name, gw) in [("a", &gw_a), ("b", &gw_b)] {
        for t in 0..3 {
            let url = gw.url(&agent, "app");
            tasks.push(tokio::spawn(async move {
                let (client, _m) = connect(&url).await.unwrap();
                for i in 0..20 {
                    client
                        .batch_execute(&format!("SELECT '{name}-{t}-{i}'"))
                        .await
                        .unwrap();
                }
                refused(&client, "TRUNCATE users").await;
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Both writers: sessions closed in the store, tails sealed (checkpoint_secs = 1).
    wait_closed_sessions(&gw_a, 6);
    std::thread::sleep(Duration::from_millis(2500));

    let key = |gw: &Gateway| {
        std::fs::read_to_string(gw.dir().join("audit.key.pub"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let verifier = tempfile::tempdir().unwrap();
    let write_cfg = |keys: &[String]| {
        let keys: Vec<String> = keys.iter().map(|k| toml_str(k)).collect();
        let path = verifier.path().join("drawbridge.toml");
        std::fs::write(
            &path,
            format!(
                "[audit]\nstore = \"postgres\"\npostgres_url = {}\nkey_file = \"absent.key\"\ntrusted_keys = [{}]\n",
                toml_str(&store_url),
                keys.join(", ")
            ),
        )
        .unwrap();
        path
    };
    let (code, report) = verify(&write_cfg(&[key(&gw_a), key(&gw_b)]));
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("stream gw-a:"), "{report}");
    assert!(report.contains("stream gw-b:"), "{report}");
    assert!(report.contains("OK: 2 streams verified"), "{report}");

    // Each statement is in its own gateway's stream, exactly once.
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in export(&gw_a) {
        if kind(&r) == "statement" {
            seen.entry(event_str(&r, "text").to_owned())
                .or_default()
                .push(r["stream"].as_str().unwrap().to_owned());
        }
    }
    for name in ["a", "b"] {
        for t in 0..3 {
            for i in 0..20 {
                let sql = format!("SELECT '{name}-{t}-{i}'");
                assert_eq!(
                    seen.get(&sql).map(Vec::as_slice),
                    Some(&[format!("gw-{name}")][..]),
                    "{sql}"
                );
            }
        }
    }

    // Verify trusts only the keys it is given: gw-b's checkpoints are then unvouched for.
    let (code, report) = verify(&write_cfg(&[key(&gw_a)]));
    assert_ne!(code, Some(0), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.contains("stream gw-b") && l.contains("untrusted key")),
        "{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Passwords in role statements never reach storage.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_passwords_are_redacted_everywhere() {
    let up = Upstream::start();
    let agent = Agent::new("sneaky");
    let gw = gateway()
        .target(up.target("app"))
        .agent(&agent)
        .extra(AUDIT_SQLITE)
        .start();
    {
        let (client, _m) = connect(&gw.url(&agent, "app")).await.unwrap();
        refused(&client, "CREATE ROLE x LOGIN PASSWORD 'S3cretPW!'").await;
        refused(&client, "ALTER ROLE app_owner WITH PASSWORD 'An0therPW!'").await;
        let n: i64 = client
            .query_one("SELECT count(*) FROM users", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 50);
    }
    let records = wait_closed_sessions(&gw, 1);
    let create = records
        .iter()
        .find(|r| kind(r) == "statement" && event_str(r, "text").contains("CREATE ROLE x"))
        .expect("the refused CREATE ROLE is recorded");
    assert_eq!(event_str(create, "effect"), "deny");
    assert!(
        create["event"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "no-privilege-changes"),
        "{create}"
    );
    assert!(
        records
            .iter()
            .any(|r| kind(r) == "statement" && event_str(r, "text").contains("ALTER ROLE app_owner")),
        "the refused ALTER ROLE is recorded"
    );
    let exported = text(&gw.cli(&["audit", "export"]).stdout);
    for secret in ["S3cretPW!", "An0therPW!"] {
        assert!(!exported.contains(secret), "{secret} in the export:\n{exported}");
    }
    assert_eq!(up.admin("SELECT count(*) FROM pg_roles WHERE rolname = 'x'").trim(), "0");

    // Not in the journal, the SQLite files or the log either.
    let mut stack = vec![gw.dir().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            for secret in ["S3cretPW!", "An0therPW!"] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret} found in {}",
                    path.display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. replay, search, tail.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_search_and_tail_show_sessions() {
    let up = Upstream::start();
    let alice = Agent::new("alice");
    let bob = Agent::new("bob");
    let gw = gateway()
        .target(up.target("app"))
        .agent(&alice)
        .agent(&bob)
        .extra(AUDIT_SQLITE)
        .start();
    {
        let (client, _m) = connect(&gw.url(&alice, "app")).await.unwrap();
        client.batch_execute("SELECT 'alice-marker'").await.unwrap();
        refused(&client, "TRUNCATE users").await;
        client
            .batch_execute("DELETE FROM users WHERE id = 999")
            .await
            .unwrap();
        refused(&client, "UPDATE users SET name = 'x'").await;
    }
    {
        let (client, _m) = connect(&gw.url(&bob, "app")).await.unwrap();
        refused(&client, "DROP TABLE users").await;
    }
    let records = wait_closed_sessions(&gw, 2);
    let session = records
        .iter()
        .find(|r| kind(r) == "session_opened" && event_str(r, "agent") == "alice")
        .map(|r| event_str(r, "session").to_owned())
        .expect("alice's session_opened");

    let out = gw.cli(&["audit", "replay", &session]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let replay = text(&out.stdout);
    for needle in [
        "connect",
        "agent alice",
        "SELECT 'alice-marker'",
        "TRUNCATE users",
        "decision: deny by no-truncate",
        "DELETE FROM users WHERE id = 999",
        "decision: allow by row-limit",
        "UPDATE users SET name = 'x'",
        "decision: deny by no-update-without-where",
        "disconnect",
    ] {
        assert!(replay.contains(needle), "replay lacks {needle:?}:\n{replay}");
    }
    assert!(!replay.contains("DROP TABLE"), "bob's statement in alice's replay:\n{replay}");
    let pos = |s: &str| replay.find(s).unwrap();
    assert!(pos("alice-marker") < pos("TRUNCATE") && pos("TRUNCATE") < pos("DELETE FROM"));
    let out = gw.cli(&["audit", "replay", "no-such-session"]);
    assert!(!out.status.success(), "replay of an unknown session succeeded");

    let out = gw.cli(&["audit", "search", "--agent", "alice", "--decision", "deny"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let found = text(&out.stdout);
    let lines: Vec<&str> = found.lines().collect();
    assert_eq!(lines.len(), 2, "alice's refusals:\n{found}");
    assert!(lines.iter().all(|l| l.contains(" deny ")), "{found}");
    assert!(found.contains("TRUNCATE users") && found.contains("UPDATE users"), "{found}");
    assert!(!found.contains("DROP TABLE") && !found.contains("DELETE FROM"), "{found}");

    let out = gw.cli(&["audit", "search", "--decision", "deny"]);
    let all_denied = text(&out.stdout);
    assert_eq!(all_denied.lines().count(), 3, "{all_denied}");
    assert!(all_denied.contains("DROP TABLE users"), "{all_denied}");

    let out = gw.cli(&["audit", "search", "--agent", "bob", "--json"]);
    let bob_records: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(bob_records.iter().any(|r| kind(r) == "session_opened"));
    assert!(bob_records.iter().all(|r| {
        r["event"]["session"] != Value::Null && event_str(r, "text") != "TRUNCATE users"
    }));

    let out = gw.cli(&["audit", "tail", "-n", "3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tail = text(&out.stdout);
    assert_eq!(tail.lines().count(), 3, "{tail}");
    assert!(tail.lines().last().unwrap().contains("session_closed"), "{tail}");
}

/// Each statement that ran has an outcome record: command tag, rows and duration, or the
/// target's error, in the simple and the extended protocol alike.
#[tokio::test(flavor = "multi_thread")]
async fn every_statement_that_runs_has_an_outcome() {
    let up = Upstream::start();
    let agent = Agent::new("alice");
    let gw = gateway().target(up.target("app")).agent(&agent).extra(AUDIT_SQLITE).start();
    {
        let (client, _m) = connect(&gw.url(&agent, "app")).await.unwrap();
        client.batch_execute("SELECT 'simple-marker'").await.unwrap();
        let rows = client.query("SELECT id FROM users WHERE id <= $1", &[&2i32]).await.unwrap();
        assert_eq!(rows.len(), 2);
        client.batch_execute("SELECT 1/0").await.unwrap_err();
    }
    let records = wait_closed_sessions(&gw, 1);
    let statement = |needle: &str| {
        records
            .iter()
            .find(|r| kind(r) == "statement" && event_str(r, "text").contains(needle))
            .and_then(|r| r["event"]["statement"].as_u64())
            .unwrap_or_else(|| panic!("no statement record for {needle}: {records:#?}"))
    };
    // The session records what came of its statements in batches, in order.
    let batches: Vec<&Value> = records.iter().filter(|r| kind(r) == "outcomes").collect();
    assert!(!batches.is_empty(), "{records:#?}");
    let items: Vec<&Value> = batches.iter().flat_map(|b| b["event"]["outcomes"].as_array().expect("outcomes list")).collect();
    let outcome = |id: u64| {
        items
            .iter()
            .find(|o| o["statement"].as_u64() == Some(id))
            .unwrap_or_else(|| panic!("no outcome for statement {id}: {records:#?}"))
    };
    let ids: Vec<u64> = items.iter().filter_map(|o| o["statement"].as_u64()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let simple = outcome(statement("simple-marker"));
    assert_eq!(simple["tag"], "SELECT 1", "{simple}");
    assert_eq!(simple["rows"], 1, "{simple}");
    assert!(simple["duration_us"].as_u64().is_some(), "{simple}");
    let extended = outcome(statement("WHERE id <= $1"));
    assert_eq!(extended["tag"], "SELECT 2", "{extended}");
    let failed = outcome(statement("1/0"));
    assert!(failed["error"].as_str().unwrap_or_default().contains("division by zero"), "{failed}");

    // Replay shows each outcome under its statement, not where the batch was recorded.
    let session = batches[0]["event"]["session"].as_str().unwrap().to_owned();
    let out = gw.cli(&["audit", "replay", &session]);
    let replay = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = replay.lines().collect();
    let after = |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}:\n{replay}"));
    assert!(after("simple-marker") < after("result: SELECT 1"), "{replay}");
    assert!(after("result: SELECT 1") < after("WHERE id <= $1"), "{replay}");
    assert!(after("WHERE id <= $1") < after("result: SELECT 2"), "{replay}");
    assert!(after("result: SELECT 2") < after("1/0"), "{replay}");
}
