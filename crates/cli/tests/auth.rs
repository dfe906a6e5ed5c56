//! Agent authentication, target selection, upstream auth methods and TLS, and secrecy of the
//! target's credentials.

mod common;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use common::*;
use localpg::{random_hex, AuthMethod, ConnKind, HbaRule, Options, PasswordStorage};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

async fn connect_err(url: &str) -> (String, String) {
    match connect(url).await {
        Ok(_) => panic!("connection to {url} unexpectedly succeeded"),
        Err(e) => db_error(&e),
    }
}

async fn current_user(url: &str) -> Result<String, tokio_postgres::Error> {
    let (client, _m) = connect(url).await?;
    Ok(client
        .query_one("SELECT current_user::text", &[])
        .await?
        .get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_new_secret_authenticates() {
    let up = Upstream::start();
    let agent = Agent::new("claude");
    let gw = gateway().target(up.target("app")).agent(&agent).start();
    assert_eq!(
        current_user(&gw.url(&agent, "app")).await.unwrap(),
        "app_owner"
    );

    let other = Agent::new("claude");
    assert_ne!(agent.secret, other.secret, "secrets must be fresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_get_28p01_and_unknown_target_3d000() {
    let up = Upstream::start();
    let agent = Agent::new("claude");
    let gw = gateway()
        .server("auth_failures_per_minute = 1000")
        .target(up.target("app"))
        .agent(&agent)
        .start();

    let (code, wrong_secret) = connect_err(&gw.url_with("claude", "not-the-secret", "app")).await;
    assert_eq!(code, "28P01", "{wrong_secret}");
    let (code, unknown_agent) = connect_err(&gw.url_with("mallory", &agent.secret, "app")).await;
    assert_eq!(code, "28P01", "{unknown_agent}");
    // Nothing in the message tells a wrong secret from an unknown agent.
    assert_eq!(
        wrong_secret.replace("claude", "X"),
        unknown_agent.replace("mallory", "X")
    );

    let (code, message) = connect_err(&gw.url(&agent, "no_such_target")).await;
    assert_eq!(code, "3D000", "{message}");

    // Failures did not disturb the gateway.
    assert_eq!(
        current_user(&gw.url(&agent, "app")).await.unwrap(),
        "app_owner"
    );
}

/// Connect from a chosen loopback source address.
async fn connect_from(source: [u8; 4], port: u16, url: &str) -> Result<(), (String, String)> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind((std::net::Ipv4Addr::from(source), 0).into())
        .unwrap();
    let stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let config: tokio_postgres::Config = url.parse().unwrap();
    match config.connect_raw(stream, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            drive(connection);
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| db_error(&e))?;
            Ok(())
        }
        Err(e) => Err(db_error(&e)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_are_rate_limited_per_address() {
    let up = Upstream::start();
    let agent = Agent::new("claude");
    let gw = gateway()
        .server("auth_failures_per_minute = 3")
        .target(up.target("app"))
        .agent(&agent)
        .start();
    let good = gw.url(&agent, "app");
    let bad = gw.url_with("claude", "wrong", "app");

    for attempt in 0..3 {
        let err = connect_from([127, 0, 0, 1], gw.port, &bad)
            .await
            .unwrap_err();
        assert_eq!(err.0, "28P01", "attempt {attempt}: {}", err.1);
    }
    // Now even the right secret is refused from this address.
    let err = connect_from([127, 0, 0, 1], gw.port, &good)
        .await
        .unwrap_err();
    assert_eq!(err.0, "28P01", "{}", err.1);
    assert!(err.1.to_lowercase().contains("too many"), "{}", err.1);

    // Another address is unaffected.
    connect_from([127, 0, 0, 2], gw.port, &good)
        .await
        .expect("127.0.0.2 must not be limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_auth_methods() {
    let up = Upstream::start_with(Options {
        hba: vec![
            HbaRule::for_user("md5_user", AuthMethod::Md5),
            HbaRule::for_user("pw_user", AuthMethod::Password),
            HbaRule::for_user("trust_user", AuthMethod::Trust),
        ],
        ..Options::default()
    });
    let pw = |kind: &str| format!("{kind}-{}-Zq9", random_hex(6).unwrap());
    let (md5_pw, pw_pw, env_pw, file_pw) = (pw("md5"), pw("clear"), pw("env"), pw("file"));
    up.pg
        .create_role("md5_user", &md5_pw, PasswordStorage::Md5)
        .unwrap();
    up.pg
        .create_role("pw_user", &pw_pw, PasswordStorage::Scram)
        .unwrap();
    up.pg
        .create_role("trust_user", "unused", PasswordStorage::Scram)
        .unwrap();
    up.pg
        .create_role("env_user", &env_pw, PasswordStorage::Scram)
        .unwrap();
    up.pg
        .create_role("file_user", &file_pw, PasswordStorage::Scram)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, format!("{file_pw}\n")).unwrap();

    let port = up.pg.port();
    let agent = Agent::new("claude");
    let gw = gateway()
        .target(up.target("t_scram"))
        .target(TargetSpec::new("t_md5", port, "app", "md5_user").password(&md5_pw))
        .target(TargetSpec::new("t_password", port, "app", "pw_user").password(&pw_pw))
        .target(TargetSpec::new("t_trust", port, "app", "trust_user"))
        .target(
            TargetSpec::new("t_env", port, "app", "env_user")
                .line("password_env = \"DRAWBRIDGE_TEST_UPSTREAM_PW\""),
        )
        .target(
            TargetSpec::new("t_file", port, "app", "file_user").line(&format!(
                "password_file = {}",
                toml_str(&pw_file.display().to_string())
            )),
        )
        .target(TargetSpec::new("t_wrong", port, "app", "md5_user").password("WrongPw-Zq9-leak"))
        .env("DRAWBRIDGE_TEST_UPSTREAM_PW", &env_pw)
        .agent(&agent)
        .start();

    for (target, user) in [
        ("t_scram", "app_owner"),
        ("t_md5", "md5_user"),
        ("t_password", "pw_user"),
        ("t_trust", "trust_user"),
        ("t_env", "env_user"),
        ("t_file", "file_user"),
    ] {
        let got = current_user(&gw.url(&agent, target)).await;
        assert_eq!(
            got.as_deref().map_err(|e| e.to_string()),
            Ok(user),
            "target {target}"
        );
    }
    let (code, message) = match current_user(&gw.url(&agent, "t_wrong")).await {
        Ok(_) => panic!("wrong upstream password accepted"),
        Err(e) => db_error(&e),
    };
    assert!(!code.is_empty(), "expected an ErrorResponse, got {message}");
    assert!(
        message.contains("t_wrong"),
        "the error should name the target: {message}"
    );
    assert!(!message.contains("WrongPw"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_modes() {
    // The server refuses unencrypted TCP, so only TLS modes can reach it.
    let up = Upstream::start_with(Options {
        tls: true,
        hba: vec![HbaRule::for_user("all", AuthMethod::Reject).kind(ConnKind::HostNoSsl)],
        ..Options::default()
    });
    let ca = up.pg.tls().unwrap().ca_cert.display().to_string();
    let other_ca_dir = tempfile::tempdir().unwrap();
    let other_ca = localpg::generate_tls(other_ca_dir.path()).unwrap().ca_cert;
    let agent = Agent::new("claude");
    let gw = gateway()
        .target(up.target("prefer").line("tls = \"prefer\""))
        .target(up.target("require").line("tls = \"require\""))
        .target(
            up.target("verify")
                .line("tls = \"verify-full\"")
                .line(&format!("tls_ca_file = {}", toml_str(&ca))),
        )
        .target(
            up.target("wrong_ca")
                .line("tls = \"verify-full\"")
                .line(&format!(
                    "tls_ca_file = {}",
                    toml_str(&other_ca.display().to_string())
                )),
        )
        .target(up.target("system_roots").line("tls = \"verify-full\""))
        .target(up.target("plain").line("tls = \"disable\""))
        .agent(&agent)
        .start();

    for target in ["prefer", "require", "verify"] {
        let (client, _m) = connect(&gw.url(&agent, target))
            .await
            .unwrap_or_else(|e| panic!("{target}: {e}"));
        let ssl: bool = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(ssl, "{target}: upstream link not encrypted");
    }
    for target in ["wrong_ca", "system_roots", "plain"] {
        let (code, message) = connect_err(&gw.url(&agent, target)).await;
        assert!(
            !code.is_empty(),
            "{target}: expected an ErrorResponse, got {message}"
        );
        assert!(
            message.contains(target),
            "{target}: error should name the target: {message}"
        );
    }
}

#[test]
fn client_tls_when_configured() {
    let up = Upstream::start();
    let agent = Agent::new("claude");
    let dir = tempfile::tempdir().unwrap();
    let tls = localpg::generate_tls(dir.path()).unwrap();
    let gw = gateway()
        .server(&format!(
            "tls_cert = {}",
            toml_str(&tls.cert.display().to_string())
        ))
        .server(&format!(
            "tls_key = {}",
            toml_str(&tls.key.display().to_string())
        ))
        .target(up.target("app"))
        .agent(&agent)
        .start();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        gw.url(&agent, "app"),
        tls.ca_cert.display()
    );
    let out = psql(&url, "\\conninfo\nSELECT count(*) FROM users;\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("SSL connection"), "{stdout}");
    assert!(stdout.trim_end().ends_with("50"), "{stdout}");

    // Plain connections still work when the client does not ask for TLS.
    let out = psql(
        &format!("{}?sslmode=disable", gw.url(&agent, "app")),
        "SELECT 1;\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn client_tls_refused_cleanly_without_certificate() {
    let up = Upstream::start();
    let agent = Agent::new("claude");
    let mut gw = gateway().target(up.target("app")).agent(&agent).start();
    let out = psql(
        &format!("{}?sslmode=require", gw.url(&agent, "app")),
        "SELECT 1;\n",
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("does not support SSL"), "{stderr}");
    let out = psql(
        &format!("{}?sslmode=prefer", gw.url(&agent, "app")),
        "SELECT 2;\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "2");
    assert!(gw.is_running());
}

/// A stream that keeps a copy of every byte the client receives.
struct Recording {
    inner: tokio::net::TcpStream,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recording {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            this.seen
                .lock()
                .unwrap()
                .extend_from_slice(&buf.filled()[before..]);
        }
        result
    }
}

impl AsyncWrite for Recording {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

async fn recorded_session(port: u16, url: &str, queries: &[&str]) -> Vec<u8> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let inner = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let stream = Recording {
        inner,
        seen: seen.clone(),
    };
    let config: tokio_postgres::Config = url.parse().unwrap();
    if let Ok((client, connection)) = config.connect_raw(stream, tokio_postgres::NoTls).await {
        drive(connection);
        for q in queries {
            // Errors (permission denied and the like) are part of what we inspect.
            let _ = client.simple_query(q).await;
        }
    }
    let bytes = seen.lock().unwrap().clone();
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_password_never_reaches_agent_or_logs() {
    let up = Upstream::start();
    let env_pw = format!("EnvPw-{}-Zq9", random_hex(6).unwrap());
    up.pg
        .create_role("env_user", &env_pw, PasswordStorage::Scram)
        .unwrap();
    let wrong_pw = format!("WrongPw-{}-Zq9", random_hex(6).unwrap());
    let agent = Agent::new("claude");
    let gw = gateway()
        .target(up.target("app"))
        .target(
            TargetSpec::new("env", up.pg.port(), "app", "env_user")
                .line("password_env = \"DRAWBRIDGE_TEST_PW\""),
        )
        .target(TargetSpec::new("bad", up.pg.port(), "app", "app_owner").password(&wrong_pw))
        .env("DRAWBRIDGE_TEST_PW", &env_pw)
        .agent(&agent)
        .start();

    let probes = [
        "SHOW ALL",
        "SELECT * FROM pg_settings",
        "SELECT * FROM pg_stat_activity",
        "SELECT rolname, rolpassword FROM pg_authid",
        "SELECT * FROM pg_roles",
        "SELECT current_setting('application_name'), inet_server_port(), version()",
        "SELECT pg_read_file('pg_hba.conf')",
        "SELECT nonsense FROM nowhere",
    ];
    let mut seen = Vec::new();
    for target in ["app", "env", "bad"] {
        let bytes = recorded_session(gw.port, &gw.url(&agent, target), &probes).await;
        assert!(!bytes.is_empty(), "{target}: nothing received");
        seen.push((target, bytes));
    }
    // The sessions did run: the app session saw rows of pg_settings.
    assert!(
        contains(&seen[0].1, "max_connections"),
        "probes did not run through the gateway"
    );

    let logs = gw.logs();
    for secret in [&up.app_password, &env_pw, &wrong_pw] {
        for (target, bytes) in &seen {
            assert!(
                !contains(bytes, secret),
                "target password sent to the agent via {target}"
            );
        }
        assert!(
            !logs.contains(secret.as_str()),
            "target password in gateway logs:\n{logs}"
        );
    }
    assert!(
        !logs.contains(&agent.secret),
        "agent secret in gateway logs"
    );
}
