//! Per-call cost of `Analyzer::analyze`: cold parse, exact-text hit, literal-normalized hit.
//! Run: cargo run --release -p drawbridge-sql --example cachebench
use drawbridge_sql::Analyzer;
use std::time::Instant;

fn per_call(n: u32, mut f: impl FnMut(u32)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() {
    let n = 200_000;
    let texts: Vec<String> =
        (0..n).map(|i| format!("SELECT abalance FROM pgbench_accounts WHERE aid = {};", i * 7 + 1)).collect();
    let a = Analyzer::default();
    let cold = per_call(n / 10, |i| {
        let _ = a.analyze_uncached(&texts[i as usize]).unwrap();
    });
    a.analyze(&texts[0]).unwrap();
    let exact = per_call(n, |_| {
        let _ = a.analyze(&texts[0]).unwrap();
    });
    let normalized = per_call(n, |i| {
        let _ = a.analyze(&texts[i as usize]).unwrap();
    });
    println!("cold parse + analysis: {cold:.0} ns/op");
    println!("hit by exact text:     {exact:.0} ns/op");
    println!("hit by normalized key: {normalized:.0} ns/op");
    println!("{:?}", a.stats());
}
