//! Reading the store: verify, tail, search, replay, export. Used by `drawbridge audit`.
//!
//! These run the store's client on the calling thread; from async code, call them inside
//! `spawn_blocking`.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::record::Record;
use crate::store::{self, Order, Query, Store};
use crate::verify::{self, Report, VerifyOptions};

/// What `search` keeps. Times are RFC 3339, a date, or an age such as `15m`, `2h`, `7d`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub agent: Option<String>,
    pub target: Option<String>,
    /// `allow`, `deny` or `require_approval`: only statements with that effect.
    pub decision: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub session: Option<String>,
}

/// A read-side handle on the configured store.
pub struct Reader {
    store: Box<dyn Store>,
    cfg: Config,
    base_dir: std::path::PathBuf,
}

impl Reader {
    pub fn open(cfg: &Config, base_dir: &Path) -> Result<Reader> {
        cfg.check()?;
        Ok(Reader {
            store: store::open(cfg, base_dir)?,
            cfg: cfg.clone(),
            base_dir: base_dir.to_path_buf(),
        })
    }

    /// Over any store, e.g. one opened directly in a test.
    pub fn with_store(store: Box<dyn Store>, cfg: &Config, base_dir: &Path) -> Reader {
        Reader {
            store,
            cfg: cfg.clone(),
            base_dir: base_dir.to_path_buf(),
        }
    }

    pub fn store(&mut self) -> &mut dyn Store {
        self.store.as_mut()
    }

    /// Trusts this gateway's key (its `.pub` file) and `trusted_keys`; reads `checkpoint_file`.
    pub fn verify(&mut self) -> Result<Report> {
        let mut trusted = Vec::new();
        if let Some(k) = crate::keys::load_public(&self.cfg.resolve(&self.base_dir, &self.cfg.key_file))? {
            trusted.push(k);
        }
        for k in &self.cfg.trusted_keys {
            trusted.push(crate::keys::parse_public(k)?);
        }
        let opts = VerifyOptions {
            trusted_keys: trusted,
            checkpoint_file: self.cfg.checkpoint_file.as_ref().map(|p| self.cfg.resolve(&self.base_dir, p)),
        };
        verify::verify_store(self.store.as_mut(), &opts)
    }

    /// The newest `n` records across all streams, oldest first.
    pub fn tail(&mut self, n: u64) -> Result<Vec<Record>> {
        let mut all = Vec::new();
        for stream in self.store.streams()? {
            let q = Query {
                stream: Some(stream),
                order: Order::ChainDesc,
                limit: Some(n),
                ..Default::default()
            };
            self.store.scan(&q, &mut |r| {
                all.push(r);
                Ok(true)
            })?;
        }
        all.sort_by(|a, b| (&a.at, &a.stream, a.seq).cmp(&(&b.at, &b.stream, b.seq)));
        let skip = all.len().saturating_sub(n as usize);
        Ok(all.split_off(skip))
    }

