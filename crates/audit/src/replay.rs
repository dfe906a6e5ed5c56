//! A session as a readable timeline.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::event::{Event, StatementOutcome};
use crate::record::Record;

const INDENT: &str = "                              ";

/// Renders a session's records (oldest first): connect, each statement with its decision,
/// what came of it and the rows the agent saw, disconnect. An outcome recorded later in a
/// batch is shown under its statement.
pub fn timeline(records: &[Record]) -> String {
    let events: Vec<Option<Event>> = records.iter().map(|r| serde_json::from_str(&r.event).ok()).collect();
    // Batched outcomes by statement number, rendered for showing under their statement; the
    // batch's time is not the statement's, so they carry none.
    let mut later: HashMap<u64, String> = HashMap::new();
    for (r, e) in records.iter().zip(&events) {
        if let Some(Event::Outcomes { outcomes, .. }) = e {
            let untimed = " ".repeat(r.at.chars().count());
            for o in outcomes {
                later.insert(o.statement, outcome(&untimed, o, None));
            }
        }
    }
    let mut out = String::new();
    for (r, event) in records.iter().zip(events) {
        let at = &r.at;
        let Some(event) = event else {
            let _ = writeln!(out, "{at}  [{} {}#{}] {}", r.kind, r.stream, r.seq, r.event);
            continue;
        };
        let _ = match event {
            Event::SessionOpened {
                session,
                agent,
                groups,
                target,
                client,
                tls,
            } => writeln!(
                out,
                "{at}  connect     session {session}: agent {agent} (groups: {}) to target {target} from {client}{}",
                if groups.is_empty() { "none".to_owned() } else { groups.join(", ") },
                if tls { " over TLS" } else { " without TLS" }
            ),
            Event::SessionClosed {
                duration_ms,
                bytes_from_client,
                bytes_to_client,
                statements,
                refused,
                reason,
                ..
            } => writeln!(
                out,
                "{at}  disconnect  after {:.3} s: {statements} statements ({refused} refused), {bytes_from_client} bytes in, {bytes_to_client} bytes out; {reason}",
                duration_ms as f64 / 1000.0
            ),
            Event::AuthFailed { agent, client, target } => {
                writeln!(out, "{at}  auth failed agent {agent} to target {target} from {client}")
            }
            Event::Statement {
                statement,
                protocol,
                text,
                params,
                effect,
                rules,
                reason,
                max_rows,
                ..
            } => {
                let _ = writeln!(out, "{at}  #{statement:<10} [{protocol}] {}", indent_rest(&text));
                if let Some(params) = params {
                    let shown: Vec<String> = params
                        .iter()
                        .enumerate()
                        .map(|(i, p)| format!("${}={}", i + 1, p.as_deref().unwrap_or("NULL")))
                        .collect();
                    let _ = writeln!(out, "{INDENT}params: {}", shown.join(", "));
                }
                let rules = if rules.is_empty() { "-".to_owned() } else { rules.join(", ") };
                let _ = write!(out, "{INDENT}decision: {effect} by {rules}");
                if !reason.is_empty() {
                    let _ = write!(out, ": {reason}");
                }
                if let Some(n) = max_rows {
                    let _ = write!(out, " (at most {n} rows)");
                }
                let _ = writeln!(out);
                match later.remove(&statement) {
                    Some(lines) => out.write_str(&lines),
                    None => Ok(()),
                }
            }
            Event::Outcome { statement, tag, rows, duration_us, error, rows_seen, .. } => {
                let o = StatementOutcome { statement, tag, rows, duration_us, error };
                out.write_str(&outcome(at, &o, rows_seen.as_deref()))
            }
            Event::Outcomes { outcomes, .. } => {
                // Those whose statement is not in this timeline (shown under it otherwise),
                // at the time the batch was recorded.
                for o in outcomes.iter().filter(|o| later.remove(&o.statement).is_some()) {
                    let _ = out.write_str(&outcome(at, o, None));
                }
                Ok(())
            }
            Event::Masked { statement, columns, .. } => {
                let id = statement.map_or("-".to_owned(), |s| s.to_string());
                let shown: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{} ({} by {}, {} values)", c.name, c.how, c.rule, c.values))
                    .collect();
                writeln!(out, "{at}  #{id:<10} masked: {}", shown.join(", "))
            }
            Event::Approval { approval, .. } => {
                let what = approval.get("event").and_then(|v| v.as_str()).unwrap_or("approval");
                let id = approval.get("id").and_then(|v| v.as_str()).unwrap_or("");
                writeln!(out, "{at}  approval    {what} {id}")
            }
        };
    }
    out
}

