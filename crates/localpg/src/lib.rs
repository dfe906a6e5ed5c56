//! A throwaway PostgreSQL server in a temporary directory.
//!
//! Used by the integration tests, the benchmarks and `drawbridge demo`. Blocking and std-only:
//! it shells out to the server's own programs (initdb, pg_ctl, psql).
//!
//! ```no_run
//! let pg = drawbridge_localpg::LocalPg::start(Default::default())?;
//! pg.psql("CREATE TABLE t (x int)")?;
//! let url = pg.url("postgres", pg.superuser_password(), "postgres");
//! # Ok::<(), drawbridge_localpg::Error>(())
//! ```
#![forbid(unsafe_code)]

mod binaries;
mod error;
mod hba;
mod tls;
mod user;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use binaries::BIN_DIR_ENV;
pub use error::{Error, Result};
pub use hba::{AuthMethod, ConnKind, HbaRule};
pub use tls::{generate as generate_tls, TlsFiles};

use user::RunAs;

/// The superuser initdb creates.
pub const SUPERUSER: &str = "postgres";
/// The address the server listens on.
pub const HOST: &str = "127.0.0.1";

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// Turn on server-side TLS with a freshly generated CA and server certificate.
    pub tls: bool,
    /// pg_hba rules placed before the defaults (SCRAM for every role).
    pub hba: Vec<HbaRule>,
    /// Extra `postgresql.conf` settings, written verbatim as `name = value`.
    pub settings: Vec<(String, String)>,
    /// Where initdb, pg_ctl and postgres live; default: `$DRAWBRIDGE_PG_BIN`, else the newest
    /// `/usr/lib/postgresql/*/bin`.
    pub bin_dir: Option<PathBuf>,
    /// Server `max_connections`.
    pub max_connections: u32,
    /// How long pg_ctl waits for the server to accept connections.
    pub start_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls: false,
            hba: Vec::new(),
            settings: Vec::new(),
            bin_dir: None,
            max_connections: 300,
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// How a role's password is stored, which decides what `md5` auth can do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordStorage {
    Scram,
    Md5,
}

/// A running server. Dropping it stops the server (immediate mode) and deletes its files.
#[derive(Debug)]
pub struct LocalPg {
    dir: tempfile::TempDir,
    bin_dir: PathBuf,
    run_as: RunAs,
    port: u16,
    password: String,
    tls: Option<TlsFiles>,
    running: bool,
}

impl LocalPg {
    /// Create a cluster with initdb and start it on a free loopback port.
    pub fn start(options: Options) -> Result<LocalPg> {
        let bin_dir = binaries::find_bin_dir(options.bin_dir.as_deref())?;
        let run_as = RunAs::detect()?;
        let dir = tempfile::Builder::new()
            .prefix("localpg-")
            .tempdir()
            .map_err(|e| Error::io("create temporary directory", e))?;
        let password = random_hex(16)?;

        let mut pg = LocalPg {
            dir,
            bin_dir,
            run_as,
            port: 0,
            password,
            tls: None,
            running: false,
        };
        pg.init(&options)?;
        pg.launch(&options)?;
        Ok(pg)
    }

    fn init(&mut self, options: &Options) -> Result<()> {
        let root = self.dir.path().to_path_buf();
        let pwfile = root.join("pwfile");
        write_file(&pwfile, &self.password)?;
        if options.tls {
            self.tls = Some(tls::generate(&root.join("tls"))?);
        }
        // The server user must own everything it reads: the directory, pwfile and TLS key.
        self.run_as.give(&root)?;

        let data = self.data_dir();
        let mut initdb = self.run_as.command(&self.bin_dir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        self.run(initdb, "initdb")?;
        remove_file(&pwfile)?;

        write_file(&data.join("pg_hba.conf"), &hba::render(&options.hba))?;
        let conf = self.config_text(options);
        let conf_path = data.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .map_err(|e| Error::io(format!("open {}", conf_path.display()), e))?;
        file.write_all(conf.as_bytes())
            .map_err(|e| Error::io(format!("write {}", conf_path.display()), e))?;
        self.run_as.give(&data)
    }

    fn config_text(&self, options: &Options) -> String {
        let mut settings: Vec<(String, String)> = vec![
            ("listen_addresses".into(), quote_literal(HOST)),
            (
                "unix_socket_directories".into(),
                quote_literal(&self.socket_dir().display().to_string()),
            ),
            (
                "max_connections".into(),
                options.max_connections.to_string(),
            ),
            // A throwaway cluster: durability costs time and buys nothing.
            ("fsync".into(), "off".into()),
            ("synchronous_commit".into(), "off".into()),
            ("full_page_writes".into(), "off".into()),
            ("password_encryption".into(), quote_literal("scram-sha-256")),
            ("log_min_messages".into(), "warning".into()),
        ];
        if let Some(tls) = &self.tls {
            settings.push(("ssl".into(), "on".into()));
            settings.push((
                "ssl_cert_file".into(),
                quote_literal(&tls.cert.display().to_string()),
            ));
            settings.push((
                "ssl_key_file".into(),
                quote_literal(&tls.key.display().to_string()),
            ));
            settings.push((
                "ssl_ca_file".into(),
                quote_literal(&tls.ca_cert.display().to_string()),
            ));
        }
        settings.extend(options.settings.iter().cloned());
        let mut text = String::from("\n# drawbridge-localpg\n");
        for (name, value) in settings {
            text.push_str(&format!("{name} = {value}\n"));
        }
        text
    }

    fn launch(&mut self, options: &Options) -> Result<()> {
        // Another process may take the probed port before the server binds it; retry a little.
        let mut last = None;
        for _ in 0..3 {
            self.port = free_port()?;
            let mut pg_ctl = self.run_as.command(&self.bin_dir.join("pg_ctl"));
            pg_ctl
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t"])
                .arg(options.start_timeout.as_secs().max(1).to_string())
                .args(["-o", &format!("-p {}", self.port), "start"]);
            match self.run(pg_ctl, "pg_ctl start") {
                Ok(_) => {
                    self.running = true;
                    return Ok(());
                }
                Err(err) => {
                    // pg_ctl may give up waiting while the server is still coming up.
                    self.running = true;
                    let _ = self.stop();
                    let log = self.log_tail();
                    let port_taken =
                        log.contains("could not bind") || log.contains("already in use");
                    last = Some(Error::Start {
                        reason: err.to_string(),
                        log: self.log_path(),
                        log_tail: log,
                    });
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Invalid("no start attempt made".into())))
    }

    fn run(&self, mut cmd: Command, what: &str) -> Result<String> {
        // The server user may not be able to enter the caller's working directory.
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        let output = cmd
            .output()
            .map_err(|e| Error::io(format!("run {what}"), e))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(Error::Command {
                command: what.to_owned(),
                status: output.status.to_string(),
                output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
            })
        }
    }

    /// Run SQL (or psql meta-commands) as the superuser in database `postgres`.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_db("postgres", sql)
    }

