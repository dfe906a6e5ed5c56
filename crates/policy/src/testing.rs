//! Policy test files: cases of SQL with the decision they must get, run through the real
//! analyser. `drawbridge policy test FILES` prints [`Report`] and fails when it has failures.
//!
//! A statement the analyser rejects is judged as a denial by rule [`ANALYSIS_ERROR`], as the
//! gateway refuses it.

use crate::{Context, Decision, Effect, Error, MapCatalog, Policy, Principal, Volatility};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Rule name given to SQL the analyser cannot read.
pub const ANALYSIS_ERROR: &str = "analysis-error";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Policy file, relative to the test file.
    #[serde(default)]
    pub policy: Option<String>,
    /// Or a built-in pack.
    #[serde(default)]
    pub pack: Option<String>,
    #[serde(default)]
    pub with: BTreeMap<String, serde_json::Value>,
    /// Function volatility the target's catalog would report; others are unknown.
    #[serde(default)]
    pub catalog: BTreeMap<String, CatalogEntry>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogEntry {
    Immutable,
    Stable,
    Volatile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    Allow,
    Deny,
    RequireApproval,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default = "default_agent")]
    pub agent: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default = "default_target")]
    pub target: String,
    pub sql: String,
    /// RFC 3339 time to judge at; the real clock when omitted.
    #[serde(default)]
    pub at: Option<String>,
    pub expect: Expect,
    /// A rule that must be among the decision's rules.
    #[serde(default)]
    pub rule: Option<String>,
    /// The row limit the decision must carry.
    #[serde(default)]
    pub max_rows: Option<u64>,
    /// How columns must be masked for this case's agent, groups and target.
    #[serde(default)]
    pub masks: Vec<MaskCase>,
}

/// One column's expected masking.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskCase {
    /// `schema.table.column`.
    pub column: String,
    /// The mask rule that must apply to the column.
    #[serde(default)]
    pub rule: Option<String>,
    /// false: the column must not be masked at all.
    #[serde(default = "masked_default")]
    pub masked: bool,
}

fn masked_default() -> bool {
    true
}

fn default_agent() -> String {
    "agent".into()
}

fn default_target() -> String {
    "default".into()
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseReport {
    pub name: String,
    pub sql: String,
    /// Empty when the case passed; otherwise what differed.
    pub failures: Vec<String>,
    pub decision: Decision,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    pub policy_version: String,
    pub cases: Vec<CaseReport>,
}

/// Results of every file given; [`Report::passed`] tells the exit status.
#[derive(Debug, Default)]
pub struct Report {
    pub files: Vec<FileReport>,
    /// Files that could not be run at all, with why.
    pub errors: Vec<(PathBuf, String)>,
}

impl Report {
    pub fn passed_count(&self) -> usize {
        self.files
            .iter()
            .flat_map(|f| &f.cases)
            .filter(|c| c.passed())
            .count()
    }

    pub fn failed_count(&self) -> usize {
        self.files
            .iter()
            .flat_map(|f| &f.cases)
            .filter(|c| !c.passed())
            .count()
    }

    pub fn passed(&self) -> bool {
        self.errors.is_empty() && self.failed_count() == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            writeln!(
                f,
                "{} (policy {})",
                file.path.display(),
                file.policy_version
            )?;
            for case in &file.cases {
                if case.passed() {
                    writeln!(f, "  ok   {}", case.name)?;
                } else {
                    writeln!(f, "  FAIL {}", case.name)?;
                    writeln!(f, "       sql: {}", case.sql.trim())?;
                    for line in &case.failures {
                        writeln!(f, "       {line}")?;
                    }
                }
            }
        }
        for (path, e) in &self.errors {
            writeln!(f, "{}: error: {e}", path.display())?;
        }
        write!(
            f,
            "{} passed, {} failed",
            self.passed_count(),
            self.failed_count()
        )?;
        if !self.errors.is_empty() {
            write!(f, ", {} file(s) could not be run", self.errors.len())?;
        }
        writeln!(f)
    }
}

/// Runs every file; a file that cannot be read or compiled is recorded in `errors`.
pub fn run_files(paths: &[PathBuf], analyzer: &sql::Analyzer) -> Report {
    let mut report = Report::default();
    for path in paths {
        match run_file(path, analyzer) {
            Ok(r) => report.files.push(r),
            Err(e) => report.errors.push((path.clone(), e.to_string())),
        }
    }
    report
}

