//! Judging one statement's facts against compiled rules.

use crate::compile::{op_bit, op_set, CompiledRule, Matcher};
use crate::condition::Facts;
use crate::{Context, Decision, Effect, Volatility};
use sql::{Function, Operation, Statement, Table};
use std::time::Duration;

/// How a rule's list conditions are read: refusing rules need one match, allow rules
/// need every table and function of the statement to match.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Refuse,
    Allow,
}

/// A table as policy files name it: `schema.name`, unqualified meaning `public`.
pub(crate) fn table_name(t: &Table) -> String {
    format!("{}.{}", t.schema.as_deref().unwrap_or("public"), t.name)
}

fn function_matches(g: &crate::glob::Globs, f: &Function) -> bool {
    g.matches(&f.name)
        || f.schema
            .as_ref()
            .is_some_and(|s| g.matches(&format!("{s}.{}", f.name)))
}

/// Stricter than [`function_matches`] because an exception loosens the rule: a bare name
/// does not excuse a same-named function in a user schema.
fn function_excepted(g: &crate::glob::Globs, f: &Function) -> bool {
    match f.schema.as_deref() {
        None | Some("pg_catalog") => {
            g.matches(&f.name) || g.matches(&format!("pg_catalog.{}", f.name))
        }
        Some(s) => g.matches(&format!("{s}.{}", f.name)),
    }
}

/// Upper-case words of an operation name: `drop_table` → `DROP TABLE`.
pub(crate) fn op_display(op: Operation) -> String {
    op.name().replace('_', " ").to_uppercase()
}

fn function_display(f: &Function) -> String {
    match &f.schema {
        Some(s) => format!("{s}.{}", f.name),
        None => f.name.clone(),
    }
}

pub(crate) struct Evaluation<'a, 'c> {
    stmt: &'a Statement,
    ctx: &'a Context<'c>,
    ops: u128,
    budget: Duration,
    facts: Option<Facts>,
    cacheable: bool,
}

impl<'a, 'c> Evaluation<'a, 'c> {
    pub(crate) fn new(stmt: &'a Statement, ctx: &'a Context<'c>, budget: Duration) -> Self {
        Evaluation {
            stmt,
            ctx,
            ops: op_set(stmt.operations.iter().copied()),
            budget,
            facts: None,
            cacheable: true,
        }
    }

    fn volatile(&self, f: &Function) -> bool {
        let v = self
            .ctx
            .catalog
            .map_or(Volatility::Unknown, |c| c.volatility(f));
        matches!(v, Volatility::Volatile | Volatility::Unknown)
    }

    /// Whether every condition of `m` holds; clock-dependent checks come last so that
    /// a statement is marked uncacheable only when the clock was really consulted.
    fn holds(&mut self, m: &Matcher, mode: Mode) -> bool {
        if !m.audience.holds(self.ctx.principal, self.ctx.target) {
            return false;
        }
        if mode == Mode::Refuse && m.operations.is_some_and(|set| set & self.ops == 0) {
            return false;
        }
        if let Some(g) = &m.tables {
            let mut names = self.stmt.tables.iter().map(table_name);
            let ok = match mode {
                Mode::Refuse => names.any(|t| g.matches(&t)),
                Mode::Allow => names.all(|t| g.matches(&t)),
            };
            if !ok {
                return false;
            }
        }
        if let Some(g) = &m.functions {
            let mut fs = self.stmt.functions.iter();
            let ok = match mode {
                Mode::Refuse => fs.any(|f| function_matches(g, f)),
                Mode::Allow => fs.all(|f| function_matches(g, f)),
            };
            if !ok {
                return false;
            }
        }
        if let Some(except) = &m.volatile_except {
            let hit = self
                .stmt
                .functions
                .iter()
                .any(|f| !function_excepted(except, f) && self.volatile(f));
            if !hit {
                return false;
            }
        }
        if let Some(w) = &m.during {
            self.cacheable = false;
            if !w.contains(self.ctx.now) {
                return false;
            }
        }
        if let Some(w) = &m.outside {
            self.cacheable = false;
            if w.contains(self.ctx.now) {
                return false;
            }
        }
        if let Some(c) = &m.condition {
            if c.uses_now {
                self.cacheable = false;
            }
            let facts = self
                .facts
                .get_or_insert_with(|| Facts::new(self.stmt, self.ctx));
            // Fail closed: an erroring or slow condition refuses and never allows.
            return c.eval(facts, self.budget).unwrap_or(mode == Mode::Refuse);
        }
        true
    }

