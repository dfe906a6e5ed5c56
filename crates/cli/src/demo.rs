//! `drawbridge demo`: a throwaway PostgreSQL, the gateway in front of it with the
//! `production` pack, and an agent's session played through a real client connection.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use localpg::{LocalPg, PasswordStorage};

/// Row limit the demo sets on the pack, low enough for its small tables to show it.
const DEMO_MAX_ROWS: u64 = 100; // also in POLICY

#[derive(Args)]
pub struct DemoArgs {
    /// Port for the gateway.
    #[arg(long, default_value_t = 6432)]
    port: u16,
    /// Also write the connection URLs here as KEY=VALUE lines.
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// Exit after the scripted session instead of serving until interrupted.
    #[arg(long)]
    no_wait: bool,
    /// Skip the scripted session and just serve, with the plain `production` pack.
    #[arg(long)]
    no_script: bool,
    /// Plain output without colours.
    #[arg(long)]
    no_color: bool,
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn step(&self, n: u32, title: &str) {
        println!("\n{} {}", self.paint("1;36", &format!("[{n}]")), self.paint("1", title));
    }
    fn agent(&self, sql: &str) {
        println!("  {} {}", self.paint("2", "agent>"), sql);
    }
    fn ok(&self, text: &str) {
        println!("  {} {text}", self.paint("32", "✔ allowed"));
    }
    fn blocked(&self, text: &str) {
        println!("  {} {text}", self.paint("1;31", "✘ blocked at the wire"));
    }
    fn note(&self, text: &str) {
        println!("  {}", self.paint("2", text));
    }
    fn failed(&self, text: &str) {
        println!("  {} {text}", self.paint("1;33", "! unexpected:"));
    }
}

/// The demo's policy: the production pack, with its migration window open so that schema
/// changes are not simply refused but held for an operator's approval.
const POLICY: &str = "version: 1
include:
  - pack: production
    with: { max_rows: 100, migration_window: demo }