    /// Records newer than `cursor` (stream → last seq seen), advancing it; for `tail --follow`.
    pub fn poll(&mut self, cursor: &mut HashMap<String, u64>) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        for stream in self.store.streams()? {
            let q = Query {
                after_seq: cursor.get(&stream).copied(),
                stream: Some(stream.clone()),
                order: Order::Chain,
                ..Default::default()
            };
            self.store.scan(&q, &mut |r| {
                out.push(r);
                Ok(true)
            })?;
            if let Some(last) = out.iter().rev().find(|r| r.stream == stream) {
                cursor.insert(stream, last.seq);
            }
        }
        out.sort_by(|a, b| (&a.at, &a.stream, a.seq).cmp(&(&b.at, &b.stream, b.seq)));
        Ok(out)
    }

    /// Records matching `filter`, oldest first.
    pub fn search(&mut self, filter: &Filter, f: &mut dyn FnMut(&Record) -> Result<()>) -> Result<()> {
        let since = filter.since.as_deref().map(parse_time).transpose()?;
        let until = filter.until.as_deref().map(parse_time).transpose()?;
        // Statements name their session only; the agent and target come from its opening.
        let sessions: Option<HashSet<(String, String)>> = if filter.agent.is_some() || filter.target.is_some() {
            let mut set = HashSet::new();
            let q = Query {
                kind: Some("session_opened".into()),
                session: filter.session.clone(),
                ..Default::default()
            };
            self.store.scan(&q, &mut |r| {
                if let (Ok(ev), Some(s)) = (serde_json::from_str::<Value>(&r.event), &r.session) {
                    if principal_matches(&ev, filter) {
                        set.insert((r.stream.clone(), s.clone()));
                    }
                }
                Ok(true)
            })?;
            Some(set)
        } else {
            None
        };
        let q = Query {
            session: filter.session.clone(),
            kind: filter.decision.as_ref().map(|_| "statement".to_owned()),
            since,
            until,
            order: Order::Time,
            ..Default::default()
        };
        self.store.scan(&q, &mut |r| {
            let ev: Value = serde_json::from_str(&r.event).unwrap_or(Value::Null);
            if let Some(d) = &filter.decision {
                if ev.get("effect").and_then(Value::as_str) != Some(d.as_str()) {
                    return Ok(true);
                }
            }
            if let Some(set) = &sessions {
                let keep = match &r.session {
                    Some(s) => set.contains(&(r.stream.clone(), s.clone())),
                    // Events without a session (failed logins) name the agent themselves.
                    None => principal_matches(&ev, filter),
                };
                if !keep {
                    return Ok(true);
                }
            }
            f(&r)?;
            Ok(true)
        })
    }

    /// Every record of one session (in any stream), oldest first.
    pub fn session(&mut self, session: &str) -> Result<Vec<Record>> {
        let q = Query {
            session: Some(session.to_owned()),
            order: Order::Time,
            ..Default::default()
        };
        let mut out = Vec::new();
        self.store.scan(&q, &mut |r| {
            out.push(r);
            Ok(true)
        })?;
        Ok(out)
    }

    /// All records as JSON lines in chain order; returns how many.
    pub fn export_jsonl(&mut self, out: &mut dyn Write) -> Result<u64> {
        let mut n = 0;
        self.store.scan(&Query::default(), &mut |r| {
            writeln!(out, "{}", r.to_json_line()).map_err(|e| Error::io("writing export", "<output>", e))?;
            n += 1;
            Ok(true)
        })?;
        Ok(n)
    }
}

fn principal_matches(ev: &Value, filter: &Filter) -> bool {
    let field = |name: &str| ev.get(name).and_then(Value::as_str);
    filter.agent.as_deref().is_none_or(|a| field("agent") == Some(a))
        && filter.target.as_deref().is_none_or(|t| field("target") == Some(t))
}

/// A user-given time as the stored format: RFC 3339, `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS`
/// (UTC), or an age before now such as `90s`, `15m`, `2h`, `7d`.
pub fn parse_time(text: &str) -> Result<String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
    let text = text.trim();
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(fmt(t.with_timezone(&Utc)));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S") {
        return Ok(fmt(t.and_utc()));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(fmt(t.and_utc()));
        }
    }
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let secs: Option<i64> = num.parse::<i64>().ok().and_then(|n| match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    });
    match secs.and_then(chrono::TimeDelta::try_seconds) {
        Some(d) => Ok(fmt(Utc::now() - d)),
        None => Err(Error::Config(format!(
            "time {text:?}: use RFC 3339, YYYY-MM-DD, or an age like 15m, 2h, 7d"
        ))),
    }
}

/// One line per record for `tail` and `search`.
pub fn summarize(r: &Record) -> String {
    let ev: Value = serde_json::from_str(&r.event).unwrap_or(Value::Null);
    let s = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let n = |k: &str| ev.get(k).and_then(Value::as_u64);
    let detail = match r.kind.as_str() {
        "session_opened" => format!("agent={} target={} client={}", s("agent"), s("target"), s("client")),
        "session_closed" => format!("statements={} refused={} reason={}", n("statements").unwrap_or(0), n("refused").unwrap_or(0), s("reason")),
        "auth_failed" => format!("agent={} target={} client={}", s("agent"), s("target"), s("client")),
        "statement" => format!("#{} {} {}", n("statement").unwrap_or(0), s("effect"), one_line(&s("text"), 100)),
        "outcome" => format!(
            "#{} {}{}",
            n("statement").unwrap_or(0),
            s("tag"),
            ev.get("error").and_then(Value::as_str).map(|e| format!(" error: {}", one_line(e, 80))).unwrap_or_default()
        ),
        _ => one_line(&r.event, 120),
    };
    format!(
        "{} {}#{} {:<14} {} {}",
        r.at,
        r.stream,
        r.seq,
        r.kind,
        r.session.as_deref().unwrap_or("-"),
        detail
    )
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}
