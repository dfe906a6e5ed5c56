//! Mask rules: which columns a principal sees masked on a target, and how.

use crate::compile::Audience;
use crate::file::{Mask, MaskStrategy, Unresolved};
use crate::glob::Globs;
use crate::Principal;
use mask::{Detectors, SemanticType, Strategy};
use std::sync::Arc;

/// Characters a `partial` strategy leaves visible unless the rule says otherwise.
pub const DEFAULT_KEEP: u32 = 4;

/// Hex characters a `hash` strategy keeps unless the rule says otherwise.
pub const DEFAULT_HASH_LENGTH: u32 = 16;

/// How one sensitive column is masked, and the rule that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMasking {
    pub rule: String,
    pub strategy: Strategy,
    /// Replace only detected substrings.
    pub scan: bool,
    pub detectors: Detectors,
    pub unresolved: Unresolved,
}

/// A `[[schema.]table.]column` glob, split so that each part matches one identifier.
#[derive(Debug)]
struct ColumnPattern {
    schema: Option<Globs>,
    table: Option<Globs>,
    column: Globs,
}

impl ColumnPattern {
    fn parse(pattern: &str) -> Result<ColumnPattern, String> {
        let parts: Vec<&str> = pattern.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("`{pattern}` has an empty name part"));
        }
        let (schema, table, column) = match parts.as_slice() {
            [c] => (None, None, c),
            [t, c] => (None, Some(t), c),
            [s, t, c] => (Some(s), Some(t), c),
            _ => {
                return Err(format!(
                    "`{pattern}` has more than three dot-separated parts (schema.table.column)"
                ))
            }
        };
        Ok(ColumnPattern {
            schema: schema.map(|s| Globs::one(s)),
            table: table.map(|t| Globs::one(t)),
            column: Globs::one(column),
        })
    }

    fn matches(&self, schema: &str, table: &str, column: &str) -> bool {
        self.column.matches(column)
            && self.table.as_ref().is_none_or(|g| g.matches(table))
            && self.schema.as_ref().is_none_or(|g| g.matches(schema))
    }
}

/// One compiled mask rule.
#[derive(Debug)]
pub(crate) struct MaskRule {
    /// Holds when any one does; never empty.
    audiences: Vec<Audience>,
    columns: Vec<ColumnPattern>,
    masking: ColumnMasking,
}

impl MaskRule {
    pub(crate) fn compile(
        name: &str,
        audiences: Vec<Audience>,
        m: &Mask,
    ) -> Result<MaskRule, String> {
        if m.columns.is_empty() {
            return Err("mask.columns: empty list masks nothing".into());
        }
        let columns = m
            .columns
            .iter()
            .enumerate()
            .map(|(i, p)| ColumnPattern::parse(p).map_err(|e| format!("mask.columns[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let semantic = m.semantic_type.map(|t| t.0);
        Ok(MaskRule {
            audiences,
            columns,
            masking: ColumnMasking {
                rule: name.to_string(),
                strategy: strategy(m, semantic)?,
                scan: m.scan,
                detectors: semantic.map_or(Detectors::ALL, |t| Detectors::of(&[t])),
                unresolved: m.unresolved,
            },
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.masking.rule
    }

    fn applies(&self, principal: &Principal, target: &str) -> bool {
        self.audiences.iter().any(|a| a.holds(principal, target))
    }
}

fn strategy_name(s: MaskStrategy) -> &'static str {
    match s {
        MaskStrategy::Redact => "redact",
        MaskStrategy::Partial => "partial",
        MaskStrategy::Hash => "hash",
        MaskStrategy::Null => "null",
    }
}

/// The rule's strategy with its options, after checking that each option given belongs to it.
fn strategy(m: &Mask, semantic: Option<SemanticType>) -> Result<Strategy, String> {
    let default = match semantic {
        Some(SemanticType::Card | SemanticType::Phone | SemanticType::Ssn | SemanticType::Iban) => {
            MaskStrategy::Partial
        }
        _ => MaskStrategy::Redact,
    };
    let kind = m.strategy.unwrap_or(default);
    let options = [
        ("keep", m.keep.is_some(), MaskStrategy::Partial),
        ("placeholder", m.placeholder.is_some(), MaskStrategy::Redact),
        ("hash_length", m.hash_length.is_some(), MaskStrategy::Hash),
    ];
    for (field, given, owner) in options {
        if given && kind != owner {
            return Err(format!(
                "mask.{field}: only the {} strategy takes it (this rule's strategy is {})",
                strategy_name(owner),
                strategy_name(kind)
            ));
        }
    }
    Ok(match kind {
        MaskStrategy::Redact => {
            let placeholder = m
                .placeholder
                .as_deref()
                .unwrap_or(mask::DEFAULT_PLACEHOLDER);
            // PostgreSQL text cannot hold NUL.
            if placeholder.contains('\0') {
                return Err("mask.placeholder: must not contain a NUL character".into());
            }
            Strategy::Redact {
                placeholder: placeholder.into(),
            }
        }
        MaskStrategy::Partial => {
            let keep = m.keep.unwrap_or(DEFAULT_KEEP);
            let keep =
                usize::try_from(keep).map_err(|_| format!("mask.keep: {keep} is too large"))?;
            Strategy::partial(keep)
        }
        MaskStrategy::Hash => {
            let len = m.hash_length.unwrap_or(DEFAULT_HASH_LENGTH);
            usize::try_from(len)
                .ok()
                .and_then(|l| Strategy::hash(l).ok())
                .ok_or_else(|| format!("mask.hash_length: must be 1 to 64, got {len}"))?
        }
        MaskStrategy::Null => Strategy::Null,
    })
}

/// The mask rules that apply to one principal on one target, compiled.
#[derive(Debug, Clone, Default)]
pub struct Masks {
    rules: Vec<Arc<MaskRule>>,
}

impl Masks {
    pub(crate) fn select(rules: &[Arc<MaskRule>], principal: &Principal, target: &str) -> Masks {
        Masks {
            rules: rules
                .iter()
                .filter(|r| r.applies(principal, target))
                .cloned()
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first applicable rule (file order) whose patterns match this column. Names are
    /// compared as the catalog spells them, case-sensitively.
    pub fn column(&self, schema: &str, table: &str, column: &str) -> Option<&ColumnMasking> {
        self.rules
            .iter()
            .find(|r| r.columns.iter().any(|p| p.matches(schema, table, column)))
            .map(|r| &r.masking)
    }

    /// Strictest `unresolved` among the rules (Mask when empty).
    pub fn unresolved(&self) -> Unresolved {
        self.rules
            .iter()
            .map(|r| r.masking.unresolved)
            .max()
            .unwrap_or(Unresolved::Mask)
    }

    /// Rule names, for logs.
    pub fn rules(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.masking.rule.as_str()).collect()
    }
}