    fn refusing(&mut self, rules: &'a [CompiledRule], effect: Effect) -> Vec<&'a CompiledRule> {
        let mut hit = Vec::new();
        for rule in rules.iter().filter(|r| r.effect == effect) {
            if self.ctx.exempt.contains(&rule.name) {
                continue;
            }
            let mut any = false;
            for m in &rule.matchers {
                if self.holds(m, Mode::Refuse) {
                    any = true;
                    break;
                }
            }
            if any {
                hit.push(rule);
            }
        }
        hit
    }

    /// The agent-facing reason for a refusing rule without its own.
    fn generated_reason(&self, rule: &CompiledRule, effect: Effect) -> String {
        let verb = if effect == Effect::Deny {
            "is not allowed"
        } else {
            "requires approval"
        };
        let s = self.stmt;
        for m in &rule.matchers {
            if let Some(set) = m.operations {
                if let Some(op) = s.operations.iter().find(|o| set & op_bit(**o) != 0) {
                    return format!("{} {verb}", op_display(*op));
                }
            }
            if let Some(g) = &m.functions {
                if let Some(f) = s.functions.iter().find(|f| function_matches(g, f)) {
                    return format!("calling {} {verb}", function_display(f));
                }
            }
            if let Some(g) = &m.tables {
                if let Some(t) = s.tables.iter().map(table_name).find(|t| g.matches(t)) {
                    return format!("using {t} {verb}");
                }
            }
            if m.volatile_except.is_some() {
                if let Some(f) = s.functions.iter().find(|f| self.volatile(f)) {
                    return format!("calling volatile function {} {verb}", function_display(f));
                }
            }
        }
        format!("{} {verb} (rule {})", s.command, rule.name)
    }

    fn refused(&self, hit: &[&CompiledRule], effect: Effect) -> Decision {
        let reason = hit
            .first()
            .map(|r| {
                r.reason
                    .clone()
                    .unwrap_or_else(|| self.generated_reason(r, effect))
            })
            .unwrap_or_default();
        // The strictest ask among the matching rules: most approvers, hold over retry.
        let approval = (effect == Effect::RequireApproval).then(|| {
            hit.iter()
                .map(|r| {
                    r.approval.clone().unwrap_or(crate::file::Approval {
                        mode: crate::file::ApprovalMode::Hold,
                        min_approvals: 1,
                    })
                })
                .max_by_key(|a| (a.min_approvals, u32::from(a.mode == crate::file::ApprovalMode::Hold)))
                .unwrap_or(crate::file::Approval { mode: crate::file::ApprovalMode::Hold, min_approvals: 1 })
        });
        Decision {
            effect,
            rules: hit.iter().map(|r| r.name.clone()).collect(),
            reason,
            max_rows: None,
            cacheable: self.cacheable,
            approval,
        }
    }

    pub(crate) fn run(mut self, rules: &'a [CompiledRule]) -> Decision {
        let denies = self.refusing(rules, Effect::Deny);
        if !denies.is_empty() {
            return self.refused(&denies, Effect::Deny);
        }
        let approvals = self.refusing(rules, Effect::RequireApproval);
        if !approvals.is_empty() {
            return self.refused(&approvals, Effect::RequireApproval);
        }
        let mut covered = 0u128;
        let mut used: Vec<String> = Vec::new();
        let mut max_rows: Option<u64> = None;
        let mut limit_rule: Option<&str> = None;
        for rule in rules.iter().filter(|r| r.effect == Effect::Allow) {
            for m in &rule.matchers {
                let wanted = m.operations.unwrap_or(u128::MAX) & self.ops;
                if wanted == 0 || !self.holds(m, Mode::Allow) {
                    continue;
                }
                covered |= wanted;
                if !used.contains(&rule.name) {
                    used.push(rule.name.clone());
                }
                if let Some(n) = rule.max_rows {
                    if max_rows.is_none_or(|m| n < m) {
                        max_rows = Some(n);
                        limit_rule = Some(&rule.name);
                    }
                }
            }
        }
        let uncovered = self
            .stmt
            .operations
            .iter()
            .find(|o| covered & op_bit(**o) == 0);
        // The rule whose limit applies comes first, so a refusal over the limit names it.
        if let Some(pos) = limit_rule.and_then(|r| used.iter().position(|u| u == r)) {
            let r = used.remove(pos);
            used.insert(0, r);
        }
        match uncovered {
            // A limit is enforced by counting what the command tag reports, which misses rows
            // changed inside a data-modifying CTE or under EXPLAIN ANALYZE.
            None if max_rows.is_some() && !self.stmt.rows_countable => Decision {
                effect: Effect::Deny,
                rules: used.into_iter().take(1).collect(),
                reason: crate::UNCOUNTABLE.into(),
                max_rows: None,
                cacheable: self.cacheable,
                approval: None,
            },
            None => Decision {
                effect: Effect::Allow,
                reason: if used.is_empty() {
                    "nothing to judge".into()
                } else {
                    format!("allowed by {}", used.join(", "))
                },
                rules: used,
                max_rows,
                cacheable: self.cacheable,
                approval: None,
            },
            Some(op) => Decision {
                effect: Effect::Deny,
                rules: vec![crate::DEFAULT_DENY.into()],
                reason: format!("{} is not allowed by any rule", op_display(*op)),
                max_rows: None,
                cacheable: self.cacheable,
                approval: None,
            },
        }
    }
}
