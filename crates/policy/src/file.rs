//! The policy file format: serde types shared by the loader, the packs and the JSON Schema.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
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
    // Masks result columns; never part of allow/deny/approval decisions.
    Mask,
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
    /// `mask` rules only (and required there): which columns are masked, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<Mask>,
}

/// What a `mask` rule masks and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mask {
    /// Globs (`*`, `?`) on `schema.table.column`. A pattern with fewer dot-separated parts
    /// matches the trailing parts: `ssn` is any column named ssn, `users.phone` the column
    /// phone of a table users in any schema.
    #[schemars(length(min = 1))]
    pub columns: Vec<String>,
    /// Semantic type of the values: picks the detectors for `scan` and the default strategy.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub semantic_type: Option<SemanticType>,
    /// Default: `partial` for card, phone, ssn and iban; `redact` otherwise. A bare YAML
    /// `null` means the `null` strategy.
    #[serde(
        default,
        deserialize_with = "strategy_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub strategy: Option<MaskStrategy>,
    /// `partial` only: trailing characters left visible (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    /// `redact` only: the replacement text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// `hash` only: hex characters of the keyed hash kept, 1 to 64 (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub hash_length: Option<u32>,
    /// true: replace only the substrings the detectors find (the type's, or all of them
    /// without a type); false: replace the whole value.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scan: bool,
    /// What to do with an output column derived from a masked column when the gateway
    /// cannot tell how; the strictest of the applicable rules wins.
    #[serde(default, skip_serializing_if = "Unresolved::is_mask")]
    pub unresolved: Unresolved,
}

/// YAML reads a bare `strategy: null` as null, not as the string: both mean the `null`
/// strategy. An absent field never reaches here.
fn strategy_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MaskStrategy>, D::Error> {
    Ok(Some(
        Option::<MaskStrategy>::deserialize(d)?.unwrap_or(MaskStrategy::Null),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaskStrategy {
    /// A fixed placeholder.
    Redact,
    /// All but the last `keep` characters become `*`.
    Partial,
    /// A keyed hash: equal values stay equal, originals cannot be recovered.
    Hash,
    /// SQL NULL.
    Null,
}

/// What happens to an output column whose origin in a masked column cannot be traced.
/// Ordered from lenient to strict.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Unresolved {
    /// Mask the whole value.
    #[default]
    Mask,
    /// Refuse the statement.
    Refuse,
}

impl Unresolved {
    fn is_mask(&self) -> bool {
        *self == Unresolved::Mask
    }
}

/// A semantic type as policy files name it (`email`, `phone`, `card`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SemanticType(pub mask::SemanticType);

impl Serialize for SemanticType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name())
    }
}

impl<'de> Deserialize<'de> for SemanticType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = Cow::<'de, str>::deserialize(d)?;
        // Exact names only, like every other enum of the format.
        mask::SemanticType::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .map(SemanticType)
            .ok_or_else(|| {
                let known: Vec<&str> = mask::SemanticType::ALL.iter().map(|t| t.name()).collect();
                serde::de::Error::custom(format!(
                    "unknown semantic type `{name}`, expected one of {}",
                    known.join(", ")
                ))
            })
    }
}

impl JsonSchema for SemanticType {
    fn schema_name() -> Cow<'static, str> {
        "SemanticType".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = mask::SemanticType::ALL.iter().map(|t| t.name()).collect();
        schemars::json_schema!({
            "description": "A kind of sensitive value the masking detectors recognise.",
            "type": "string",
            "enum": names,
        })
    }
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

/// Conditions of a rule; every field given must hold. `mask` rules may use only
/// `agents`, `groups` and `targets`.
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
