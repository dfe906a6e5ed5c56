//! `deepone <shape> <n> <caller_stack_kib>`: analyse one generated deep statement.
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let n: usize = a[2].parse().unwrap();
    let sql = match a[1].as_str() {
        "sum" => format!("SELECT 1{}", "+1".repeat(n)),
        "not" => format!("SELECT {}true", "NOT ".repeat(n)),
        "sub" => format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n)),
        "pm" => format!("SELECT {}1", "-+".repeat(n)),
        "func" => format!("SELECT {}1{}", "f(".repeat(n), ")".repeat(n)),
        "array" => format!("SELECT ARRAY{}1{}", "[".repeat(n), "]".repeat(n)),
        _ => panic!(),
    };
    let kib: usize = a[3].parse().unwrap();
    let r = std::thread::Builder::new().stack_size(kib << 10).spawn(move || {
        drawbridge_sql::Analyzer::default().analyze(&sql).map(|x| x.statements.len())
    }).unwrap().join().unwrap();
    println!("{r:?}");
}
