//! Rewrite cost per DataRow. Run: `cargo run --release -p drawbridge-mask --example bench`.

use drawbridge_mask::{
    oid, rewrite_data_row, ColumnMask, Detectors, Format, HashKey, Plan, Strategy,
};
use std::hint::black_box;
use std::time::Instant;

fn frame(values: &[&[u8]]) -> Vec<u8> {
    let mut f = vec![b'D', 0, 0, 0, 0];
    f.extend_from_slice(&(values.len() as i16).to_be_bytes());
    for v in values {
        f.extend_from_slice(&(v.len() as i32).to_be_bytes());
        f.extend_from_slice(v);
    }
    let len = (f.len() - 1) as i32;
    f[1..5].copy_from_slice(&len.to_be_bytes());
    f
}

fn time(name: &str, plan: &Plan, f: &[u8], rows: usize) {
    let mut out = Vec::with_capacity(1024);
    for _ in 0..10_000 {
        out.clear();
        let _ = rewrite_data_row(plan, f, &mut out);
    }
    let t = Instant::now();
    for _ in 0..rows {
        out.clear();
        black_box(rewrite_data_row(plan, black_box(f), &mut out).ok());
    }
    let ns = t.elapsed().as_nanos() as f64 / rows as f64;
    println!(
        "{name:<44} {ns:>8.1} ns/row  ({} -> {} bytes)",
        f.len(),
        out.len()
    );
}

fn main() {
    let key = HashKey::new(b"bench key").unwrap_or_else(|e| panic!("{e}"));
    let row: [&[u8]; 10] = [
        b"1048576",
        b"Alice Smith",
        b"alice.smith@example.com",
        b"+1 415 555 2671",
        b"4242424242424242",
        b"123-45-6789",
        b"2024-01-15 10:30:00+00",
        b"active",
        b"Customer asked about the invoice and wants a callback next week.",
        b"42.50",
    ];
    let f = frame(&row);
    let text = |s: Strategy| Some(ColumnMask::new(s, oid::TEXT, -1, Format::Text));
    let rows = 1_000_000;

    let none = Plan::new(vec![None; 10], key.clone());
    time("passthrough plan (copy only)", &none, &f, rows);

    let mut cols = vec![None; 10];
    cols[2] = text(Strategy::redact());
    cols[4] = text(Strategy::partial(4));
    cols[5] = text(Strategy::Null);
    time(
        "3 masked: redact, partial, null",
        &Plan::new(cols.clone(), key.clone()),
        &f,
        rows,
    );

    cols[2] = text(Strategy::Hash { hex_len: 16 });
    time(
        "3 masked: hash, partial, null",
        &Plan::new(cols.clone(), key.clone()),
        &f,
        rows,
    );

    let mut hashes = vec![None; 10];
    for i in [2, 3, 4] {
        hashes[i] = text(Strategy::Hash { hex_len: 16 });
    }
    time(
        "3 masked: hash x3",
        &Plan::new(hashes, key.clone()),
        &f,
        rows,
    );

    let mut scan = vec![None; 10];
    scan[8] = Some(
        ColumnMask::new(Strategy::redact(), oid::TEXT, -1, Format::Text).scanning(Detectors::ALL),
    );
    time(
        "1 scanned clean note (all detectors)",
        &Plan::new(scan.clone(), key.clone()),
        &f,
        rows,
    );

    let mut dirty = row;
    dirty[8] = b"Customer alice@example.com paid with 4242 4242 4242 4242, call +1 415 555 2671.";
    let fd = frame(&dirty);
    time(
        "1 scanned note with 3 findings",
        &Plan::new(scan, key.clone()),
        &fd,
        rows,
    );
    per_detector();
}

/// Cost of each detector on one clean 64-character note.
#[allow(dead_code)]
fn per_detector() {
    let note = "Customer asked about the invoice and wants a callback next week.";
    for t in drawbridge_mask::SemanticType::ALL {
        let n = 200_000;
        let start = Instant::now();
        for _ in 0..n {
            black_box(t.find(black_box(note)));
        }
        println!(
            "detector {:<8} {:>8.1} ns per 64-char note",
            t.name(),
            start.elapsed().as_nanos() as f64 / n as f64
        );
    }
}
