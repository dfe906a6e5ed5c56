//! Operations endpoints: `/metrics` (Prometheus text format) and `/healthz`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use parking_lot::Mutex;

use crate::server::Shared;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: Default::default(), count: AtomicU64::new(0), sum_us: AtomicU64::new(0) }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Counters every session updates. A statement counter is looked up once per distinct
/// decision and then kept with it, so counting costs one atomic add.
#[derive(Default)]
pub struct Metrics {
    pub sessions_active: AtomicI64,
    pub sessions_total: AtomicU64,
    pub auth_failures: AtomicU64,
    /// Result values masked.
    pub masked_values: AtomicU64,
    /// Row-limited writes that ran unguarded because they pin a unique key.
    pub writes_bounded_by_key: AtomicU64,
    pub key_checks: KeyChecks,
    /// Time from forwarding a message to the target's ReadyForQuery.
    pub latency: Histogram,
    statements: Mutex<BTreeMap<(String, String), Arc<AtomicU64>>>,
}

/// Checks of the targets' unique keys against the cached catalogs, by what they found.
#[derive(Default)]
pub struct KeyChecks {
    pub confirmed: AtomicU64,
    /// The keys differed and the catalog was reloaded.
    pub changed: AtomicU64,
    /// No answer (target down, timeout): key writes stay guarded.
    pub failed: AtomicU64,
}

impl Metrics {
    pub fn statement_counter(&self, decision: &str, rule: &str) -> Arc<AtomicU64> {
        self.statements
            .lock()
            .entry((decision.to_string(), rule.to_string()))
            .or_default()
            .clone()
    }

    pub fn render(&self, shared: &Shared) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(out, "# HELP drawbridge_statements_total Statements judged, by decision and deciding rule.");
        let _ = writeln!(out, "# TYPE drawbridge_statements_total counter");
        for ((decision, rule), n) in self.statements.lock().iter() {
            let _ = writeln!(
                out,
                "drawbridge_statements_total{{decision=\"{}\",rule=\"{}\"}} {}",
                escape(decision),
                escape(rule),
                n.load(Ordering::Relaxed)
            );
        }
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        gauge(&mut out, "drawbridge_sessions_active", "Agent sessions open now.", "gauge", self.sessions_active.load(Ordering::Relaxed));
        gauge(&mut out, "drawbridge_sessions_total", "Agent sessions opened.", "counter", self.sessions_total.load(Ordering::Relaxed) as i64);
        gauge(&mut out, "drawbridge_auth_failures_total", "Failed agent authentications.", "counter", self.auth_failures.load(Ordering::Relaxed) as i64);
        gauge(&mut out, "drawbridge_masked_values_total", "Result values masked.", "counter", self.masked_values.load(Ordering::Relaxed) as i64);
        gauge(
            &mut out,
            "drawbridge_writes_bounded_by_key_total",
            "Row-limited writes run without the row-limit guard because their WHERE pins a unique key.",
            "counter",
            self.writes_bounded_by_key.load(Ordering::Relaxed) as i64,
        );
        let _ = writeln!(out, "# HELP drawbridge_key_checks_total Checks of a target's unique keys against the cached catalog, by result.");
        let _ = writeln!(out, "# TYPE drawbridge_key_checks_total counter");
        let k = &self.key_checks;
        for (result, n) in [("confirmed", &k.confirmed), ("changed", &k.changed), ("failed", &k.failed)] {
            let _ = writeln!(out, "drawbridge_key_checks_total{{result=\"{result}\"}} {}", n.load(Ordering::Relaxed));
        }
        self.latency.render(
            "drawbridge_statement_duration_seconds",
            "Time from forwarding a message to the target's answer.",
            &mut out,
        );
        if let Some(log) = &shared.audit {
            let s = log.stats();
            gauge(&mut out, "drawbridge_audit_records_total", "Audit records appended.", "counter", s.appended as i64);
            gauge(&mut out, "drawbridge_audit_backlog", "Audit records not yet in the store.", "gauge", s.backlog as i64);
            gauge(&mut out, "drawbridge_audit_healthy", "1 when records can be made durable.", "gauge", i64::from(s.healthy));
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub fn router(shared: Arc<Shared>) -> Router {
    let metrics = {
        let shared = shared.clone();
        move || async move {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], shared.metrics.render(&shared))
        }
    };
    let shared2 = shared.clone();
    let healthz = move || async move {
        let audit_ok = shared.audit.as_ref().is_none_or(|a| a.healthy());
        let body = serde_json::json!({
            "status": if audit_ok { "ok" } else { "degraded" },
            "sessions": shared.metrics.sessions_active.load(Ordering::Relaxed),
            "audit": shared.audit.as_ref().map(|a| {
                let s = a.stats();
                serde_json::json!({ "healthy": s.healthy, "backlog": s.backlog, "last_error": s.last_error })
            }),
        });
        let code = if audit_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        (code, axum::Json(body)).into_response()
    };
    let approvals = shared2.approvals.clone();
    let router = Router::new().route("/metrics", get(metrics)).route("/healthz", get(healthz));
    match approvals {
        Some(service) => router.merge(approvals::router(service, shared2.operators.clone())),
        None => router,
    }
}
