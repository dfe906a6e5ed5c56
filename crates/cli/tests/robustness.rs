//! Hostile bytes, a missing upstream, and the per-connection log line.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::*;

/// Send `bytes`, optionally close our write side, and read until the gateway closes.
/// Panics if the gateway keeps the connection open for 5 seconds.
fn send_expect_close(port: u16, bytes: &[u8], half_close: bool) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The gateway may close while we are still writing; that is fine.
    let _ = stream.write_all(bytes);
    if half_close {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("connection not closed after {bytes:02x?}: {e}; received {got:02x?}"),
        }
    }
}

fn startup(user: &str, database: &str) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", database)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend(body);
    msg
}

async fn still_serves(gw: &Gateway, agent: &Agent) {
    let (client, _m) = connect(&gw.url(agent, "app"))
        .await
        .expect("gateway stopped serving");
    let n: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_client_bytes_close_only_that_connection() {
    let up = Upstream::start();
    let agent = Agent::new("claude");
    let mut gw = gateway().target(up.target("app")).agent(&agent).start();
    let port = gw.port;

    let mut cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "http request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
        ),
        ("length -1", vec![0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0], false),
        ("length 2^31", vec![0x80, 0, 0, 0, 0, 3, 0, 0], false),
        ("length too small", vec![0, 0, 0, 2, 0, 3, 0, 0], false),
        (
            "truncated startup",
            vec![0, 0, 0, 100, 0, 3, 0, 0, b'u', b's'],
            true,
        ),
        (
            "unknown protocol",
            vec![0, 0, 0, 8, 0x12, 0x34, 0x56, 0x78],
            false,
        ),
        ("empty then close", Vec::new(), true),
    ];
    // A valid startup followed by a password message claiming 2 GiB.
    let mut huge_password = startup(&agent.name, "app");
    huge_password.extend_from_slice(&[b'p', 0x7f, 0xff, 0xff, 0xff, b'x']);
    cases.push(("huge password message", huge_password, false));
    // A valid startup followed by a frame cut short.
    let mut cut = startup(&agent.name, "app");
    cut.extend_from_slice(&[b'p', 0, 0, 0, 50, b'n']);
    cases.push(("truncated password message", cut, true));

    let handles: Vec<_> = cases
        .into_iter()
        .map(|(name, bytes, half)| {
            tokio::task::spawn_blocking(move || (name, send_expect_close(port, &bytes, half)))
        })
        .collect();
    for h in handles {
        let (name, _) = h.await.unwrap();
        assert!(gw.is_running(), "gateway died after {name}");
    }
    still_serves(&gw, &agent).await;
}

