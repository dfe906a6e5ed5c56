//! `drawbridge audit`: verify, tail, search, replay and export the audit records.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};

const FOLLOW_POLL: Duration = Duration::from_secs(1);

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute every hash and link, check checkpoint signatures and the tail; exits non-zero
    /// on any problem, naming the stream and record.
    Verify,
    /// Print the newest records.
    Tail {
        /// How many records.
        #[arg(short = 'n', long = "lines", default_value_t = 20)]
        lines: u64,
        /// Keep printing new records as they arrive.
        #[arg(long, short)]
        follow: bool,
    },
    /// Records matching every given filter, oldest first.
    Search {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        target: Option<String>,
        /// Only statements with this decision.
        #[arg(long, value_enum)]
        decision: Option<Decision>,
        /// RFC 3339, YYYY-MM-DD, or an age such as 15m, 2h, 7d.
        #[arg(long)]
        since: Option<String>,
        /// Same forms as --since; exclusive.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        session: Option<String>,
        /// Print full records as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Show one session as a timeline: connect, statements with decisions and results, disconnect.
    Replay { session: String },
    /// Write every record to stdout.
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Decision {
    Allow,
    Deny,
    RequireApproval,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::RequireApproval => "require_approval",
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One JSON record per line: stream, seq, at, prev_hash, hash, event.
    Jsonl,
}

/// Reads the `[audit]` table of `config` (relative paths resolve against its directory).
pub fn run(cmd: AuditCommand, config: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let cfg = ::audit::Config::from_toml(&text).with_context(|| format!("in {}", config.display()))?;
    let base = config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut reader = ::audit::Reader::open(&cfg, base).context("opening the audit store")?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cmd {
        AuditCommand::Verify => {
            let report = reader.verify()?;
            writeln!(out, "{report}")?;
            Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        AuditCommand::Tail { lines, follow } => {
            let mut cursor: HashMap<String, u64> = HashMap::new();
            for r in reader.tail(lines)? {
                writeln!(out, "{}", ::audit::tools::summarize(&r))?;
            }
            if !follow {
                return Ok(ExitCode::SUCCESS);
            }
            // Start following from the current end of every stream.
            reader.poll(&mut cursor)?;
            loop {
                out.flush()?;
                std::thread::sleep(FOLLOW_POLL);
                for r in reader.poll(&mut cursor)? {
                    writeln!(out, "{}", ::audit::tools::summarize(&r))?;
                }
            }
        }
        AuditCommand::Search {
            agent,
            target,
            decision,
            since,
            until,
            session,
            json,
        } => {
            let filter = ::audit::Filter {
                agent,
                target,
                decision: decision.map(|d| d.as_str().to_owned()),
                since,
                until,
                session,
            };
            let mut found = 0u64;
            reader.search(&filter, &mut |r| {
                found += 1;
                let line = if json { r.to_json_line() } else { ::audit::tools::summarize(r) };
                writeln!(out, "{line}").map_err(|e| ::audit::Error::Store(format!("writing output: {e}")))
            })?;
            eprintln!("{found} records");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Replay { session } => {
            let records = reader.session(&session)?;
            if records.is_empty() {
                eprintln!("no records for session {session:?}");
                return Ok(ExitCode::FAILURE);
            }
            write!(out, "{}", ::audit::replay::timeline(&records))?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export { format: ExportFormat::Jsonl } => {
            let n = reader.export_jsonl(&mut out)?;
            eprintln!("{n} records exported");
            Ok(ExitCode::SUCCESS)
        }
    }
}
