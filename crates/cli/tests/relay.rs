//! What clients see through the gateway equals what they see directly.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, TryStreamExt};

fn setup() -> (Upstream, Agent, Gateway) {
    let up = Upstream::start();
    let agent = Agent::new("claude");
    let gw = gateway().target(up.target("app")).agent(&agent).start();
    (up, agent, gw)
}

const PSQL_SCRIPT: &str = r#"
SELECT current_user, current_database();
SELECT * FROM users ORDER BY id;
SELECT id, avatar, length(name) FROM users WHERE id <= 5 ORDER BY id;
SELECT count(*), sum(id), string_agg(name, ',' ORDER BY id) FROM users;
SELECT g, g * 1.5, md5(g::text) FROM generate_series(1, 2000) g;
SELECT NULL, '', 'tab	here', E'new\nline', 'quote''s', '\x00ff'::bytea, 1e300::float8, 'NaN'::numeric;
SELECT name FROM users WHERE email = 'nobody';
BEGIN;
UPDATE users SET name = name WHERE id = 1 RETURNING id;
ROLLBACK;
SELECT 'after transaction';
"#;

#[test]
fn psql_output_matches_direct() {
    let (up, agent, gw) = setup();
    let through = psql(&gw.url(&agent, "app"), PSQL_SCRIPT);
    let direct = psql(&up.direct_url(), PSQL_SCRIPT);
    assert!(direct.status.success(), "{}", text(&direct.stderr));
    assert!(through.status.success(), "{}", text(&through.stderr));
    assert_eq!(text(&through.stdout), text(&direct.stdout));
    assert!(text(&through.stdout).contains("after transaction"));
}

