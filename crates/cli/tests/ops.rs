//! `/metrics` and `/healthz` of the real binary.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The value of the sample whose name-and-labels part is exactly `series`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_healthz_reflect_traffic() {
    let up = Upstream::start();
    let agent = Agent::new("observed");
    let gw = gateway()
        .target(up.target("app"))
        .agent(&agent)
        .extra("[audit]\ninstance = \"gw1\"")
        .http()
        .start();

    let (status, body) = gw.http_get("/healthz");
    assert_eq!(status, 200, "{body}");
    let before = gw.http_get("/metrics").1;
    assert_eq!(sample(&before, "drawbridge_sessions_active"), Some(0.0), "{before}");

    let (client, _m) = connect(&gw.url(&agent, "app")).await.unwrap();
    for _ in 0..3 {
        client.batch_execute("SELECT 1").await.unwrap();
    }
    for sql in ["TRUNCATE users", "truncate table users"] {
        let err = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(db_error(&err).0, "42501");
    }
    let err = client.batch_execute("DROP TABLE users").await.unwrap_err();
    assert_eq!(db_error(&err).0, "42501");

    let (status, metrics) = gw.http_get("/metrics");
    assert_eq!(status, 200);
    let truncates = sample(
        &metrics,
        "drawbridge_statements_total{decision=\"deny\",rule=\"no-truncate\"}",
    );
    assert_eq!(truncates, Some(2.0), "{metrics}");
    assert_eq!(
        sample(&metrics, "drawbridge_statements_total{decision=\"deny\",rule=\"no-drop-table\"}"),
        Some(1.0),
        "{metrics}"
    );
    let allowed = sample(
        &metrics,
        "drawbridge_statements_total{decision=\"allow\",rule=\"everything-else\"}",
    )
    .unwrap_or_else(|| panic!("no allow counter:\n{metrics}"));
    assert!(allowed >= 3.0, "{metrics}");
    assert_eq!(sample(&metrics, "drawbridge_sessions_active"), Some(1.0), "{metrics}");
    assert!(sample(&metrics, "drawbridge_sessions_total").unwrap_or(0.0) >= 1.0, "{metrics}");
    assert!(metrics.contains("# TYPE drawbridge_statement_duration_seconds histogram"), "{metrics}");
    // Only forwarded statements are timed: the three SELECTs at least.
    let timed = sample(&metrics, "drawbridge_statement_duration_seconds_count").unwrap();
    assert!(timed >= 3.0, "{metrics}");
    assert_eq!(
        sample(&metrics, "drawbridge_statement_duration_seconds_bucket{le=\"+Inf\"}"),
        Some(timed),
        "{metrics}"
    );
    assert!(sample(&metrics, "drawbridge_statement_duration_seconds_sum").unwrap() > 0.0);
    // session_opened + 6 statements + outcomes at least.
    let appended = sample(&metrics, "drawbridge_audit_records_total").unwrap();
    assert!(appended >= 7.0, "{metrics}");
    assert_eq!(sample(&metrics, "drawbridge_audit_healthy"), Some(1.0), "{metrics}");
    assert!(sample(&metrics, "drawbridge_audit_backlog").is_some(), "{metrics}");

    let (status, body) = gw.http_get("/healthz");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{body}");
    assert_eq!(health["sessions"], 1, "{body}");
    assert_eq!(health["audit"]["healthy"], true, "{body}");

    drop(client);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = gw.http_get("/metrics").1;
        if sample(&m, "drawbridge_sessions_active") == Some(0.0)
            && sample(&m, "drawbridge_audit_backlog") == Some(0.0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "session or backlog never drained:\n{m}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let (status, _) = gw.http_get("/no-such-endpoint");
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_without_audit_is_ok_and_failed_logins_are_counted() {
    let up = Upstream::start();
    let agent = Agent::new("plain");
    let gw = gateway().target(up.target("app")).agent(&agent).http().start();
    let (status, body) = gw.http_get("/healthz");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert!(health["audit"].is_null(), "{body}");

    let bad = gw.url_with("plain", "wrong-secret", "app");
    assert!(connect(&bad).await.is_err());
    let metrics = gw.http_get("/metrics").1;
    assert_eq!(sample(&metrics, "drawbridge_auth_failures_total"), Some(1.0), "{metrics}");
    assert!(!metrics.contains("drawbridge_audit_"), "audit gauges without audit:\n{metrics}");
}
