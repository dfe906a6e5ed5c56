//! From a parsed policy file (plus the packs it includes) to compiled rules.

use crate::condition::Condition;
use crate::file::{Match, PolicyFile, Rule, RuleEffect, Window};
use crate::glob::Globs;
use crate::masking::MaskRule;
use crate::window::CompiledWindow;
use crate::{packs, Error, Principal};
use sha2::{Digest, Sha256};
use sql::Operation;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Operations as a bit set; there are fewer than 128 of them (checked in a test).
pub(crate) type OpSet = u128;

pub(crate) fn op_bit(op: Operation) -> OpSet {
    1u128 << (op as usize)
}

pub(crate) fn op_set(ops: impl IntoIterator<Item = Operation>) -> OpSet {
    ops.into_iter().fold(0, |acc, op| acc | op_bit(op))
}

/// The principal and target conditions of a match block.
#[derive(Debug)]
pub(crate) struct Audience {
    pub agents: Option<Globs>,
    pub groups: Option<Globs>,
    pub targets: Option<Globs>,
}

impl Audience {
    pub(crate) fn holds(&self, p: &Principal, target: &str) -> bool {
        self.agents.as_ref().is_none_or(|g| g.matches(&p.agent))
            && self
                .groups
                .as_ref()
                .is_none_or(|g| p.groups.iter().any(|x| g.matches(x)))
            && self.targets.as_ref().is_none_or(|g| g.matches(target))
    }

    fn compile(m: &Match) -> Result<Audience, String> {
        Ok(Audience {
            agents: globs("agents", &m.agents)?,
            groups: globs("groups", &m.groups)?,
            targets: globs("targets", &m.targets)?,
        })
    }
}

#[derive(Debug)]
pub(crate) struct Matcher {
    pub audience: Audience,
    /// None: every operation.
    pub operations: Option<OpSet>,
    pub tables: Option<Globs>,
    pub functions: Option<Globs>,
    /// `volatile_functions`: the `except` globs.
    pub volatile_except: Option<Globs>,
    pub during: Option<Arc<CompiledWindow>>,
    pub outside: Option<Arc<CompiledWindow>>,
    pub condition: Option<Condition>,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub name: String,
    pub effect: crate::Effect,
    pub reason: Option<String>,
    pub max_rows: Option<u64>,
    pub approval: Option<crate::file::Approval>,
    pub matchers: Vec<Matcher>,
}

pub(crate) struct Compiled {
    pub rules: Vec<CompiledRule>,
    /// Mask rules in file order.
    pub masks: Vec<Arc<MaskRule>>,
    pub version: String,
}

/// Where a rule came from, for error messages.
enum Origin<'a> {
    File,
    Pack(&'a str),
}

