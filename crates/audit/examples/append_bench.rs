//! Cost of `AuditLog::append` with the SQLite store, 1 and 8 threads.
//! `cargo run --release -p drawbridge-audit --example append_bench [records_per_thread]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use drawbridge_audit::{AuditLog, Config, Event};

fn event(session: &str, n: u64) -> Event {
    Event::Statement {
        session: session.to_owned(),
        statement: n,
        protocol: "extended".into(),
        text: "SELECT id, name, email FROM users WHERE id = $1".into(),
        params: Some(vec![Some("42".into())]),
        facts: drawbridge_audit::Json(serde_json::value::to_raw_value(&serde_json::json!({"kind": "select", "tables": ["public.users"], "functions": []})).unwrap()),
        effect: "allow".into(),
        rules: vec!["reads_ok".into()],
        reason: String::new(),
        max_rows: None,
    }
}

fn run(threads: usize, per_thread: u64, fsync: bool) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let cfg = Config { fsync, ..Config::default() };
    let log = Arc::new(AuditLog::open(&cfg, dir.path())?);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let log = log.clone();
            s.spawn(move || {
                let session = format!("s{t}");
                for n in 0..per_thread {
                    if log.append(event(&session, n)).is_err() {
                        eprintln!("append failed");
                        return;
                    }
                }
            });
        }
    });
    let elapsed = start.elapsed();
    let total = threads as u64 * per_thread;
    let drain = Instant::now();
    log.flush(Duration::from_secs(120))?;
    println!(
        "threads={threads} fsync={fsync}: {total} appends in {:.3} s = {:.0} ns/append wall ({:.2} M/s); store caught up {:.3} s later",
        elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / total as f64,
        total as f64 / elapsed.as_secs_f64() / 1e6,
        drain.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let per_thread: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    run(1, per_thread, false)?;
    run(8, per_thread / 8, false)?;
    run(1, 2000, true)?;
    Ok(())
}
