//! `drawbridge check`: the facts and the decision for SQL, without running it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub struct CheckArgs {
    #[arg(long, short)]
    config: PathBuf,
    #[arg(long)]
    agent: String,
    #[arg(long)]
    target: String,
    /// Judge as if at this time (RFC 3339), for time windows.
    #[arg(long)]
    at: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    sql: String,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let config = gateway::Config::load(&args.config)?;
    let policy = gateway::server_policy(&config)?;
    let groups = config.agents.get(&args.agent).map(|a| a.groups.clone()).unwrap_or_default();
    if !config.agents.contains_key(&args.agent) {
        eprintln!("note: agent {:?} is not in the config; judging with no groups", args.agent);
    }
    if !config.targets.contains_key(&args.target) {
        eprintln!("note: target {:?} is not in the config", args.target);
    }
    let now = match &args.at {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)?.with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let principal = policy::Principal { agent: args.agent.clone(), groups };
    let ctx = policy::Context { principal: &principal, target: &args.target, now, catalog: None, exempt: &[] };
    let analyzer = sql::Analyzer::new(sql::Limits { max_bytes: config.server.max_statement_bytes, ..Default::default() });
    let analysis = match analyzer.analyze(&args.sql) {
        Ok(a) => a,
        Err(e) => {
            println!("refused: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let verdict = policy.judge(&analysis, &ctx);
    if args.json {
        let statements: Vec<_> = analysis
            .statements
            .iter()
            .zip(&verdict.decisions)
            .map(|(s, d)| {
                serde_json::json!({
                    "sql": args.sql.get(s.start..s.end).unwrap_or(""),
                    "facts": s,
                    "decision": { "effect": d.effect.name(), "rules": d.rules, "reason": d.reason, "max_rows": d.max_rows },
                })
            })
            .collect();
        let out = serde_json::json!({ "effect": verdict.effect.name(), "rules": verdict.rules, "statements": statements });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (s, d) in analysis.statements.iter().zip(&verdict.decisions) {
            println!("statement: {}", args.sql.get(s.start..s.end).unwrap_or("").trim());
            println!("  command:    {}", s.command);
            let ops: Vec<&str> = s.operations.iter().map(|o| o.name()).collect();
            println!("  operations: {}", ops.join(", "));
            let tables: Vec<String> = s
                .tables
                .iter()
                .map(|t| format!("{}{}{}", t.schema.as_deref().map(|s| format!("{s}.")).unwrap_or_default(), t.name, if t.write { " (write)" } else { "" }))
                .collect();
            if !tables.is_empty() {
                println!("  tables:     {}", tables.join(", "));
            }
            let funcs: Vec<String> = s.functions.iter().map(|f| f.name.clone()).collect();
            if !funcs.is_empty() {
                println!("  functions:  {}", funcs.join(", "));
            }
            let limit = d.max_rows.map(|n| format!(" (at most {n} rows)")).unwrap_or_default();
            println!("  decision:   {} by {}{limit}: {}", d.effect, d.rules.join(", "), d.reason);
        }
        println!("verdict: {}", verdict.effect);
    }
    Ok(if verdict.effect == policy::Effect::Allow { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