#[test]
fn psql_copy_both_ways() {
    let (up, agent, gw) = setup();
    let dir = tempfile::tempdir().unwrap();
    for (url, table) in [
        (gw.url(&agent, "app"), "copy_gateway"),
        (up.direct_url(), "copy_direct"),
    ] {
        let file = dir.path().join(format!("{table}.tsv"));
        let script = format!(
            "\\copy (SELECT * FROM users ORDER BY id) TO '{f}'\n\\copy {table} FROM '{f}'\n\\copy (SELECT * FROM users WHERE id < 4 ORDER BY id) TO STDOUT WITH (FORMAT csv)\nSELECT count(*) FROM {table};\n",
            f = file.display()
        );
        let out = psql(&url, &script);
        assert!(out.status.success(), "{table}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.ends_with("50\n"), "{table}: {stdout}");
        assert!(
            stdout.starts_with("COPY 50\nCOPY 50\n1,user 1 ✓,u1@example.com,\\x0100ff\n"),
            "{stdout}"
        );
    }
    let gw_rows = up.admin("SELECT * FROM copy_gateway ORDER BY id");
    let direct_rows = up.admin("SELECT * FROM copy_direct ORDER BY id");
    assert_eq!(gw_rows, direct_rows);
    assert_eq!(gw_rows.lines().count(), 50);
}

#[test]
fn non_utf8_bytes_pass_unchanged() {
    let up = Upstream::start();
    up.pg
        .create_database("raw", "app_owner", Some("SQL_ASCII"))
        .unwrap();
    up.pg
        .psql_db(
            "raw",
            "CREATE TABLE blobs (id int, t text, b bytea);
             INSERT INTO blobs VALUES (1, E'caf\\xe9 \\xff\\xfe end', '\\xfffe00'::bytea),
                                      (2, E'\\x80\\x81', NULL);
             ALTER TABLE blobs OWNER TO app_owner;",
        )
        .unwrap();
    let agent = Agent::new("claude");
    let gw = gateway()
        .target(TargetSpec::new("raw", up.pg.port(), "raw", "app_owner").password(&up.app_password))
        .agent(&agent)
        .start();
    let script = "SET client_encoding = 'SQL_ASCII';\nSELECT * FROM blobs ORDER BY id;\nSELECT b, t FROM blobs WHERE id = 1;\n";
    let through = psql(&gw.url(&agent, "raw"), script);
    let direct = psql(&up.pg.url("app_owner", &up.app_password, "raw"), script);
    assert!(through.status.success(), "{}", text(&through.stderr));
    assert!(direct.status.success(), "{}", text(&direct.stderr));
    assert_eq!(through.stdout, direct.stdout);
    assert!(
        through.stdout.windows(2).any(|w| w == [0xff, 0xfe]),
        "raw bytes missing"
    );
}

/// Statement text that is not UTF-8, or decodes to bytes that are not, is valid in a SQL_ASCII
/// database and must behave as it does directly.
#[test]
fn non_utf8_statement_text_in_sql_ascii_database() {
    let up = Upstream::start();
    up.pg
        .create_database("raw", "app_owner", Some("SQL_ASCII"))
        .unwrap();
    let agent = Agent::new("claude");
    let gw = gateway()
        .target(TargetSpec::new("raw", up.pg.port(), "raw", "app_owner").password(&up.app_password))
        .agent(&agent)
        .start();
    // Raw non-UTF-8 bytes in the text are judged (one byte per character keeps every quote
    // and separator where the server sees it) and forwarded untouched.
    let mut script = b"SET client_encoding = 'SQL_ASCII';\nSELECT 'caf".to_vec();
    script.push(0xe9);
    script.extend_from_slice(b"' AS raw, convert_to('x', 'SQL_ASCII') AS b;\n");
    let through = psql_args(&gw.url(&agent, "raw"), &script, &[]);
    let direct = psql_args(
        &up.pg.url("app_owner", &up.app_password, "raw"),
        &script,
        &[],
    );
    assert!(direct.status.success(), "{}", text(&direct.stderr));
    assert!(through.status.success(), "{}", text(&through.stderr));
    assert_eq!(through.stdout, direct.stdout);
    assert!(through.stdout.contains(&0xe9), "the raw byte comes back untouched");

    // An E'' escape that spells a non-UTF-8 byte is something the gateway's parser (which
    // reads UTF-8) rejects; it is refused with the parser's reason rather than guessed at.
    let escaped = b"SELECT E'\\x80\\x81' AS escaped;\n".to_vec();
    let through = psql_args(&gw.url(&agent, "raw"), &escaped, &["-v", "ON_ERROR_STOP=1"]);
    assert!(!through.status.success());
    let err = text(&through.stderr);
    assert!(err.contains("drawbridge:") && err.contains("invalid byte sequence"), "{err}");
}

/// id, name, email, avatar, id * 1000, id / 3, id is even.
type UserRow = (i32, String, Option<String>, Option<Vec<u8>>, i64, f64, bool);

type Rows = Vec<Vec<Option<String>>>;

async fn simple_rows(client: &tokio_postgres::Client, sql: &str) -> Rows {
    client
        .simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_queries_match_direct() {
    let (up, agent, gw) = setup();
    let mut results = Vec::new();
    for url in [gw.url(&agent, "app"), up.direct_url()] {
        let (client, _msgs) = connect(&url).await.unwrap();
        let simple = simple_rows(
            &client,
            "SELECT * FROM users ORDER BY id; SELECT 1, NULL, 'x'",
        )
        .await;

        // Extended protocol with binary results (tokio-postgres always asks for binary).
        let rows = client
            .query(
                "SELECT id, name, email, avatar, id::int8 * 1000, id::float8 / 3, id % 2 = 0 FROM users WHERE id > $1 ORDER BY id",
                &[&40i32],
            )
            .await
            .unwrap();
        let typed: Vec<UserRow> = rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                )
            })
            .collect();

        // A named prepared statement used repeatedly.
        let stmt = client
            .prepare("SELECT name FROM users WHERE id = $1")
            .await
            .unwrap();
        let columns: Vec<_> = stmt
            .columns()
            .iter()
            .map(|c| (c.name().to_owned(), c.type_().oid()))
            .collect();
        let mut names = Vec::new();
        for id in [1i32, 2, 3, 49, 1000] {
            names.push(
                client
                    .query_opt(&stmt, &[&id])
                    .await
                    .unwrap()
                    .map(|r| r.get::<_, String>(0)),
            );
        }

        // Pipelined: all futures in flight at once.
        let pipelined = futures_util::future::try_join_all((0..40i32).map(|i| {
            let client = &client;
            async move {
                client
                    .query_one("SELECT $1::int4 * 2, pg_backend_pid() > 0", &[&i])
                    .await
            }
        }))
        .await
        .unwrap();
        let pipelined: Vec<(i32, bool)> = pipelined.iter().map(|r| (r.get(0), r.get(1))).collect();

        let err = client.query("SELECT 1/0", &[]).await.unwrap_err();
        let after = client
            .query_one("SELECT 'ok'::text", &[])
            .await
            .unwrap()
            .get::<_, String>(0);
        results.push((
            simple,
            typed,
            columns,
            names,
            pipelined,
            db_error(&err),
            after,
        ));
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0].1.len(), 10);
    assert_eq!(results[0].4.len(), 40);
    assert_eq!(results[0].5 .0, "22012");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_copy_in_and_out() {
    let (up, agent, gw) = setup();
    let mut outs = Vec::new();
    for (url, table) in [
        (gw.url(&agent, "app"), "copy_gateway"),
        (up.direct_url(), "copy_direct"),
    ] {
        let (client, _msgs) = connect(&url).await.unwrap();
        let stream = client
            .copy_out("COPY (SELECT * FROM users ORDER BY id) TO STDOUT (FORMAT binary)")
            .await
            .unwrap();
        let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
        let data: Vec<u8> = chunks.concat();

        let sink = client
            .copy_in(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
            .await
            .unwrap();
        futures_util::pin_mut!(sink);
        // Several chunks that split rows at arbitrary points.
        for chunk in data.chunks(97) {
            sink.send(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        let copied = sink.finish().await.unwrap();
        assert_eq!(copied, 50, "{table}");
        outs.push(data);
    }
    assert_eq!(outs[0], outs[1]);
    assert_eq!(
        up.admin("SELECT * FROM copy_gateway ORDER BY id"),
        up.admin("SELECT * FROM users ORDER BY id")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_notify_through_gateway() {
    let (up, agent, gw) = setup();
    let (listener, mut messages) = connect(&gw.url(&agent, "app")).await.unwrap();
    listener
        .batch_execute("LISTEN drawbridge_test")
        .await
        .unwrap();
    let (direct, _m) = connect(&up.direct_url()).await.unwrap();
    direct
        .batch_execute("NOTIFY drawbridge_test, 'from direct ✓'")
        .await
        .unwrap();
    let note = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(tokio_postgres::AsyncMessage::Notification(n)) = messages.recv().await {
                return n;
            }
        }
    })
    .await
    .expect("no notification through the gateway");
    assert_eq!(
        (note.channel(), note.payload()),
        ("drawbridge_test", "from direct ✓")
    );

    // And the other way: the agent notifies, a direct listener hears it.
    let (direct_listener, mut direct_msgs) = connect(&up.direct_url()).await.unwrap();
    direct_listener.batch_execute("LISTEN back").await.unwrap();
    listener
        .batch_execute("SELECT pg_notify('back', 'from agent')")
        .await
        .unwrap();
    let note = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(tokio_postgres::AsyncMessage::Notification(n)) = direct_msgs.recv().await {
                return n;
            }
        }
    })
    .await
    .expect("no notification from the agent");
    assert_eq!(note.payload(), "from agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_reaches_upstream() {
    let (_up, agent, gw) = setup();
    let (client, _msgs) = connect(&gw.url(&agent, "app")).await.unwrap();
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let started = std::time::Instant::now();
    let err = client
        .simple_query("SELECT pg_sleep(30)")
        .await
        .unwrap_err();
    canceller.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancel took {:?}",
        started.elapsed()
    );
    assert_eq!(db_error(&err).0, "57014", "{err}");
    let after: i32 = client.query_one("SELECT 5", &[]).await.unwrap().get(0);
    assert_eq!(after, 5);

    // A cancel with a key the gateway never issued does nothing harmful.
    let (other, _m) = connect(&gw.url(&agent, "app")).await.unwrap();
    assert_eq!(
        other
            .query_one("SELECT 6", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_statements_keep_session() {
    let (up, agent, gw) = setup();
    let (client, _msgs) = connect(&gw.url(&agent, "app")).await.unwrap();
    for sql in [
        "TRUNCATE users",
        "DELETE FROM users",
        "DROP TABLE users",
        "/* x */ delete from users",
    ] {
        let err = client.simple_query(sql).await.unwrap_err();
        let (code, message) = db_error(&err);
        assert_eq!(code, "42501", "{sql}: {message}");
        assert!(message.starts_with("drawbridge:"), "{sql}: {message}");
        // Extended protocol as well.
        let err = client.execute(sql, &[]).await.unwrap_err();
        assert_eq!(db_error(&err).0, "42501", "{sql} (extended)");
        let count: i64 = client
            .query_one("SELECT count(*) FROM users", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(count, 50);
    }
    assert_eq!(up.admin("SELECT count(*) FROM users").trim(), "50");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_sessions() {
    let up = Upstream::start();
    let agent = Agent::new("claude");
    // 100 SCRAM handshakes at once on a loaded 2-core machine can take a while.
    let gw = gateway()
        .server("auth_timeout_secs = 60")
        .target(up.target("app"))
        .agent(&agent)
        .start();
    let url = gw.url(&agent, "app");
    let tasks: Vec<_> = (0..100i32)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let (client, _m) = connect(&url).await?;
                let mut sum = 0i64;
                for j in 0..10i32 {
                    let row = client
                        .query_one(
                            "SELECT $1::int8 + $2::int8",
                            &[&i64::from(i), &i64::from(j)],
                        )
                        .await?;
                    sum += row.get::<_, i64>(0);
                }
                let n: i64 = client
                    .query_one("SELECT count(*) FROM users", &[])
                    .await?
                    .get(0);
                Ok::<_, tokio_postgres::Error>((i, sum, n))
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok((i, sum, n)) => {
                assert_eq!(sum, i64::from(i) * 10 + 45);
                assert_eq!(n, 50);
            }
            Err(e) => failures.push(format!("{e:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 100 sessions failed: {:?}\ngateway log tail:\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        tail(&gw.logs(), 40)
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