pub fn run_file(path: &Path, analyzer: &sql::Analyzer) -> Result<FileReport, Error> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: name.clone(),
        source,
    })?;
    let file: TestFile =
        serde_norway::from_str(&text).map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
    let policy = match (&file.policy, &file.pack) {
        (Some(p), None) => {
            let base = path.parent().unwrap_or_else(|| Path::new("."));
            Policy::load(base.join(p))?
        }
        (None, Some(pack)) => Policy::pack(pack, &file.with)?,
        _ => {
            return Err(Error::Invalid(format!(
                "{name}: give exactly one of policy and pack"
            )))
        }
    };
    if file.policy.is_some() && !file.with.is_empty() {
        return Err(Error::Invalid(format!(
            "{name}: with: only applies to pack"
        )));
    }
    let catalog = MapCatalog(
        file.catalog
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    CatalogEntry::Immutable => Volatility::Immutable,
                    CatalogEntry::Stable => Volatility::Stable,
                    CatalogEntry::Volatile => Volatility::Volatile,
                };
                (k.clone(), v)
            })
            .collect(),
    );
    let cases = file
        .cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            run_case(&policy, &catalog, analyzer, c)
                .map_err(|e| Error::Invalid(format!("{name}: cases[{i}] ({}): {e}", c.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FileReport {
        path: path.to_path_buf(),
        policy_version: policy.version().to_string(),
        cases,
    })
}

fn run_case(
    policy: &Policy,
    catalog: &MapCatalog,
    analyzer: &sql::Analyzer,
    case: &Case,
) -> Result<CaseReport, String> {
    let now = match &case.at {
        None => chrono::Utc::now(),
        Some(at) => chrono::DateTime::parse_from_rfc3339(at)
            .map_err(|e| format!("at: `{at}` is not an RFC 3339 time: {e}"))?
            .with_timezone(&chrono::Utc),
    };
    let principal = Principal {
        agent: case.agent.clone(),
        groups: case.groups.clone(),
    };
    let ctx = Context {
        principal: &principal,
        target: &case.target,
        now,
        catalog: Some(catalog),
        exempt: &[],
    };
    let decision = match analyzer.analyze(&case.sql) {
        Ok(analysis) => {
            let v = policy.judge(&analysis, &ctx);
            Decision {
                effect: v.effect,
                rules: v.rules,
                reason: v.reason,
                max_rows: v.max_rows,
                cacheable: v.cacheable,
                approval: v.decisions.iter().find_map(|d| d.approval.clone()),
            }
        }
        Err(e) => Decision {
            effect: Effect::Deny,
            rules: vec![ANALYSIS_ERROR.into()],
            reason: e.to_string(),
            max_rows: None,
            cacheable: true,
            approval: None,
        },
    };
    let mut failures = Vec::new();
    let expected = match case.expect {
        Expect::Allow => Effect::Allow,
        Expect::Deny => Effect::Deny,
        Expect::RequireApproval => Effect::RequireApproval,
    };
    let got = format!(
        "got {} by [{}]: {}",
        decision.effect,
        decision.rules.join(", "),
        decision.reason
    );
    if decision.effect != expected {
        failures.push(format!("expected {expected}, {got}"));
    }
    if let Some(rule) = &case.rule {
        if !decision.rules.contains(rule) {
            failures.push(format!(
                "expected rule {rule} among the decision's rules, {got}"
            ));
        }
    }
    check_masks(policy, &principal, &case.target, &case.masks, &mut failures)?;
    if case.max_rows.is_some() && case.max_rows != decision.max_rows {
        let show = |m: Option<u64>| m.map_or("none".to_string(), |n| n.to_string());
        failures.push(format!(
            "expected max_rows {}, got {}",
            show(case.max_rows),
            show(decision.max_rows)
        ));
    }
    Ok(CaseReport {
        name: case.name.clone(),
        sql: case.sql.clone(),
        failures,
        decision,
    })
}

fn check_masks(
    policy: &Policy,
    principal: &Principal,
    target: &str,
    cases: &[MaskCase],
    failures: &mut Vec<String>,
) -> Result<(), String> {
    if cases.is_empty() {
        return Ok(());
    }
    let masks = policy.masks(principal, target);
    for (i, m) in cases.iter().enumerate() {
        let [schema, table, column] = m.column.split('.').collect::<Vec<_>>()[..] else {
            return Err(format!(
                "masks[{i}].column: `{}` is not schema.table.column",
                m.column
            ));
        };
        if !m.masked && m.rule.is_some() {
            return Err(format!("masks[{i}]: give rule or masked: false, not both"));
        }
        let got = masks.column(schema, table, column).map(|c| c.rule.as_str());
        let show =
            |r: Option<&str>| r.map_or("not masked".to_string(), |r| format!("masked by {r}"));
        let ok = match (m.masked, &m.rule, got) {
            (false, _, got) => got.is_none(),
            (true, Some(rule), got) => got == Some(rule.as_str()),
            (true, None, got) => got.is_some(),
        };
        if !ok {
            let want = match (&m.rule, m.masked) {
                (_, false) => "not masked".to_string(),
                (Some(r), true) => format!("masked by {r}"),
                (None, true) => "masked".to_string(),
            };
            failures.push(format!("expected {} {want}, got {}", m.column, show(got)));
        }
    }
    Ok(())
}
