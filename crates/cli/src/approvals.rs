//! `drawbridge approvals …` and `drawbridge operator new`: operator commands that talk to a
//! running gateway's HTTP API.

use std::process::ExitCode;

use anyhow::Context as _;
use approvals::client::Client;
use approvals::{Grant, NewGrant, Request};

#[derive(clap::Args)]
pub struct ApprovalsArgs {
    /// Base URL of the gateway's HTTP API.
    #[arg(long, env = "DRAWBRIDGE_URL", global = true)]
    pub url: Option<String>,
    /// Operator bearer token (from `drawbridge operator new`).
    #[arg(
        long,
        env = "DRAWBRIDGE_OPERATOR_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: ApprovalsCommand,
}

#[derive(clap::Subcommand)]
pub enum ApprovalsCommand {
    /// List approval requests.
    List {
        /// pending, approved, denied, expired, consumed or all.
        #[arg(long, default_value = "pending")]
        state: String,
    },
    /// Show one request in full.
    Show { id: String },
    /// Approve a request.
    Approve { id: String },
    /// Deny a request; a reason is required.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Exempt an agent from named rules on a target for a while.
    Grant {
        agent: String,
        #[arg(long)]
        target: String,
        /// Rule names (repeat or separate with commas).
        #[arg(long = "rule", value_delimiter = ',', required = true)]
        rules: Vec<String>,
        #[arg(long)]
        minutes: u32,
        #[arg(long)]
        reason: String,
    },
    /// List grants (active ones unless --all).
    Grants {
        #[arg(long)]
        all: bool,
    },
    /// End a grant early.
    Revoke { id: String },
}

/// Runs a command with `--url`/`DRAWBRIDGE_URL` and `--token`/`DRAWBRIDGE_OPERATOR_TOKEN`.
pub fn run_args(args: ApprovalsArgs) -> anyhow::Result<ExitCode> {
    let url = args
        .url
        .context("give the gateway's HTTP address with --url or DRAWBRIDGE_URL")?;
    let token = args
        .token
        .context("give an operator token with --token or DRAWBRIDGE_OPERATOR_TOKEN")?;
    run(args.command, &url, &token)
}

pub fn run(cmd: ApprovalsCommand, url: &str, token: &str) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(execute(cmd, url, token))
}

async fn execute(cmd: ApprovalsCommand, url: &str, token: &str) -> anyhow::Result<ExitCode> {
    let client = Client::new(url, token)?;
    match cmd {
        ApprovalsCommand::List { state } => {
            let state = (state != "all").then_some(state.as_str());
            let requests = client.list(state).await?;
            if requests.is_empty() {
                println!("no requests");
            }
            for r in &requests {
                println!("{}", summary(r));
            }
        }
        ApprovalsCommand::Show { id } => {
            println!("{}", serde_json::to_string_pretty(&client.get(&id).await?)?);
        }
        ApprovalsCommand::Approve { id } => {
            let r = client.approve(&id).await?;
            if r.state == approvals::State::Approved {
                println!("{} approved", r.id);
            } else {
                println!(
                    "{}: approval recorded ({} of {} needed)",
                    r.id,
                    r.approvals.len(),
                    r.min_approvals
                );
            }
        }
        ApprovalsCommand::Deny { id, reason } => {
            let r = client.deny(&id, &reason).await?;
            println!("{} denied", r.id);
        }
        ApprovalsCommand::Grant {
            agent,
            target,
            rules,
            minutes,
            reason,
        } => {
            let g = client
                .grant(&NewGrant {
                    agent,
                    target,
                    rules,
                    minutes,
                    reason,
                })
                .await?;
            println!("{}", grant_line(&g));
        }
        ApprovalsCommand::Grants { all } => {
            let grants = client.grants(all).await?;
            if grants.is_empty() {
                println!("no grants");
            }
            for g in &grants {
                println!("{}", grant_line(g));
            }
        }
        ApprovalsCommand::Revoke { id } => {
            let g = client.revoke_grant(&id).await?;
            println!("{} revoked", g.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(r: &Request) -> String {
    let mut text: String = r.statement.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 60 {
        text = text.chars().take(59).collect::<String>() + "…";
    }
    format!(
        "{}  {:<8}  {}@{}  rule={}  {}/{}  expires={}  {}",
        r.id,
        r.state.as_str(),
        r.agent,
        r.target,
        r.rule,
        r.approvals.len(),
        r.min_approvals,
        r.expires_at.format("%Y-%m-%dT%H:%M:%SZ"),
        text
    )
}

fn grant_line(g: &Grant) -> String {
    let status = if g.revoked.is_some() {
        " (revoked)"
    } else {
        ""
    };
    format!(
        "{}  {}@{}  rules={}  until={}  by={}{}  reason: {}",
        g.id,
        g.agent,
        g.target,
        g.rules.join(","),
        g.until.format("%Y-%m-%dT%H:%M:%SZ"),
        g.created_by,
        status,
        g.reason
    )
}

/// Prints a fresh operator token (shown once) and the config snippet holding only its hash.
pub fn operator_new(name: &str) {
    let (token, hash) = approvals::generate_token();
    println!("token: {token}");
    println!();
    println!("[operators.{name}]");
    println!("token_sha256 = \"{hash}\"");
}
