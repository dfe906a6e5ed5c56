//! Drawbridge policy: YAML files of named rules, compiled once, evaluated per statement.
//!
//! A [`Policy`] is built from a file ([`Policy::load`], [`Policy::from_yaml`]) or a built-in
//! pack ([`Policy::pack`]). [`Policy::evaluate`] judges one statement's facts;
//! [`Policy::judge`] a whole message; [`Policy::masks`] says which result columns a
//! principal sees masked on a target. See `docs/policy.md` for the format.
#![forbid(unsafe_code)]

mod compile;
mod condition;
mod eval;
pub mod file;
mod glob;
mod masking;
pub mod packs;
pub mod testing;
mod window;

pub use file::Unresolved;
pub use masking::{ColumnMasking, Masks, DEFAULT_HASH_LENGTH, DEFAULT_KEEP};

use sql::{Analysis, Function, Statement};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Rule name of the decision when no rule allows an operation.
/// Why a statement under a row limit is refused when its command tag does not count every row
/// it changes.
pub const UNCOUNTABLE: &str = "the rows this statement changes cannot be counted exactly (data-modifying CTE or \
                               EXPLAIN ANALYZE), so its row limit cannot be enforced";

pub const DEFAULT_DENY: &str = "default-deny";

/// Default evaluation deadline of one CEL condition.
pub const DEFAULT_CONDITION_DEADLINE: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy (or test) file is malformed; the text names the file, line where known,
    /// and field.
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub agent: String,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Volatility {
    Immutable,
    Stable,
    Volatile,
    /// Not in the target's catalog: judged as volatile.
    Unknown,
}

/// What the target's catalog says about functions (`pg_proc.provolatile`).
pub trait FunctionCatalog: Send + Sync {
    fn volatility(&self, f: &Function) -> Volatility;
}

/// A catalog from a fixed table of names: `schema.name` entries first, then bare names
/// (for unqualified or `pg_catalog` calls). Anything else is [`Volatility::Unknown`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapCatalog(pub BTreeMap<String, Volatility>);

impl FunctionCatalog for MapCatalog {
    fn volatility(&self, f: &Function) -> Volatility {
        let qualified = f.schema.as_ref().map(|s| format!("{s}.{}", f.name));
        if let Some(v) = qualified.and_then(|q| self.0.get(&q)) {
            return *v;
        }
        match f.schema.as_deref() {
            None | Some("pg_catalog") => {
                self.0.get(&f.name).copied().unwrap_or(Volatility::Unknown)
            }
            Some(_) => Volatility::Unknown,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Effect {
    Allow,
    RequireApproval,
    Deny,
}

impl Effect {
    /// The name used in policy and test files.
    pub fn name(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::RequireApproval => "require_approval",
            Effect::Deny => "deny",
        }
    }
}

impl std::fmt::Display for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome for one statement, naming the rules that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub effect: Effect,
    /// Deny: every matching deny rule; approval: every matching approval rule; allow: the
    /// allow rules that covered an operation; [`DEFAULT_DENY`] when nothing allowed.
    pub rules: Vec<String>,
    /// For the agent; belongs to `rules[0]` when refused.
    pub reason: String,
    /// Smallest row limit among the allow rules that covered an operation.
    pub max_rows: Option<u64>,
    /// False when the outcome depended on the clock (time windows, CEL `now`).
    pub cacheable: bool,
    /// For `RequireApproval`: how the deciding rule asks for it.
    pub approval: Option<file::Approval>,
}

/// The outcome for a whole message (all its statements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The most severe effect of any statement.
    pub effect: Effect,
    /// Rules of the statements whose effect is `effect`, in order, without repeats.
    pub rules: Vec<String>,
    /// Reasons of the statements whose effect is `effect`, joined with "; ".
    pub reason: String,
    /// Smallest row limit of any statement.
    pub max_rows: Option<u64>,
    pub cacheable: bool,
    /// One decision per statement, in order.
    pub decisions: Vec<Decision>,
}

impl Verdict {
    /// Index of the first statement whose effect is the verdict's.
    pub fn deciding_statement(&self) -> Option<usize> {
        self.decisions.iter().position(|d| d.effect == self.effect)
    }
}

