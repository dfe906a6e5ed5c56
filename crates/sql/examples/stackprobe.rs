//! Measures how much thread stack parsing needs per nesting level.
//! `stackprobe <shape> <levels> <stack_kib> <full|decode>` prints `ok`, `err: …`, or the
//! process dies of a stack overflow; `gen/stackprobe.py` bisects the stack size with it.
use prost::Message;

fn text(shape: &str, n: usize) -> String {
    match shape {
        "sum" => format!("SELECT 1{}", "+1".repeat(n)),
        "parens" => format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
        "subselect" => format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n)),
        "union" => format!("SELECT 1{}", " UNION SELECT 1".repeat(n)),
        "join" => format!("SELECT * FROM t{}", " JOIN t ON true".repeat(n)),
        "not" => format!("SELECT {}true", "NOT ".repeat(n)),
        "case" => format!("SELECT {}1{}", "CASE WHEN true THEN ".repeat(n), " END".repeat(n)),
        "cast" => format!("SELECT 1{}", "::int".repeat(n)),
        "array" => format!("SELECT ARRAY{}1{}", "[".repeat(n), "]".repeat(n)),
        "neg" => format!("SELECT {}1", "- ".repeat(n)),
        "plus" => format!("SELECT {}1", "+".repeat(n)),
        "row" => format!("SELECT {}1{}", "ROW(".repeat(n), ")".repeat(n)),
        "func" => format!("SELECT {}1{}", "f(".repeat(n), ")".repeat(n)),
        other => panic!("unknown shape {other}"),
    }
}

fn on_stack<T: Send + 'static>(kib: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(kib * 1024).spawn(f).unwrap().join().unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (shape, n, kib, mode) = (args[1].clone(), args[2].parse().unwrap(), args[3].parse().unwrap(), args[4].clone());
    let sql = text(&shape, n);
    let out = if mode == "full" {
        on_stack(kib, move || match pg_query::parse(&sql, 0) {
            Ok(r) => { drop(r); "ok".to_string() }
            Err(e) => format!("err: {e}"),
        })
    } else {
        let bytes = on_stack(1 << 20, move || pg_query::parse(&sql, 0).map(|r| r.protobuf.encode_to_vec()));
        match bytes {
            Err(e) => format!("err: {e}"),
            Ok(bytes) => on_stack(kib, move || {
                let r = pg_query::protobuf::ParseResult::decode(bytes.as_slice()).unwrap();
                drop(r);
                "ok".to_string()
            }),
        }
    };
    println!("{out}");
}
