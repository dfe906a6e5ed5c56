//! Starts real servers; needs Debian's `postgresql` package.

use std::process::Command;

use drawbridge_localpg::{AuthMethod, ConnKind, HbaRule, LocalPg, Options, PasswordStorage};

/// Run psql over TCP with a connection string; returns (success, stdout, stderr).
fn psql_tcp(conninfo: &str, sql: &str) -> (bool, String, String) {
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-d", conninfo, "-c", sql])
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn starts_runs_sql_and_cleans_up() {
    let mut pg = LocalPg::start(Options::default()).unwrap();
    assert_eq!(pg.psql("SELECT 40 + 2").unwrap().trim(), "42");
    assert_eq!(pg.psql("SHOW fsync").unwrap().trim(), "off");

    let (ok, out, err) = psql_tcp(&pg.admin_url("postgres"), "SELECT current_user");
    assert!(ok, "{err}");
    assert_eq!(out, "postgres");

    // The password is required: a wrong one is refused over TCP.
    let (ok, _, err) = psql_tcp(&pg.url("postgres", "wrong", "postgres"), "SELECT 1");
    assert!(!ok);
    assert!(err.contains("password authentication failed"), "{err}");

    let dir = pg.dir().to_path_buf();
    let port = pg.port();
    pg.stop().unwrap();
    assert!(!pg.is_running());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    drop(pg);
    assert!(!dir.exists(), "temp dir left behind");
}

#[test]
fn drop_stops_a_running_server() {
    let pg = LocalPg::start(Options::default()).unwrap();
    let port = pg.port();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(pg);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn per_role_auth_methods() {
    let options = Options {
        hba: vec![
            HbaRule::for_user("md5_user", AuthMethod::Md5),
            HbaRule::for_user("pw_user", AuthMethod::Password),
            HbaRule::for_user("trust_user", AuthMethod::Trust),
        ],
        ..Options::default()
    };
    let pg = LocalPg::start(options).unwrap();
    pg.create_role("md5_user", "md5 pass", PasswordStorage::Md5)
        .unwrap();
    pg.create_role("pw_user", "pw-pass", PasswordStorage::Scram)
        .unwrap();
    pg.create_role("trust_user", "ignored", PasswordStorage::Scram)
        .unwrap();
    pg.create_database("app", "md5_user", None).unwrap();

    let stored = pg
        .psql("SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = 'md5_user'")
        .unwrap();
    assert_eq!(stored.trim(), "md5");

    for (user, pass) in [
        ("md5_user", "md5 pass"),
        ("pw_user", "pw-pass"),
        ("trust_user", "anything"),
    ] {
        let (ok, out, err) = psql_tcp(&pg.url(user, pass, "app"), "SELECT current_user");
        assert!(ok, "{user}: {err}");
        assert_eq!(out, user);
    }
    let (ok, _, _) = psql_tcp(&pg.url("md5_user", "bad", "app"), "SELECT 1");
    assert!(!ok, "md5 must check the password");
}

#[test]
fn tls_server_verifies_with_generated_ca() {
    let options = Options {
        tls: true,
        hba: vec![HbaRule::for_user("all", AuthMethod::Reject).kind(ConnKind::HostNoSsl)],
        ..Options::default()
    };
    let pg = LocalPg::start(options).unwrap();
    let tls = pg.tls().unwrap();
    let conninfo = format!(
        "host=localhost port={} user=postgres password={} dbname=postgres sslmode=verify-full sslrootcert={}",
        pg.port(),
        pg.superuser_password(),
        tls.ca_cert.display()
    );
    let (ok, out, err) = psql_tcp(
        &conninfo,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "t");

    // Plain TCP is rejected by the hostnossl rule.
    let (ok, _, err) = psql_tcp(
        &format!("{}?sslmode=disable", pg.admin_url("postgres")),
        "SELECT 1",
    );
    assert!(!ok, "plain TCP must be rejected");
    assert!(
        err.contains("no encryption") || err.contains("rejects"),
        "{err}"
    );
}

#[test]
fn sql_ascii_database() {
    let pg = LocalPg::start(Options::default()).unwrap();
    pg.create_database("raw", "postgres", Some("SQL_ASCII"))
        .unwrap();
    let enc = pg.psql_db("raw", "SHOW server_encoding").unwrap();
    assert_eq!(enc.trim(), "SQL_ASCII");
    let err = pg.psql("SELECT * FROM no_such_table").unwrap_err();
    assert!(err.to_string().contains("no_such_table"), "{err}");
}