pub struct Context<'a> {
    pub principal: &'a Principal,
    pub target: &'a str,
    pub now: chrono::DateTime<chrono::Utc>,
    pub catalog: Option<&'a dyn FunctionCatalog>,
    /// Deny and approval rules an operator's time-boxed grant exempts this principal from.
    pub exempt: &'a [String],
}

/// A compiled policy.
pub struct Policy {
    name: String,
    rules: Vec<compile::CompiledRule>,
    masks: Vec<std::sync::Arc<masking::MaskRule>>,
    version: String,
    condition_deadline: Duration,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("rules", &self.rule_names())
            .field("masks", &self.mask_rule_names())
            .finish()
    }
}

impl Policy {
    /// Reads and compiles a policy file.
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        Policy::from_yaml(&text, &path.display().to_string())
    }

    /// Compiles policy text; `name` (usually the file path) prefixes every error.
    pub fn from_yaml(text: &str, name: &str) -> Result<Policy, Error> {
        let doc: file::PolicyFile =
            serde_norway::from_str(text).map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
        Policy::from_document(doc, name, Some(text))
    }

    /// Compiles an already parsed document.
    pub fn from_document(
        doc: file::PolicyFile,
        name: &str,
        text: Option<&str>,
    ) -> Result<Policy, Error> {
        let compiled = compile::compile(doc, name, text)?;
        Ok(Policy {
            name: name.to_string(),
            rules: compiled.rules,
            masks: compiled.masks,
            version: compiled.version,
            condition_deadline: DEFAULT_CONDITION_DEADLINE,
        })
    }

    /// A policy of one built-in pack, as if a file included just it.
    pub fn pack(pack: &str, params: &BTreeMap<String, serde_json::Value>) -> Result<Policy, Error> {
        let doc = file::PolicyFile {
            version: 1,
            include: vec![file::Include {
                pack: pack.to_string(),
                with: params.clone(),
            }],
            windows: BTreeMap::new(),
            rules: Vec::new(),
        };
        Policy::from_document(doc, &format!("pack {pack}"), None)
    }

    /// Changes the time one CEL condition may take before it counts as failed.
    pub fn with_condition_deadline(mut self, deadline: Duration) -> Policy {
        self.condition_deadline = deadline;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A stable hash of the compiled content (rules after pack expansion, windows):
    /// equal policies have equal versions whatever file they came from.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Names of the allow, deny and approval rules, in evaluation order.
    pub fn rule_names(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.name.as_str()).collect()
    }

    /// Names of the mask rules, in file order.
    pub fn mask_rule_names(&self) -> Vec<&str> {
        self.masks.iter().map(|r| r.name()).collect()
    }

    /// The mask rules whose match holds for this principal and target.
    pub fn masks(&self, principal: &Principal, target: &str) -> Masks {
        Masks::select(&self.masks, principal, target)
    }

    pub fn evaluate(&self, stmt: &Statement, ctx: &Context<'_>) -> Decision {
        eval::Evaluation::new(stmt, ctx, self.condition_deadline).run(&self.rules)
    }

    /// Judges every statement of a message: the most severe effect wins.
    pub fn judge(&self, analysis: &Analysis, ctx: &Context<'_>) -> Verdict {
        let decisions: Vec<Decision> = analysis
            .statements
            .iter()
            .map(|s| self.evaluate(s, ctx))
            .collect();
        let effect = decisions
            .iter()
            .map(|d| d.effect)
            .max()
            .unwrap_or(Effect::Allow);
        let mut rules: Vec<String> = Vec::new();
        let mut reasons: Vec<&str> = Vec::new();
        for d in decisions.iter().filter(|d| d.effect == effect) {
            for r in &d.rules {
                if !rules.contains(r) {
                    rules.push(r.clone());
                }
            }
            if !reasons.contains(&d.reason.as_str()) {
                reasons.push(&d.reason);
            }
        }
        Verdict {
            effect,
            rules,
            reason: if reasons.is_empty() {
                "nothing to judge".into()
            } else {
                reasons.join("; ")
            },
            max_rows: decisions.iter().filter_map(|d| d.max_rows).min(),
            cacheable: decisions.iter().all(|d| d.cacheable),
            decisions,
        }
    }
}

/// The JSON Schema of policy files, as published in `schema/policy.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(file::PolicyFile);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod mask_tests;
#[cfg(test)]
mod tests;
