//! Support for the integration tests: a throwaway upstream PostgreSQL, agents made by the real
//! binary, and a `drawbridge serve` child process that is killed on drop.
#![allow(dead_code)] // each test file uses a different part

use std::fmt::Write as _;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use localpg::{random_hex, LocalPg, Options, PasswordStorage};

pub const BIN: &str = env!("CARGO_BIN_EXE_drawbridge");

/// The upstream server with an `app` database owned by `app_owner`.
pub struct Upstream {
    pub pg: LocalPg,
    /// Distinctive so a leak is easy to find in captured bytes and logs.
    pub app_password: String,
}

impl Upstream {
    pub fn start() -> Upstream {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Upstream {
        let pg = LocalPg::start(options).expect("start PostgreSQL");
        let app_password = format!("UpstreamPw-{}-Zq9", random_hex(8).unwrap());
        pg.create_role("app_owner", &app_password, PasswordStorage::Scram)
            .unwrap();
        pg.create_database("app", "app_owner", None).unwrap();
        pg.psql_db(
            "app",
            "CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL, email text, avatar bytea);
             INSERT INTO users SELECT g, 'user ' || g || ' ✓', 'u' || g || '@example.com',
                    decode(lpad(to_hex(g), 2, '0') || '00ff', 'hex')
               FROM generate_series(1, 50) g;
             CREATE TABLE copy_gateway (LIKE users);
             CREATE TABLE copy_direct (LIKE users);
             ALTER TABLE users OWNER TO app_owner;
             ALTER TABLE copy_gateway OWNER TO app_owner;
             ALTER TABLE copy_direct OWNER TO app_owner;",
        )
        .unwrap();
        Upstream { pg, app_password }
    }

    /// The app role straight to PostgreSQL.
    pub fn direct_url(&self) -> String {
        self.pg.url("app_owner", &self.app_password, "app")
    }

    /// `[targets.NAME]` for the app database with the password inline.
    pub fn target(&self, name: &str) -> TargetSpec {
        TargetSpec::new(name, self.pg.port(), "app", "app_owner").password(&self.app_password)
    }

    pub fn admin(&self, sql: &str) -> String {
        self.pg.psql_db("app", sql).unwrap()
    }
}

/// An agent made with `drawbridge agent new`.
#[derive(Clone)]
pub struct Agent {
    pub name: String,
    pub secret: String,
    /// The `[agents.NAME]` TOML the command printed.
    pub snippet: String,
}

impl Agent {
    pub fn new(name: &str) -> Agent {
        let out = Command::new(BIN)
            .args(["agent", "new", name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "agent new failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (first, rest) = text
            .split_once('\n')
            .expect("agent new printed one line only");
        let secret = first
            .strip_prefix("secret: ")
            .unwrap_or_else(|| panic!("first line is not `secret: …`: {first}"))
            .trim()
            .to_owned();
        assert!(
            rest.contains(&format!("[agents.{name}]")),
            "no [agents.{name}] in {rest}"
        );
        assert!(rest.contains("SCRAM-SHA-256$"), "no verifier in {rest}");
        assert!(
            !rest.contains(&secret),
            "the snippet must hold a verifier, not the secret"
        );
        Agent {
            name: name.to_owned(),
            secret,
            snippet: rest.to_owned(),
        }
    }
}

/// One `[targets.NAME]` table.
#[derive(Clone)]
pub struct TargetSpec {
    pub name: String,
    lines: Vec<String>,
}

impl TargetSpec {
    pub fn new(name: &str, port: u16, database: &str, user: &str) -> TargetSpec {
        TargetSpec {
            name: name.to_owned(),
            lines: vec![
                "host = \"127.0.0.1\"".into(),
                format!("port = {port}"),
                format!("database = {}", toml_str(database)),
                format!("user = {}", toml_str(user)),
            ],
        }
    }

    pub fn password(self, password: &str) -> Self {
        self.line(&format!("password = {}", toml_str(password)))
    }

    /// Any other `key = value` line, e.g. `tls = "require"`.
    pub fn line(mut self, line: &str) -> Self {
        self.lines.push(line.to_owned());
        self
    }
}

pub fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Builds a config and starts `drawbridge serve`.
pub struct GatewayBuilder {
    server: Vec<String>,
    policy: String,
    targets: Vec<TargetSpec>,
    agents: Vec<Agent>,
    envs: Vec<(String, String)>,
    extra: Vec<String>,
    files: Vec<(String, String)>,
    http: bool,
}

pub fn gateway() -> GatewayBuilder {
    GatewayBuilder {
        server: Vec::new(),
        policy: "pack = \"production\"".into(),
        targets: Vec::new(),
        agents: Vec::new(),
        envs: Vec::new(),
        extra: Vec::new(),
        files: Vec::new(),
        http: false,
    }
}

impl GatewayBuilder {
    pub fn target(mut self, target: TargetSpec) -> Self {
        self.targets.push(target);
        self
    }

    pub fn agent(mut self, agent: &Agent) -> Self {
        self.agents.push(agent.clone());
        self
    }

    /// A `[server]` line, e.g. `log_format = "json"`.
    pub fn server(mut self, line: &str) -> Self {
        self.server.push(line.to_owned());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The body of the `[policy]` table, e.g. `file = "policy.yaml"` (default: the production pack).
    pub fn policy(mut self, body: &str) -> Self {
        self.policy = body.to_owned();
        self
    }

    /// TOML appended to the config as is, e.g. an `[audit]` table.
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push(toml.to_owned());
        self
    }

    /// A file written into the gateway's directory (beside the config) before it starts.
    pub fn file(mut self, name: &str, contents: &str) -> Self {
        self.files.push((name.to_owned(), contents.to_owned()));
        self
    }

    /// Serve `/metrics` and `/healthz` on a free port (`Gateway::http_port`).
    pub fn http(mut self) -> Self {
        self.http = true;
        self
    }

    pub fn start(self) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let port = localpg::free_port().unwrap();
        let http_port = self.http.then(|| localpg::free_port().unwrap());
        for (name, contents) in &self.files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        let mut cfg = String::new();
        writeln!(cfg, "[server]\nlisten = \"127.0.0.1:{port}\"").unwrap();
        for line in &self.server {
            writeln!(cfg, "{line}").unwrap();
        }
        writeln!(cfg, "\n[policy]\n{}\n", self.policy).unwrap();
        for t in &self.targets {
            writeln!(cfg, "[targets.{}]\n{}\n", t.name, t.lines.join("\n")).unwrap();
        }
        for a in &self.agents {
            writeln!(cfg, "{}\n", a.snippet.trim()).unwrap();
        }
        if let Some(p) = http_port {
            writeln!(cfg, "[http]\nlisten = \"127.0.0.1:{p}\"\n").unwrap();
        }
        for extra in &self.extra {
            writeln!(cfg, "{}\n", extra.trim()).unwrap();
        }
        let config_path = dir.path().join("drawbridge.toml");
        std::fs::write(&config_path, &cfg).unwrap();
        let log_path = dir.path().join("gateway.log");
        std::fs::File::create(&log_path).unwrap();
        let child = spawn_serve(&config_path, &log_path, &self.envs);
        let mut gw = Gateway {
            child,
            port,
            http_port,
            log_path,
            config_path,
            config: cfg,
            envs: self.envs,
            _dir: dir,
        };
        gw.wait_ready();
        gw
    }
}

/// `drawbridge serve`, appending its output to `log_path`.
fn spawn_serve(config_path: &Path, log_path: &Path, envs: &[(String, String)]) -> Child {
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log_path)
        .unwrap();
    Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(config_path)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// A running `drawbridge serve`; killed on drop.
pub struct Gateway {
    child: Child,
    pub port: u16,
    /// The `[http]` listener, when the builder asked for one.
    pub http_port: Option<u16>,
    pub log_path: PathBuf,
    pub config_path: PathBuf,
    pub config: String,
    envs: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// The directory holding the config, the log and anything relative paths name.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, …) to the gateway process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {name} failed");
    }