#[test]
fn ssl_and_gss_requests_answered_n_without_tls() {
    let up = Upstream::start();
    let agent = Agent::new("claude");
    let gw = gateway().target(up.target("app")).agent(&agent).start();
    for code in [80_877_103u32, 80_877_104] {
        let mut stream = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut req = 8u32.to_be_bytes().to_vec();
        req.extend_from_slice(&code.to_be_bytes());
        stream.write_all(&req).unwrap();
        let mut answer = [0u8; 1];
        stream.read_exact(&mut answer).unwrap();
        assert_eq!(answer[0], b'N', "request code {code}");
        // The same connection then proceeds with an ordinary startup.
        stream.write_all(&startup(&agent.name, "app")).unwrap();
        stream.read_exact(&mut answer).unwrap();
        assert_eq!(
            answer[0], b'R',
            "expected an authentication request after {code}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_names_target_and_others_keep_working() {
    let up = Upstream::start();
    let agent = Agent::new("claude");
    let dead_port = localpg::free_port().unwrap();
    let mut gw = gateway()
        .server("connect_timeout_secs = 3")
        .target(up.target("app"))
        .target(TargetSpec::new("ghost", dead_port, "app", "app_owner").password("x"))
        .agent(&agent)
        .start();
    let started = std::time::Instant::now();
    let err = match connect(&gw.url(&agent, "ghost")).await {
        Ok(_) => panic!("connected to a target with no server"),
        Err(e) => db_error(&e),
    };
    assert!(err.0.starts_with("08"), "SQLSTATE {} ({})", err.0, err.1);
    assert!(
        err.1.contains("ghost"),
        "message should name the target: {}",
        err.1
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(gw.is_running());
    still_serves(&gw, &agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_stopping_mid_session_closes_cleanly() {
    let mut up = Upstream::start();
    let agent = Agent::new("claude");
    let second = Upstream::start();
    let mut gw = gateway()
        .target(up.target("app"))
        .target(second.target("second"))
        .agent(&agent)
        .start();
    let (client, _m) = connect(&gw.url(&agent, "app")).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    up.pg.stop().unwrap();
    let err = client.simple_query("SELECT 1").await.unwrap_err();
    assert!(client.is_closed() || err.as_db_error().is_some(), "{err}");
    assert!(gw.is_running());
    let (other, _m) = connect(&gw.url(&agent, "second")).await.unwrap();
    other.simple_query("SELECT 1").await.unwrap();
}

fn session_lines<'a>(logs: &'a str, agent: &str, target: &str) -> Vec<&'a str> {
    logs.lines()
        .filter(|l| {
            l.contains(agent) && l.contains(target) && l.to_lowercase().contains("duration")
        })
        .collect()
}

async fn two_sessions(gw: &Gateway, agent: &Agent) {
    for _ in 0..2 {
        let (client, _m) = connect(&gw.url(agent, "applog")).await.unwrap();
        client.simple_query("SELECT * FROM users").await.unwrap();
        drop(client);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_text_log_line_per_connection() {
    let up = Upstream::start();
    let agent = Agent::new("logagent7");
    let gw = gateway().target(up.target("applog")).agent(&agent).start();
    two_sessions(&gw, &agent).await;
    let logs = gw.wait_logs(Duration::from_secs(5), |l| {
        session_lines(l, "logagent7", "applog").len() >= 2
    });
    let lines = session_lines(&logs, "logagent7", "applog");
    assert_eq!(lines.len(), 2, "expected one line per connection:\n{logs}");
    for line in lines {
        assert!(
            line.to_lowercase().contains("bytes"),
            "no byte counts: {line}"
        );
    }
}

/// Every (key, value) pair in a JSON object, nested objects included.
fn flatten(value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            if v.is_object() {
                flatten(v, out);
            } else {
                out.push((k.clone(), v.clone()));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_json_log_line_per_connection() {
    let up = Upstream::start();
    let agent = Agent::new("logagent7");
    let gw = gateway()
        .server("log_format = \"json\"")
        .target(up.target("applog"))
        .agent(&agent)
        .start();
    two_sessions(&gw, &agent).await;
    let logs = gw.wait_logs(Duration::from_secs(5), |l| {
        session_lines(l, "logagent7", "applog").len() >= 2
    });
    let mut sessions = 0;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let mut fields = Vec::new();
        flatten(&value, &mut fields);
        let has = |key: &str, want: &str| {
            fields
                .iter()
                .any(|(k, v)| k == key && v.as_str() == Some(want))
        };
        if has("agent", "logagent7")
            && has("target", "applog")
            && fields.iter().any(|(k, _)| k.contains("duration"))
        {
            sessions += 1;
            let bytes: Vec<_> = fields
                .iter()
                .filter(|(k, v)| k.contains("bytes") && v.is_number())
                .collect();
            assert!(!bytes.is_empty(), "no numeric byte counts: {line}");
        }
    }
    assert_eq!(
        sessions, 2,
        "expected one JSON line per connection:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_dropped_after_auth_timeout() {
    let up = Upstream::start();
    let agent = Agent::new("claude");
    let gw = gateway()
        .server("auth_timeout_secs = 1")
        .target(up.target("app"))
        .agent(&agent)
        .start();
    let port = gw.port;
    let started = std::time::Instant::now();
    // Connect and say nothing; then start a startup and stall before authenticating.
    let silent = tokio::task::spawn_blocking(move || send_expect_close(port, &[], false));
    let stalled = {
        let bytes = startup(&agent.name, "app");
        tokio::task::spawn_blocking(move || send_expect_close(port, &bytes, false))
    };
    silent.await.unwrap();
    stalled.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    still_serves(&gw, &agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_is_closed_after_idle_timeout() {
    let up = Upstream::start();
    let agent = Agent::new("claude");
    let gw = gateway()
        .server("idle_timeout_secs = 1")
        .target(up.target("app"))
        .agent(&agent)
        .start();
    let (client, _m) = connect(&gw.url(&agent, "app")).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        client.simple_query("SELECT 1").await.is_err(),
        "idle session still open"
    );
    // A busy session is not idle: a statement longer than the timeout completes.
    let (busy, _m) = connect(&gw.url(&agent, "app")).await.unwrap();
    busy.simple_query("SELECT pg_sleep(1.5)")
        .await
        .expect("a running statement is not idleness");
}
