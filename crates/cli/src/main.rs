//! `drawbridge`: the gateway binary and its tools.
#![forbid(unsafe_code)]

mod approvals;
mod audit;
mod check;
mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "drawbridge", version, about = "A guardrail gateway between AI agents and PostgreSQL")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Manage agent credentials.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Explain the decision on SQL without running it; exits non-zero unless allowed.
    Check(check::CheckArgs),
    /// Policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Start a throwaway PostgreSQL with the gateway in front of it.
    Demo(demo::DemoArgs),
    /// Decide on approval requests and grant time-boxed exemptions (talks to a running gateway).
    Approvals(approvals::ApprovalsArgs),
    /// Manage operator credentials (people who decide approvals).
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Audit records: verify, tail, search, replay, export.
    Audit {
        /// The gateway's drawbridge.toml (its [audit] table says where the records are).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Create a fresh secret and print the config snippet with its SCRAM verifier.
    New {
        name: String,
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Create a token; prints it once with the config snippet holding its hash.
    New { name: String },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run policy test files; exits non-zero when a case fails.
    Test { files: Vec<PathBuf> },
    /// Print the JSON Schema of policy files.
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::Agent { command: AgentCommand::New { name, groups } } => {
            agent_new(&name, &groups);
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => check::run(args),
        Command::Policy { command: PolicyCommand::Test { files } } => policy_test(&files),
        Command::Policy { command: PolicyCommand::Schema } => {
            println!("{}", policy::json_schema());
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => demo::run(args),
        Command::Audit { config, command } => match config {
            Some(config) => audit::run(command, &config),
            None => Err(anyhow::anyhow!("audit: give --config drawbridge.toml")),
        },
        Command::Approvals(args) => approvals::run_args(args),
        Command::Operator { command: OperatorCommand::New { name } } => {
            approvals::operator_new(&name);
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("drawbridge: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Tokio with worker stacks deep enough for the SQL parser's recursion.
/// `workers` 0 means one per core.
pub fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        b.worker_threads(workers);
    }
    Ok(b.enable_all().thread_stack_size(sql::MIN_CALLER_STACK).build()?)
}

pub fn init_logs(format: gateway::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRAWBRIDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        gateway::config::LogFormat::Json => builder.json().try_init(),
        gateway::config::LogFormat::Text => builder.try_init(),
    };
}

fn serve(path: PathBuf) -> anyhow::Result<ExitCode> {
    let config = gateway::Config::load(&path)?;
    init_logs(config.server.log_format);
    // Sessions run on the gateway's own threads (`server.workers`); this runtime accepts
    // connections and serves the HTTP endpoints.
    runtime(1)?.block_on(async move {
        let gw = gateway::Gateway::bind(config).await?;
        let shared = gw.shared.clone();
        watch_reload(shared.clone())?;
        tokio::select! {
            r = gw.run() => r?,
            r = stop_signal() => {
                r?;
                tracing::info!("stopping");
                shared.stop();
                // Held sessions get their answer before the process ends.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGHUP re-reads the policy; a broken file is reported and the old policy stays.
pub fn watch_reload(shared: std::sync::Arc<gateway::Shared>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match shared.reload_policy() {
                Ok(()) => tracing::info!(version = %shared.policy.load().version(), "policy reloaded"),
                Err(e) => tracing::error!(error = %e, "policy reload failed; the previous policy stays in force"),
            }
        }
    });
    Ok(())
}

/// SIGTERM or Ctrl-C.
pub async fn stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn agent_new(name: &str, groups: &[String]) {
    use base64::Engine as _;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
    let verifier = wire::auth::scram::Verifier::generate(&secret, wire::auth::scram::DEFAULT_ITERATIONS);
    let groups: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
    println!("secret: {secret}");
    println!();
    println!("[agents.{name}]");
    println!("verifier = \"{verifier}\"");
    println!("groups = [{}]", groups.join(", "));
}

fn policy_test(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    if files.is_empty() {
        anyhow::bail!("give one or more policy test files");
    }
    let analyzer = sql::Analyzer::new(sql::Limits::default());
    let report = policy::testing::run_files(files, &analyzer);
    print!("{report}");
    println!("{} passed, {} failed", report.passed_count(), report.failed_count());
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