    /// Run SQL as the superuser in `database`; output is unaligned, tuples only, `|` between
    /// columns. Stops at the first error.
    pub fn psql_db(&self, database: &str, sql: &str) -> Result<String> {
        let mut child = Command::new(binaries::psql_path(&self.bin_dir))
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            .arg("-h")
            .arg(self.socket_dir())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                database,
            ])
            .env("PGPASSWORD", &self.password)
            .env_remove("PGSERVICE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("run psql", e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(sql.as_bytes())
                .map_err(|e| Error::io("write to psql", e))?;
        }
        let output = child
            .wait_with_output()
            .map_err(|e| Error::io("wait for psql", e))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(Error::Command {
                command: "psql".into(),
                status: output.status.to_string(),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            })
        }
    }

    /// `CREATE ROLE name LOGIN PASSWORD '…'`, stored as `storage`.
    pub fn create_role(&self, name: &str, password: &str, storage: PasswordStorage) -> Result<()> {
        let encryption = match storage {
            PasswordStorage::Scram => "scram-sha-256",
            PasswordStorage::Md5 => "md5",
        };
        self.psql(&format!(
            "SET password_encryption = {};\nCREATE ROLE {} LOGIN PASSWORD {};\n",
            quote_literal(encryption),
            quote_ident(name),
            quote_literal(password)
        ))
        .map(drop)
    }

    /// `CREATE DATABASE name OWNER owner`, optionally with another encoding (e.g. `SQL_ASCII`).
    pub fn create_database(&self, name: &str, owner: &str, encoding: Option<&str>) -> Result<()> {
        let mut sql = format!(
            "CREATE DATABASE {} OWNER {}",
            quote_ident(name),
            quote_ident(owner)
        );
        if let Some(encoding) = encoding {
            // Only template0 may be copied into a different encoding.
            sql.push_str(&format!(
                " TEMPLATE template0 ENCODING {}",
                quote_literal(encoding)
            ));
        }
        self.psql(&sql).map(drop)
    }

    /// `postgresql://user:password@127.0.0.1:port/database`, percent-encoded.
    pub fn url(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "postgresql://{}:{}@{HOST}:{}/{}",
            percent_encode(user),
            percent_encode(password),
            self.port,
            percent_encode(database)
        )
    }

    /// The superuser's URL for `database`.
    pub fn admin_url(&self, database: &str) -> String {
        self.url(SUPERUSER, &self.password, database)
    }

    /// Stop the server now (immediate mode). Files stay until the value is dropped.
    pub fn stop(&mut self) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        let mut pg_ctl = self.run_as.command(&self.bin_dir.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"]);
        self.run(pg_ctl, "pg_ctl stop").map(drop)
    }

    /// Whether the server was started and not stopped.
    pub fn is_running(&self) -> bool {
        self.running
    }

    pub fn host(&self) -> &'static str {
        HOST
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn superuser(&self) -> &'static str {
        SUPERUSER
    }

    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// The server's certificates when started with `tls: true`.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The temporary directory holding everything (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The last lines of the server log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for LocalPg {
    fn drop(&mut self) {
        // Nothing useful to do with a failure while dropping; the directory goes anyway.
        let _ = self.stop();
    }
}

/// `'text'` with embedded quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `"name"` with embedded double quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A free TCP port on the loopback address (free when probed).
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((HOST, 0)).map_err(|e| Error::io("probe for a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("probe for a free port", e))
}

/// `bytes` random bytes from the kernel, hex-encoded.
pub fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| Error::io("read /dev/urandom", e))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_file(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| Error::io(format!("write {}", path.display()), e))
}

fn remove_file(path: &Path) -> Result<()> {
    std::fs::remove_file(path).map_err(|e| Error::io(format!("remove {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn percent_encoding_keeps_unreserved() {
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    }

    #[test]
    fn random_hex_has_requested_length_and_varies() {
        let a = random_hex(16).unwrap();
        let b = random_hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
