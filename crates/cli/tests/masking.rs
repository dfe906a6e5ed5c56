//! Masking through the real binary with tokio-postgres: binary results over the extended
//! protocol, text results over the simple one, prepared statements the client executes
//! without describing them again, COPY out, agents a rule does not cover, relations the
//! catalog has not seen yet, and the audit record.

mod common;

use common::*;
use tokio_postgres::SimpleQueryMessage;

const POLICY: &str = "version: 1
rules:
  - name: allow-all
    effect: allow
  - name: mask-email
    effect: mask
    match: { agents: [masked] }
    mask: { columns: [email], strategy: redact }
";

fn simple_rows(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect()),
            _ => None,
        })
        .collect()
}

async fn copy_out(client: &tokio_postgres::Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    use futures_util::StreamExt;
    let stream = client.copy_out(sql).await?;
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masks_sensitive_columns_in_every_result_path() {
    let up = Upstream::start();
    let masked = Agent::new("masked");
    let trusted = Agent::new("trusted");
    let gw = gateway()
        .target(up.target("app"))
        .agent(&masked)
        .agent(&trusted)
        .policy("file = \"policy.yaml\"")
        .file("policy.yaml", POLICY)
        .extra("[audit]\nsqlite_path = \"audit.db\"\n\n[masking]\nkey_file = \"mask.key\"\n")
        .start();
    let (client, _m) = connect(&gw.url(&masked, "app")).await.unwrap();
    let (direct, _d) = connect(&up.direct_url()).await.unwrap();

    // Extended protocol, binary results: the email column is redacted, the others are as direct.
    let sql = "SELECT id, name, email, avatar FROM users ORDER BY id";
    let got = client.query(sql, &[]).await.unwrap();
    let want = direct.query(sql, &[]).await.unwrap();
    assert_eq!(got.len(), 50);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.get::<_, i32>(0), w.get::<_, i32>(0));
        assert_eq!(g.get::<_, String>(1), w.get::<_, String>(1));
        assert_eq!(g.get::<_, Option<String>>(2).as_deref(), Some("[REDACTED]"));
        assert_eq!(g.get::<_, Vec<u8>>(3), w.get::<_, Vec<u8>>(3));
    }

    // A statement prepared once and executed again without a new Describe.
    let stmt = client.prepare("SELECT email, id FROM users WHERE id = $1").await.unwrap();
    for id in [1i32, 2, 3] {
        let row = client.query_one(&stmt, &[&id]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "[REDACTED]");
        assert_eq!(row.get::<_, i32>(1), id);
    }

    // Simple protocol, text results: derived values are masked whole, others untouched.
    let rows = simple_rows(
        &client
            .simple_query("SELECT upper(email), reverse(email) AS r, id, length(name) FROM users WHERE id = 7; SELECT count(*) FROM users")
            .await
            .unwrap(),
    );
    assert_eq!(
        rows,
        vec![
            vec![Some("[REDACTED]".into()), Some("[REDACTED]".into()), Some("7".into()), Some("8".into())],
            vec![Some("50".into())],
        ]
    );
    let rows = simple_rows(&client.simple_query("SELECT row_to_json(u) FROM users u WHERE id = 1").await.unwrap());
    assert!(!format!("{rows:?}").contains("u1@example.com"), "{rows:?}");

    // Dynamic SQL reads relations the text never names: its value is masked whole.
    let rows = simple_rows(&client.simple_query("SELECT query_to_xml('SELECT email FROM users', true, false, '')").await.unwrap());
    assert!(!format!("{rows:?}").contains("@example.com"), "{rows:?}");

    // COPY out, text and CSV.
    let text = copy_out(&client, "COPY users (id, email) TO STDOUT").await.unwrap();
    assert_eq!(text.lines().count(), 50);
    assert!(text.lines().all(|l| l.ends_with("\t[REDACTED]")), "{text}");
    let csv = copy_out(&client, "COPY (SELECT id, email, name FROM users ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)").await.unwrap();
    assert_eq!(csv.lines().next(), Some("id,email,name"));
    // The masker may quote what it writes; either way it is the same CSV value.
    assert_eq!(csv.lines().nth(1).map(|l| l.replace('"', "")).as_deref(), Some("1,[REDACTED],user 1 ✓"));
    assert!(!csv.contains("@example.com") && !text.contains("@example.com"));
    // Binary COPY cannot be masked: refused, and the session goes on.
    let err = copy_out(&client, "COPY users TO STDOUT WITH (FORMAT binary)").await.unwrap_err();
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    assert_eq!(client.query_one("SELECT 1::int", &[]).await.unwrap().get::<_, i32>(0), 1);

    // An agent the rule does not name sees the values.
    let (open, _o) = connect(&gw.url(&trusted, "app")).await.unwrap();
    let row = open.query_one("SELECT email FROM users WHERE id = 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "u1@example.com");

    // A table created after the catalog was loaded: its columns are masked (fail closed);
    // a new session sees the refreshed catalog and masks by rule.
    client.batch_execute("CREATE TABLE contacts (id int, email text); INSERT INTO contacts VALUES (1, 'c1@example.com')").await.unwrap();
    let row = client.query_one("SELECT id, email FROM contacts", &[]).await;
    let shown = format!("{row:?}");
    assert!(!shown.contains("c1@example.com"), "{shown}");
    let (fresh, _f) = connect(&gw.url(&masked, "app")).await.unwrap();
    let row = fresh.query_one("SELECT id, email FROM contacts", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    assert_eq!(row.get::<_, String>(1), "[REDACTED]");

    // The audit log names the rule and counts, and never holds a raw value.
    drop((client, fresh, open));
    let export = gw.cli(&["audit", "export", "--format", "jsonl"]);
    let export = String::from_utf8_lossy(&export.stdout).into_owned();
    assert!(export.contains("\"kind\":\"masked\""), "{export}");
    assert!(export.contains("\"rule\":\"mask-email\""), "{export}");
    assert!(export.contains("\"values\":50"), "{export}");
    assert!(!export.contains("u1@example.com"), "{export}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_turns_masking_on_and_off_in_open_sessions() {
    let up = Upstream::start();
    let masked = Agent::new("masked");
    let plain = "version: 1\nrules:\n  - name: allow-all\n    effect: allow\n";
    let gw = gateway()
        .target(up.target("app"))
        .agent(&masked)
        .policy("file = \"policy.yaml\"")
        .file("policy.yaml", plain)
        .start();
    let policy_path = gw.dir().join("policy.yaml");
    let replace = |contents: &str| {
        let tmp = gw.dir().join("policy.yaml.tmp");
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, &policy_path).unwrap();
    };
    let reloads = |n: usize| gw.wait_logs(std::time::Duration::from_secs(10), |l| l.matches("policy reloaded").count() >= n);
    let (client, _m) = connect(&gw.url(&masked, "app")).await.unwrap();
    let stmt = client.prepare("SELECT email FROM users WHERE id = $1").await.unwrap();
    let email = |r: tokio_postgres::Row| r.get::<_, String>(0);
    assert_eq!(email(client.query_one(&stmt, &[&1i32]).await.unwrap()), "u1@example.com");

    // Rules appear: the open session masks from its next statement on, including a
    // statement prepared before.
    replace(POLICY);
    gw.signal("HUP");
    reloads(1);
    assert_eq!(email(client.query_one(&stmt, &[&1i32]).await.unwrap()), "[REDACTED]");
    let rows = simple_rows(&client.simple_query("SELECT email FROM users WHERE id = 2").await.unwrap());
    assert_eq!(rows, vec![vec![Some("[REDACTED]".to_owned())]]);

    // Rules go away: values come back raw and the session goes on.
    replace(plain);
    gw.signal("HUP");
    reloads(2);
    assert_eq!(email(client.query_one(&stmt, &[&3i32]).await.unwrap()), "u3@example.com");
    let rows = simple_rows(&client.simple_query("SELECT email FROM users WHERE id = 4").await.unwrap());
    assert_eq!(rows, vec![vec![Some("u4@example.com".to_owned())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untraceable_results_are_refused_when_the_rule_says_so() {
    let up = Upstream::start();
    let masked = Agent::new("masked");
    let policy = POLICY.replace("strategy: redact }", "strategy: redact, unresolved: refuse }");
    let gw = gateway()
        .target(up.target("app"))
        .agent(&masked)
        .policy("file = \"policy.yaml\"")
        .file("policy.yaml", &policy)
        .extra("[audit]\nsqlite_path = \"audit.db\"\n")
        .start();
    let (client, _m) = connect(&gw.url(&masked, "app")).await.unwrap();
    let sql = "SELECT query_to_xml('SELECT email FROM users', true, false, '')";
    let msg = refused(&client, sql).await;
    assert!(msg.contains("blocked by rule mask-email") && msg.contains("cannot trace"), "{msg}");
    // Over the extended protocol too, and the session goes on.
    let err = client.query(sql, &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    let row = client.query_one("SELECT upper(email) FROM users WHERE id = 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "[REDACTED]");
    drop(client);
    // The store receives records in the background: wait for the refusal's outcome.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let out = gw.cli(&["audit", "export", "--format", "jsonl"]);
        let export = String::from_utf8_lossy(&out.stdout).into_owned();
        if export.lines().any(|l| l.contains("\"kind\":\"outcome\"") && l.contains("cannot trace")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no outcome saying why the statement did not run; export:\n{export}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