fn outcome(at: &str, o: &StatementOutcome, rows_seen: Option<&[Vec<Option<String>>]>) -> String {
    let mut out = format!("{at}  #{:<10} result: {}", o.statement, o.tag.as_deref().unwrap_or("-"));
    if let Some(n) = o.rows {
        let _ = write!(out, ", {n} rows");
    }
    let _ = writeln!(out, " in {:.3} ms", o.duration_us as f64 / 1000.0);
    if let Some(e) = &o.error {
        let _ = writeln!(out, "{INDENT}error: {}", indent_rest(e));
    }
    if let Some(rows) = rows_seen {
        let _ = writeln!(out, "{INDENT}rows seen by the agent:");
        for row in rows {
            let cells: Vec<&str> = row.iter().map(|c| c.as_deref().unwrap_or("NULL")).collect();
            let _ = writeln!(out, "{INDENT}  | {} |", cells.join(" | "));
        }
    }
    out
}

/// Keeps multi-line text aligned under the timeline's text column.
fn indent_rest(text: &str) -> String {
    text.lines().collect::<Vec<_>>().join(&format!("\n{INDENT}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::StatementOutcome;
    use crate::record::GENESIS;

    fn record(seq: u64, at: &str, e: &Event) -> Record {
        Record {
            stream: "s".into(),
            seq,
            at: at.into(),
            prev_hash: GENESIS,
            hash: GENESIS,
            kind: e.kind().into(),
            session: e.session().map(Into::into),
            event: serde_json::to_string(e).unwrap(),
        }
    }

    fn statement(n: u64, text: &str) -> Event {
        Event::Statement {
            session: "x".into(),
            statement: n,
            protocol: "simple".into(),
            text: text.into(),
            params: None,
            facts: crate::Json::summary(&serde_json::json!({})),
            effect: "allow".into(),
            rules: vec!["r".into()],
            reason: String::new(),
            max_rows: None,
        }
    }

    fn done(statement: u64, tag: &str) -> StatementOutcome {
        StatementOutcome { statement, tag: Some(tag.into()), rows: Some(1), duration_us: 5, error: None }
    }

    #[test]
    fn batched_outcomes_show_under_their_statements() {
        let batch = Event::Outcomes { session: "x".into(), outcomes: vec![done(1, "SELECT 1"), done(2, "UPDATE 1"), done(9, "DELETE 1")] };
        let records = [
            record(1, "2026-01-01T00:00:01.000000Z", &statement(1, "SELECT a")),
            record(2, "2026-01-01T00:00:02.000000Z", &statement(2, "UPDATE b")),
            record(3, "2026-01-01T00:00:03.000000Z", &batch),
        ];
        let text = timeline(&records);
        let lines: Vec<&str> = text.lines().collect();
        let at = |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}:\n{text}"));
        assert!(at("SELECT a") < at("SELECT 1") && at("SELECT 1") < at("UPDATE b") && at("UPDATE b") < at("UPDATE 1"), "{text}");
        // Shown under its statement without the batch's time; one whose statement is not in
        // the timeline is shown where the batch was recorded, with its time.
        assert!(lines[at("SELECT 1")].starts_with("     ") && !text.contains("00:00:03.000000Z  #1 "), "{text}");
        assert!(lines[at("DELETE 1")].starts_with("2026-01-01T00:00:03.000000Z  #9"), "{text}");
        assert_eq!(text.matches("result:").count(), 3, "{text}");
    }
}