pub(crate) fn compile(doc: PolicyFile, file: &str, text: Option<&str>) -> Result<Compiled, Error> {
    let at_file = |msg: String| Error::Invalid(format!("{file}: {msg}"));
    if doc.version != 1 {
        return Err(at_file(format!(
            "version: unsupported version {} (only 1 exists)",
            doc.version
        )));
    }
    let mut windows: BTreeMap<String, Window> = doc.windows.clone();
    let mut sourced: Vec<(Origin<'_>, Rule)> = Vec::new();
    for (i, inc) in doc.include.iter().enumerate() {
        let expanded = packs::expand(&inc.pack, &inc.with)
            .map_err(|e| at_file(format!("include[{i}]: {e}")))?;
        for (name, w) in expanded.windows {
            if windows.insert(name.clone(), w).is_some() {
                return Err(at_file(format!(
                    "include[{i}]: window `{name}` is defined twice"
                )));
            }
        }
        sourced.extend(
            expanded
                .rules
                .into_iter()
                .map(|r| (Origin::Pack(&inc.pack), r)),
        );
    }
    sourced.extend(doc.rules.iter().cloned().map(|r| (Origin::File, r)));

    let mut compiled_windows = BTreeMap::new();
    for (name, w) in &windows {
        let cw = CompiledWindow::compile(w).map_err(|e| {
            at_file(format!(
                "{}windows.{name}.{e}",
                line_prefix(text, &format!("{name}:"), true)
            ))
        })?;
        compiled_windows.insert(name.clone(), Arc::new(cw));
    }

    let mut names = BTreeSet::new();
    let mut rules = Vec::with_capacity(sourced.len());
    let mut masks = Vec::new();
    for (origin, rule) in &sourced {
        let whence = match origin {
            Origin::File => format!(
                "{}rule `{}`",
                line_prefix(text, &format!("name: {}", rule.name), false),
                rule.name
            ),
            Origin::Pack(p) => format!("pack `{p}` rule `{}`", rule.name),
        };
        let fail = |msg: String| Error::Invalid(format!("{file}: {whence}: {msg}"));
        if !valid_name(&rule.name) {
            return Err(fail("name: use only a-z, 0-9, '.', '_' and '-'".into()));
        }
        if !names.insert(rule.name.clone()) {
            return Err(fail("name: another rule already has this name".into()));
        }
        if rule.effect == RuleEffect::Mask {
            masks.push(Arc::new(compile_mask_rule(rule).map_err(fail)?));
        } else {
            rules.push(compile_rule(rule, &compiled_windows).map_err(fail)?);
        }
    }

    let canonical =
        serde_json::to_string(&(sourced.iter().map(|(_, r)| r).collect::<Vec<_>>(), &windows))
            .map_err(|e| at_file(format!("cannot encode compiled policy: {e}")))?;
    let digest = Sha256::digest(canonical.as_bytes());
    let version = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    Ok(Compiled {
        rules,
        masks,
        version,
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// "line N: " for the first line of `text` whose trimmed form (less a leading "- ") is
/// `needle`, or starts with it when `prefix`.
fn line_prefix(text: Option<&str>, needle: &str, prefix: bool) -> String {
    let Some(text) = text else {
        return String::new();
    };
    text.lines()
        .position(|l| {
            let t = l
                .trim()
                .trim_start_matches("- ")
                .trim()
                .replace(['"', '\''], "");
            if prefix {
                t.starts_with(needle)
            } else {
                t == needle
            }
        })
        .map(|i| format!("line {}: ", i + 1))
        .unwrap_or_default()
}

fn compile_rule(
    rule: &Rule,
    windows: &BTreeMap<String, Arc<CompiledWindow>>,
) -> Result<CompiledRule, String> {
    let effect = match rule.effect {
        RuleEffect::Allow => crate::Effect::Allow,
        RuleEffect::Deny => crate::Effect::Deny,
        RuleEffect::RequireApproval => crate::Effect::RequireApproval,
        RuleEffect::Mask => return Err("effect: a mask rule is compiled on its own".into()),
    };
    if rule.mask.is_some() {
        return Err("mask: only mask rules carry a mask block".into());
    }
    if rule.max_rows.is_some() && effect != crate::Effect::Allow {
        return Err("max_rows: only allow rules carry a row limit".into());
    }
    if rule.approval.is_some() && effect != crate::Effect::RequireApproval {
        return Err("approval: only require_approval rules ask for approval".into());
    }
    let matchers = match_blocks(rule)?
        .iter()
        .map(|(at, m)| compile_match(m, windows).map_err(|e| format!("{at}.{e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CompiledRule {
        name: rule.name.clone(),
        effect,
        reason: rule.reason.clone(),
        max_rows: rule.max_rows,
        approval: rule.approval.clone(),
        matchers,
    })
}

/// The rule's match blocks, each with the path that names it in errors.
fn match_blocks(rule: &Rule) -> Result<Vec<(String, Match)>, String> {
    Ok(match (&rule.matches, &rule.match_any) {
        (Some(_), Some(_)) => return Err("give either match or match_any, not both".into()),
        (Some(m), None) => vec![("match".to_string(), m.clone())],
        (None, Some(list)) if list.is_empty() => {
            return Err("match_any: empty list matches nothing".into())
        }
        (None, Some(list)) => list
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("match_any[{i}]"), m.clone()))
            .collect(),
        (None, None) => vec![("match".to_string(), Match::default())],
    })
}

fn compile_mask_rule(rule: &Rule) -> Result<MaskRule, String> {
    let Some(mask) = &rule.mask else {
        return Err("mask: a mask rule needs a mask block saying which columns to mask".into());
    };
    if rule.max_rows.is_some() {
        return Err("max_rows: only allow rules carry a row limit".into());
    }
    if rule.approval.is_some() {
        return Err("approval: only require_approval rules ask for approval".into());
    }
    if rule.reason.is_some() {
        return Err("reason: mask rules refuse nothing, so they take no reason".into());
    }
    let mut audiences = Vec::new();
    for (at, m) in match_blocks(rule)? {
        // Masking is decided once per session, before any statement is known.
        let statement_fields = [
            ("operations", m.operations.is_some()),
            ("tables", m.tables.is_some()),
            ("functions", m.functions.is_some()),
            ("volatile_functions", m.volatile_functions.is_some()),
            ("during", m.during.is_some()),
            ("outside", m.outside.is_some()),
            ("condition", m.condition.is_some()),
        ];
        if let Some((field, _)) = statement_fields.iter().find(|(_, given)| *given) {
            return Err(format!(
                "{at}.{field}: a mask rule matches only agents, groups and targets"
            ));
        }
        audiences.push(Audience::compile(&m).map_err(|e| format!("{at}.{e}"))?);
    }
    MaskRule::compile(&rule.name, audiences, mask)
}

fn globs(field: &str, list: &Option<Vec<String>>) -> Result<Option<Globs>, String> {
    match list {
        None => Ok(None),
        Some(l) if l.is_empty() => Err(format!(
            "{field}: empty list matches nothing; omit the field"
        )),
        Some(l) => Ok(Some(Globs::new(l))),
    }
}

/// Operation names and the categories `ddl`, `privileges`, `write`, `read`, `any`.
pub(crate) fn operations(names: &[String]) -> Result<OpSet, String> {
    let all = Operation::ALL.iter().copied();
    let mut set = 0;
    for name in names {
        set |= match name.as_str() {
            "any" => op_set(all.clone()),
            "ddl" => op_set(all.clone().filter(|o| o.is_ddl())),
            "privileges" => op_set(all.clone().filter(|o| o.is_privilege())),
            "write" => op_set(all.clone().filter(|o| o.is_write())),
            "read" => op_set(all.clone().filter(|o| !o.is_write())),
            other => match Operation::from_name(other) {
                Some(op) => op_bit(op),
                None => {
                    return Err(format!(
                        "operations: unknown operation or category `{other}`"
                    ))
                }
            },
        };
    }
    Ok(set)
}

fn window(
    field: &str,
    name: &Option<String>,
    windows: &BTreeMap<String, Arc<CompiledWindow>>,
) -> Result<Option<Arc<CompiledWindow>>, String> {
    match name {
        None => Ok(None),
        Some(n) => windows
            .get(n)
            .cloned()
            .map(Some)
            .ok_or_else(|| format!("{field}: unknown window `{n}`")),
    }
}

fn compile_match(
    m: &Match,
    windows: &BTreeMap<String, Arc<CompiledWindow>>,
) -> Result<Matcher, String> {
    let operations = match &m.operations {
        None => None,
        Some(l) if l.is_empty() => {
            return Err("operations: empty list matches nothing; omit the field".into())
        }
        Some(l) => Some(operations(l)?),
    };
    let condition = match &m.condition {
        None => None,
        Some(src) => Some(Condition::compile(src).map_err(|e| format!("condition: {e}"))?),
    };
    Ok(Matcher {
        audience: Audience::compile(m)?,
        operations,
        tables: globs("tables", &m.tables)?,
        functions: globs("functions", &m.functions)?,
        volatile_except: m.volatile_functions.as_ref().map(|v| Globs::new(&v.except)),
        during: window("during", &m.during, windows)?,
        outside: window("outside", &m.outside, windows)?,
        condition,
    })
}