windows:
  demo: { timezone: UTC, from: \"00:00\", to: \"24:00\" }
rules:
  - name: migrations-need-approval
    effect: require_approval
    reason: schema changes need a human's approval
    approval: { mode: hold }
    match: { operations: [ddl] }
  - name: mask-emails
    effect: mask
    match: { groups: [agents] }
    mask: { columns: [users.email], type: email, strategy: partial, keep: 12 }
";

const SEED: &str = "
CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE orders (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users, amount numeric(10,2) NOT NULL, status text NOT NULL DEFAULT 'paid');
INSERT INTO users (name, email) SELECT 'user ' || g, 'user' || g || '@example.com' FROM generate_series(1, 50) g;
INSERT INTO orders (user_id, amount) SELECT 1 + g % 50, (g % 97) + 0.99 FROM generate_series(1, 500) g;
";

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let style = Style { color: !args.no_color && std::io::stdout().is_terminal() };
    println!("{}", style.paint("1", "Drawbridge demo: an agent, a production database, and a gateway between them"));

    style.note("starting a throwaway PostgreSQL…");
    let pg = LocalPg::start(Default::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let owner_password = localpg::random_hex(16).map_err(|e| anyhow::anyhow!("{e}"))?;
    pg.create_role("app_owner", &owner_password, PasswordStorage::Scram).map_err(|e| anyhow::anyhow!("{e}"))?;
    pg.create_database("app", "app_owner", None).map_err(|e| anyhow::anyhow!("{e}"))?;
    pg.psql_db("app", &format!("SET ROLE app_owner; {SEED}")).map_err(|e| anyhow::anyhow!("{e}"))?;

    // The gateway's files live beside the throwaway server and go with it.
    let dir = pg.dir().join("drawbridge");
    std::fs::create_dir_all(&dir)?;
    let secret_file = dir.join("app_owner.password");
    std::fs::write(&secret_file, &owner_password)?;
    let agent_secret = localpg::random_hex(12).map_err(|e| anyhow::anyhow!("{e}"))?;
    let verifier = wire::auth::scram::Verifier::generate(&agent_secret, wire::auth::scram::DEFAULT_ITERATIONS);
    let config_path = dir.join("drawbridge.toml");
    std::fs::write(dir.join("policy.yaml"), POLICY)?;
    let http_port = localpg::free_port().map_err(|e| anyhow::anyhow!("{e}"))?;
    let (operator_token, operator_hash) = approvals::generate_token();
    std::fs::write(
        &config_path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n{policy}\n\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n\n[approvals]\nhold_timeout_secs = 120\n\n\
             [operators.demo-operator]\ntoken_sha256 = \"{operator_hash}\"\n\n\
             [targets.app]\nhost = \"{host}\"\nport = {pgport}\ndatabase = \"app\"\nuser = \"app_owner\"\npassword_file = \"{pw}\"\ntls = \"disable\"\n\n\
             [agents.agent]\nverifier = \"{verifier}\"\ngroups = [\"agents\"]\n\n\
             [audit]\nsqlite_path = \"audit.db\"\ncheckpoint_every = 50\n",
            port = args.port,
            // Without the script the demo serves the plain production pack (DDL refused outside
            // the migration window), which is what the driver tests run against.
            policy = if args.no_script {
                format!("[policy]\npack = \"production\"\nwith = {{ max_rows = {DEMO_MAX_ROWS} }}")
            } else {
                "[policy]\nfile = \"policy.yaml\"".to_string()
            },
            host = pg.host(),
            pgport = pg.port(),
            pw = secret_file.display(),
        ),
    )?;
    let config = gateway::Config::load(&config_path)?;
    let gateway_url = format!("postgresql://agent:{agent_secret}@127.0.0.1:{}/app", args.port);
    let direct_url = pg.url("app_owner", &owner_password, "app");

    let rt = crate::runtime(0)?;
    let outcome = rt.block_on(async {
        let gw = gateway::Gateway::bind(config).await?;
        let shared = gw.shared.clone();
        let shared_for_audit = gw.shared.clone();
        tokio::spawn(async move {
            if let Err(e) = gw.run().await {
                eprintln!("drawbridge: {e}");
            }
        });
        crate::watch_reload(shared)?;
        if let Some(path) = &args.env_file {
            let env = format!(
                "GATEWAY_URL={gateway_url}\nDIRECT_URL={direct_url}\nADMIN_URL={}\nDRAWBRIDGE_CONFIG={}\nAGENT_SECRET={agent_secret}\n",
                pg.admin_url("app"),
                config_path.display()
            );
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, env)?;
            std::fs::rename(&tmp, path)?;
        }
        let operator = Operator { url: format!("http://127.0.0.1:{http_port}"), token: operator_token.clone() };
        let ok = if args.no_script {
            true
        } else {
            let played = script(&style, &gateway_url, &direct_url, &operator).await?;
            played & evidence(&style, &shared_for_audit, &dir)?
        };
        println!("\n{}", style.paint("1", "The gateway is running."));
        println!("  connect as the agent:  psql '{gateway_url}'");
        println!("  config:                {}", config_path.display());
        println!("  the agent never sees:  {direct_url}");
        println!(
            "  approve as operator:   DRAWBRIDGE_URL={} DRAWBRIDGE_OPERATOR_TOKEN={} drawbridge approvals list",
            operator.url, operator.token
        );
        if args.no_wait {
            return Ok::<bool, anyhow::Error>(ok);
        }
        println!("  stop:                  Ctrl-C");
        let _ = std::io::stdout().flush();
        crate::stop_signal().await?;
        shared_for_audit.stop();
        Ok(ok)
    })?;
    drop(pg);
    Ok(if outcome { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Step 6: the session as the audit log tells it, and proof the log is intact.
fn evidence(style: &Style, shared: &gateway::Shared, dir: &std::path::Path) -> anyhow::Result<bool> {
    style.step(7, "The evidence: the session replayed from the tamper-evident audit log");
    let (Some(log), Some(cfg)) = (&shared.audit, &shared.config.audit) else {
        style.note("audit is not configured");
        return Ok(true);
    };
    // The agent's connection closed a moment ago; let its last records reach the store.
    std::thread::sleep(std::time::Duration::from_millis(300));
    log.flush(std::time::Duration::from_secs(10))?;
    let mut reader = audit::tools::Reader::open(cfg, dir)?;
    let mut last_session = None;
    let filter = audit::tools::Filter { agent: Some("agent".into()), ..Default::default() };
    reader.search(&filter, &mut |r| {
        if r.kind == "session_opened" {
            last_session = r.session.clone();
        }
        Ok(())
    })?;
    let Some(session) = last_session else {
        style.failed("no session of the agent in the audit log");
        return Ok(false);
    };
    let records = reader.session(&session)?;
    for line in audit::replay::timeline(&records).lines() {
        println!("  {}", style.paint("2", line));
    }
    let report = reader.verify()?;
    if report.ok() {
        println!("  {} {}", style.paint("32", "✔ audit verify:"), report.to_string().lines().next().unwrap_or("ok"));
    } else {
        style.failed(&format!("audit verify: {report}"));
    }
    println!("  {}", style.paint("2", &format!("drawbridge audit replay {session} --config {}", dir.join("drawbridge.toml").display())));
    Ok(report.ok())
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.context("connecting")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

async fn count(db: &tokio_postgres::Client, table: &str) -> anyhow::Result<i64> {
    Ok(db.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await?.get(0))
}

/// How the demo's operator reaches the gateway's approvals API.
struct Operator {
    url: String,
    token: String,
}

impl Operator {
    /// Runs `drawbridge approvals ARGS` as a separate process, as a person would.
    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = std::process::Command::new(std::env::current_exe()?)
            .arg("approvals")
            .args(args)
            .env("DRAWBRIDGE_URL", &self.url)
            .env("DRAWBRIDGE_OPERATOR_TOKEN", &self.token)
            .output()?;
        anyhow::ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits for the pending request and approves it; returns its id.
    fn approve_pending(&self) -> anyhow::Result<String> {
        for _ in 0..100 {
            let list = self.cli(&["list"])?;
            if let Some(id) = list.split_whitespace().find(|w| w.starts_with("apr_")) {
                self.cli(&["approve", id])?;
                return Ok(id.to_string());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        anyhow::bail!("no approval request appeared")
    }
}

/// The agent's session. Returns whether every step went as the policy says it must.
async fn script(style: &Style, gateway_url: &str, direct_url: &str, operator: &Operator) -> anyhow::Result<bool> {
    let agent = connect(gateway_url).await?;
    let direct = connect(direct_url).await?;
    let mut ok = true;
    let expect_blocked = |sql: &str, result: Result<u64, tokio_postgres::Error>| match result {
        Err(e) => {
            let msg = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string());
            if msg.starts_with("drawbridge:") {
                style.blocked(&msg);
                true
            } else {
                style.failed(&format!("{sql}: {msg}"));
                false
            }
        }
        Ok(n) => {
            style.failed(&format!("{sql} ran ({n} rows)"));
            false
        }
    };

    style.step(1, "The agent reads data");
    let sql = "SELECT id, name, email FROM users ORDER BY id LIMIT 3";
    style.agent(sql);
    let rows = agent.query(sql, &[]).await?;
    style.ok(&format!("{} rows; emails masked at the wire by rule mask-emails", rows.len()));
    for r in &rows {
        let (id, name, email): (i32, String, String) = (r.get(0), r.get(1), r.get(2));
        style.note(&format!("  {id} | {name} | {email}"));
    }
    let sql = "SELECT upper(email) FROM users WHERE id = 1";
    style.agent(sql);
    let shown: Option<String> = agent.query_one(sql, &[]).await?.get(0);
    style.ok(&format!("a value computed from an email is masked too: {}", shown.as_deref().unwrap_or("NULL")));
    let sql = "UPDATE orders SET status = 'shipped' WHERE id = 1";
    style.agent(sql);
    let n = agent.execute(sql, &[]).await?;
    style.ok(&format!("{n} row updated: a bounded write is fine"));

    style.step(2, "The agent tries to empty the users table");
    let before = count(&direct, "users").await?;
    let sql = "TRUNCATE users";
    style.agent(sql);
    ok &= expect_blocked(sql, agent.execute(sql, &[]).await);
    let after = count(&direct, "users").await?;
    style.note(&format!("users still has {after} rows (before: {before})"));
    ok &= before == after;

    style.step(3, "Unbounded writes");
    let sql = "DELETE FROM users";
    style.agent(sql);
    ok &= expect_blocked(sql, agent.execute(sql, &[]).await);
    let before = count(&direct, "orders WHERE status = 'void'").await?;
    let sql = "UPDATE orders SET status = 'void' WHERE amount > 0";
    style.agent(&format!("{sql}   -- {} rows match; the limit is {DEMO_MAX_ROWS}", count(&direct, "orders WHERE amount > 0").await?));
    ok &= expect_blocked(sql, agent.execute(sql, &[]).await);
    let after = count(&direct, "orders WHERE status = 'void'").await?;
    style.note(&format!("voided orders: {after} (before: {before}); the update ran and was rolled back"));
    ok &= before == after;

    style.step(4, "A disguised attempt");
    let sql = "/* cleanup */ SELECT 1; DROP TABLE users";
    style.agent(sql);
    ok &= expect_blocked(sql, agent.batch_execute(sql).await.map(|_| 0));
    let exists: bool = direct.query_one("SELECT to_regclass('public.users') IS NOT NULL", &[]).await?.get(0);
    style.note(if exists { "the users table is still there" } else { "the users table is gone!" });
    ok &= exists;
    let sql = "WITH gone AS (DELETE FROM users RETURNING id) SELECT count(*) FROM gone";
    style.agent(sql);
    ok &= expect_blocked(sql, agent.execute(sql, &[]).await);

    style.step(5, "A migration: held for a human's approval, approved from the CLI, then it runs");
    let sql = "ALTER TABLE orders ADD COLUMN note text";
    style.agent(sql);
    style.note("the agent's statement waits at the gateway; an operator looks at it and approves:");
    let approver = {
        let operator = Operator { url: operator.url.clone(), token: operator.token.clone() };
        tokio::task::spawn_blocking(move || operator.approve_pending())
    };
    let ran = agent.execute(sql, &[]).await;
    match approver.await? {
        Ok(id) => println!("  {} drawbridge approvals approve {id}", style.paint("2", "operator>")),
        Err(e) => {
            style.failed(&format!("approving: {e}"));
            ok = false;
        }
    }
    match ran {
        Ok(_) => style.ok("the ALTER TABLE ran once approved"),
        Err(e) => {
            style.failed(&format!("{sql}: {e}"));
            ok = false;
        }
    }
    let added: bool = direct
        .query_one("SELECT count(*) = 1 FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'note'", &[])
        .await?
        .get(0);
    style.note(if added { "orders now has a note column" } else { "the column is missing!" });
    ok &= added;

    style.step(6, "The session is still usable");
    let sql = "SELECT count(*) FROM orders WHERE status = 'paid'";
    style.agent(sql);
    let n: i64 = agent.query_one(sql, &[]).await?.get(0);
    style.ok(&format!("{n} paid orders"));

    println!();
    if ok {
        println!("{}", style.paint("1;32", "Every destructive statement was stopped; the data is intact."));
    } else {
        println!("{}", style.paint("1;31", "Something got through or was wrongly blocked: see above."));
    }
    Ok(ok)
}