    /// SIGKILL, and wait for the process to be gone. Files stay.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the gateway again (killing it first if it still runs) with the same config,
    /// directory and log file.
    pub fn restart(&mut self) {
        self.kill9();
        self.child = spawn_serve(&self.config_path, &self.log_path, &self.envs);
        self.wait_ready();
    }

    /// `drawbridge ARGS… --config <this gateway's config>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut full: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        full.push("--config".as_ref());
        full.push(self.config_path.as_os_str());
        drawbridge(&full)
    }

    /// A plain HTTP/1.1 GET against the `[http]` listener: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let port = self.http_port.expect("gateway started without .http()");
        http_get(port, path)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "drawbridge serve exited with {status}:\n{}\nconfig:\n{}",
                    self.logs(),
                    self.config
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "drawbridge serve did not listen on {}:\n{}",
            self.port,
            self.logs()
        );
    }

    pub fn url(&self, agent: &Agent, target: &str) -> String {
        self.url_with(&agent.name, &agent.secret, target)
    }

    pub fn url_with(&self, user: &str, secret: &str, target: &str) -> String {
        format!(
            "postgresql://{}:{}@127.0.0.1:{}/{}",
            localpg::percent_encode(user),
            localpg::percent_encode(secret),
            self.port,
            localpg::percent_encode(target)
        )
    }

    /// Everything the gateway wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Wait until `pred(logs)` holds; returns the logs either way.
    pub fn wait_logs(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let logs = self.logs();
            if pred(&logs) || Instant::now() > deadline {
                return logs;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `drawbridge` binary with these arguments, output captured.
pub fn drawbridge<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// GET `path` from 127.0.0.1:`port` over HTTP/1.1: (status, body). Handles chunked bodies.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {raw:?}"));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            return out;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// psql with a script on stdin: unaligned, tuples only, stop at the first error.
pub fn psql(url: &str, script: &str) -> Output {
    psql_args(url, script.as_bytes(), &[])
}

/// psql with a script given as raw bytes (which need not be UTF-8) and extra arguments.
pub fn psql_args(url: &str, script: &[u8], extra: &[&str]) -> Output {
    use std::io::Write;
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
            "-d",
            url,
        ])
        .args(extra)
        .env_remove("PGPASSWORD")
        .env_remove("PGSSLMODE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script).unwrap();
    child.wait_with_output().unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Connect with tokio-postgres; notifications and notices go to the returned channel.
pub async fn connect(
    url: &str,
) -> Result<
    (
        tokio_postgres::Client,
        tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::AsyncMessage>,
    ),
    tokio_postgres::Error,
> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    Ok((client, drive(connection)))
}

/// Run a connection in the background, forwarding its asynchronous messages.
pub fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
) -> tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::AsyncMessage>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        use futures_util::StreamExt;
        while let Some(Ok(msg)) = messages.next().await {
            let _ = tx.send(msg);
        }
    });
    rx
}

/// Runs `sql` through the gateway with the simple protocol, expecting a refusal (42501).
pub async fn refused(client: &tokio_postgres::Client, sql: &str) -> String {
    let err = client
        .batch_execute(sql)
        .await
        .expect_err(&format!("{sql} should be refused"));
    let (code, msg) = db_error(&err);
    assert_eq!(code, "42501", "{sql}: {msg}");
    assert!(msg.starts_with("drawbridge:"), "{sql}: {msg}");
    msg
}

/// The SQLSTATE and message of a failed connect or query.
pub fn db_error(err: &tokio_postgres::Error) -> (String, String) {
    match err.as_db_error() {
        Some(db) => (db.code().code().to_owned(), db.message().to_owned()),
        None => ("".into(), err.to_string()),
    }
}

/// Path to an existing file for messages.
pub fn show(path: &Path) -> String {
    path.display().to_string()
}
