//! The policy file format: serde types shared by the loader, the packs and the JSON Schema.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A policy file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Drawbridge policy file")]
pub struct PolicyFile {
    /// Format version; only 1 exists.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// Built-in packs to include, in order, before this file's rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<Include>,
    /// Named time windows for `during` / `outside`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub windows: BTreeMap<String, Window>,
    /// Rules, each with a unique name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// One built-in pack and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Include {
    /// Pack name: `production` or `read-only`.
    pub pack: String,
    /// Pack parameters, e.g. `max_rows: 500`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub with: BTreeMap<String, serde_json::Value>,
}

/// A weekly time window in a time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// IANA time zone name; UTC when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Days on which the window opens; every day when omitted. A window that wraps
    /// midnight belongs to the day it opens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<Day>>,
    /// Opening time, `HH:MM`, inclusive.
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub from: String,
    /// Closing time, `HH:MM` (or `24:00`), exclusive; earlier than `from` wraps midnight.
    #[schemars(regex(pattern = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"))]
    pub to: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleEffect {
    Allow,
    Deny,
    RequireApproval,
}

/// A named rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique across the file and its packs.
    #[schemars(regex(pattern = r"^[a-z0-9._-]+$"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub effect: RuleEffect,
    /// Shown to the agent when this rule refuses or holds a statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Allow rules only: the most rows a statement allowed by this rule may affect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<u64>,
    /// Conditions that must all hold. Omitted: the rule applies to every statement.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<Match>,
    /// Alternative to `match`: the rule applies when any one of these blocks holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_any: Option<Vec<Match>>,
    /// `require_approval` rules only: how the approval is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}

/// How a `require_approval` rule asks for a human's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// `hold`: the statement waits until decided. `retry`: refused at once with the approval
    /// id; once approved, the same statement from the same agent runs.
    #[serde(default)]
    pub mode: ApprovalMode,
    /// Distinct operators who must approve.
    #[serde(default = "one")]
    pub min_approvals: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    #[default]
    Hold,
    Retry,
}

/// Conditions of a rule; every field given must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Agent name globs (`*`, `?`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<String>>,
    /// Group name globs; holds when any of the agent's groups matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Target name globs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    /// Operation names or categories: `ddl`, `privileges`, `write`, `read`, `any`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<String>>,
    /// Globs on `schema.name`; an unqualified table is `public.<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    /// Globs on a called function's `name` or `schema.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<Vec<String>>,
    /// Holds when a called function outside `except` is volatile or unknown to the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volatile_functions: Option<VolatileFunctions>,
    /// Name of a window: holds only inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub during: Option<String>,
    /// Name of a window: holds only outside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside: Option<String>,
    /// A CEL expression over `statement`, `principal`, `target` and `now`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolatileFunctions {
    /// Globs of functions known to be harmless although volatile. An unqualified
    /// pattern matches only unqualified or `pg_catalog` functions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}
