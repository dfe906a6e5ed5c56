//! Which result columns a session must not see in the clear, and the plan that masks them.
//!
//! A result column is sensitive when it is a sensitive column (its RowDescription origin,
//! resolved through the target's catalog) or derives from one (the statement's lineage from
//! the parse tree). A column that is exactly a sensitive column keeps its rule's strategy;
//! one computed from it is masked whole, since a partial reveal of a transformed value (a
//! reversed card number, a substring) may be a reveal of the original.

use std::collections::HashMap;
use std::sync::Arc;

use policy::{ColumnMasking, Masks, Unresolved};
use sql::{Output, Sources, Statement};
use wire::backend::Field;

use crate::catalog::Catalog;

/// How a result column is masked, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hit {
    /// Index into `SessionMasks::rules`.
    rule: usize,
    /// The sensitive column itself (not a value computed from it).
    exact: bool,
}

/// The masking one session's agent is under on its target, resolved against the catalog.
pub struct SessionMasks {
    rules: Vec<ColumnMasking>,
    unresolved: Unresolved,
    catalog: Arc<Catalog>,
    key: mask::HashKey,
    /// Sensitive columns by (relation OID, attnum); a view column that reads one counts.
    columns: HashMap<(u32, i16), Hit>,
    /// Relations with a sensitive column: the rule of the first.
    relations: HashMap<u32, usize>,
    /// No rule applies any more (the policy changed mid-session): nothing is masked.
    inert: bool,
}

impl std::fmt::Debug for SessionMasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionMasks").field("columns", &self.columns.len()).finish()
    }
}

/// Views may read views; a few rounds settle any realistic chain.
const VIEW_ROUNDS: usize = 8;

impl SessionMasks {
    /// None when no mask rule applies to this session.
    pub fn new(masks: &Masks, catalog: Arc<Catalog>, key: mask::HashKey, analyzer: &sql::Analyzer) -> Option<SessionMasks> {
        if masks.is_empty() {
            return None;
        }
        // Rule 0 masks what the gateway cannot attribute to a rule (a relation created
        // since the catalog was loaded, an untraceable result): whole values, redacted.
        let mut rules: Vec<ColumnMasking> = vec![ColumnMasking {
            rule: masks.rules().first().map_or("masking", |r| *r).to_string(),
            strategy: mask::Strategy::redact(),
            scan: false,
            detectors: mask::Detectors::ALL,
            unresolved: masks.unresolved(),
        }];
        let mut index = |m: &ColumnMasking| match rules.iter().position(|r| r == m) {
            Some(i) => i,
            None => {
                rules.push(m.clone());
                rules.len() - 1
            }
        };
        let mut columns = HashMap::new();
        let mut relations = HashMap::new();
        for (oid, rel) in &catalog.relations.by_oid {
            for c in &rel.columns {
                if let Some(m) = masks.column(&rel.schema, &rel.name, &c.name) {
                    let rule = index(m);
                    columns.insert((*oid, c.attnum), Hit { rule, exact: true });
                    relations.entry(*oid).or_insert(rule);
                }
            }
        }
        let mut m = SessionMasks { rules, unresolved: masks.unresolved(), catalog: catalog.clone(), key, columns, relations, inert: false };
        m.add_views(analyzer);
        Some(m)
    }

    /// Masking that masks nothing, for a session whose mask rules went away.
    pub fn inert(catalog: Arc<Catalog>, key: mask::HashKey) -> SessionMasks {
        SessionMasks {
            rules: Vec::new(),
            unresolved: Unresolved::Mask,
            catalog,
            key,
            columns: HashMap::new(),
            relations: HashMap::new(),
            inert: true,
        }
    }

    /// Marks the columns of views that read sensitive columns. A view whose definition the
    /// analyser can trace has each column judged by its own lineage; any other view that
    /// reads a sensitive column has every column masked.
    fn add_views(&mut self, analyzer: &sql::Analyzer) {
        let catalog = self.catalog.clone();
        let views: Vec<(u32, &crate::catalog::Relation, Option<Arc<sql::Analysis>>)> = catalog
            .relations
            .by_oid
            .iter()
            .filter(|(_, r)| r.is_view)
            .map(|(oid, r)| {
                let traced = r.definition.as_deref().and_then(|d| analyzer.analyze(d).ok()).filter(|a| {
                    a.statements.first().and_then(|s| s.result.as_ref()).is_some_and(|l| {
                        l.outputs.len() == r.columns.len() && l.outputs.iter().all(|o| matches!(o, Output::Column(_)))
                    })
                });
                (*oid, r, traced)
            })
            .collect();
        for _ in 0..VIEW_ROUNDS {
            let mut found = Vec::new();
            for (oid, rel, traced) in &views {
                let read = rel.reads.iter().find_map(|&(r, att)| match att {
                    0 => self.relations.get(&r).copied(),
                    a => self.columns.get(&(r, a)).map(|h| h.rule),
                });
                let Some(rule) = read else { continue };
                let stmt = traced.as_ref().and_then(|a| a.statements.first());
                for (i, c) in rel.columns.iter().enumerate() {
                    if self.columns.contains_key(&(*oid, c.attnum)) {
                        continue;
                    }
                    let hit = match stmt.and_then(|s| s.result.as_ref().map(|l| (s, &l.outputs[i]))) {
                        Some((s, out)) => self.source_hit(out.sources(), s),
                        None => Some(Hit { rule, exact: false }),
                    };
                    if let Some(h) = hit {
                        found.push(((*oid, c.attnum), h));
                    }
                }
            }
            if found.is_empty() {
                break;
            }
            for (key, h) in found {
                self.columns.insert(key, h);
                self.relations.entry(key.0).or_insert(h.rule);
            }
        }
    }

    /// Relations a table reference of the statement may mean, and whether one is unknown
    /// to the catalog (created since it was loaded).
    fn statement_relations(&self, stmt: &Statement) -> (Vec<u32>, bool) {
        let mut oids = Vec::new();
        let mut unknown = false;
        for t in &stmt.tables {
            let found = self.catalog.relations.lookup(t.schema.as_deref(), &t.name);
            unknown |= found.is_empty();
            oids.extend(found);
        }
        (oids, unknown)
    }

    /// The rule of a sensitive relation the statement reads; with `unknown`, a relation the
    /// catalog does not know counts as sensitive.
    fn touches(&self, stmt: &Statement) -> Option<usize> {
        let (oids, unknown) = self.statement_relations(stmt);
        oids.iter().find_map(|o| self.relations.get(o).copied()).or(unknown.then_some(0))
    }

    /// The rule for a value that may derive from anything: what the statement names, or,
    /// since an untraceable value may read relations the text never names (dynamic SQL in
    /// a string), any sensitive data on the target.
    fn untraceable(&self, stmt: &Statement) -> Option<usize> {
        self.touches(stmt).or_else(|| self.touches_anything().map(|h| h.rule))
    }

    /// With `unresolved: refuse`, a statement whose result the gateway cannot trace back
    /// to its sources while it reads sensitive data is refused before it runs.
    pub fn refusal(&self, stmt: &Statement) -> Option<String> {
        if self.inert || self.unresolved != Unresolved::Refuse {
            return None;
        }
        let lineage = stmt.result.as_ref()?;
        let opaque = lineage.outputs.iter().any(|o| match o {
            Output::Column(s) => s.opaque,
            Output::Star { sources, .. } => sources.opaque,
        });
        let rule = self.untraceable(stmt).filter(|_| opaque)?;
        Some(format!(
            "drawbridge: blocked by rule {}: a result column may derive from a sensitive column in a way the gateway cannot trace",
            self.rules[rule].rule
        ))
    }

    /// How a value with these sources is masked, if it derives from a sensitive column.
    /// Exact when the value is one sensitive column's value unchanged.
    fn source_hit(&self, s: &Sources, stmt: &Statement) -> Option<Hit> {
        let fallback = Some(Hit { rule: 0, exact: false });
        let single = s.direct && s.columns.len() == 1 && s.rows.is_empty() && !s.opaque;
        let rels = &self.catalog.relations;
        for c in &s.columns {
            let candidates = match &c.table {
                Some(t) => {
                    let found = rels.lookup(t.schema.as_deref(), &t.name);
                    if found.is_empty() {
                        // Not in the catalog: created since it was loaded. Fail closed.
                        return fallback;
                    }
                    found
                }
                None => self.statement_relations(stmt).0,
            };
            for oid in candidates {
                let Some(rel) = rels.by_oid.get(&oid) else { continue };
                if let Some(h) = rel.attnum(&c.column).and_then(|a| self.columns.get(&(oid, a))) {
                    return Some(Hit { rule: h.rule, exact: single && h.exact });
                }
            }
        }
        for r in &s.rows {
            let found = rels.lookup(r.schema.as_deref(), &r.name);
            if found.is_empty() {
                return fallback;
            }
            if let Some(rule) = found.iter().find_map(|o| self.relations.get(o)) {
                return Some(Hit { rule: *rule, exact: false });
            }
        }
        if s.opaque {
            return self.untraceable(stmt).map(|rule| Hit { rule, exact: false });
        }
        None
    }

    /// Builds the plan for a result described by `fields`; None when nothing is masked.
    /// `stmt` is the statement that produced it, when the gateway knows it.
    pub fn plan(&self, stmt: Option<&Statement>, fields: &[Field<'_>]) -> Option<ResultMask> {
        if self.inert {
            return None;
        }
        let hits = self.classify(stmt, fields.len(), |i| {
            let f = &fields[i];
            (f.table_oid != 0).then_some((f.table_oid, f.attnum))
        });
        let described: Vec<(u32, i32, i16, String)> = fields
            .iter()
            .map(|f| (f.type_oid, f.typmod, f.format, String::from_utf8_lossy(f.name).into_owned()))
            .collect();
        self.build(hits, &described)
    }

    /// The plan for `COPY … TO STDOUT` with `n` columns (text or CSV: every value text).
    pub fn copy_plan(&self, stmt: Option<&Statement>, n: usize) -> Option<ResultMask> {
        if self.inert {
            return None;
        }
        // COPY sends no RowDescription: a starred table's columns come from the catalog.
        let mut origins: Vec<Option<(u32, i16)>> = vec![None; n];
        let mut described: Vec<(u32, i32, i16, String)> = (0..n).map(|i| (mask::oid::TEXT, -1, 0, format!("column {}", i + 1))).collect();
        if let Some(Output::Star { relations, .. }) = stmt.and_then(|s| s.result.as_ref()).and_then(|l| l.outputs.first()) {
            if let [rel] = relations.as_slice() {
                let oids = self.catalog.relations.lookup(rel.schema.as_deref(), &rel.name);
                if let [oid] = oids.as_slice() {
                    if let Some(r) = self.catalog.relations.by_oid.get(oid).filter(|r| r.columns.len() == n) {
                        for (i, c) in r.columns.iter().enumerate() {
                            origins[i] = Some((*oid, c.attnum));
                            described[i] = (c.type_oid, c.typmod, 0, c.name.clone());
                        }
                    }
                }
            }
        }
        let hits = self.classify(stmt, n, |i| origins[i]);
        self.build(hits, &described)
    }

    /// One hit (or none) per result column.
    fn classify(&self, stmt: Option<&Statement>, n: usize, origin: impl Fn(usize) -> Option<(u32, i16)>) -> Vec<Option<Hit>> {
        let lineage = stmt.and_then(|s| s.result.as_deref());
        let map = lineage.map(|l| OutputMap::new(&l.outputs, n));
        (0..n)
            .map(|i| {
                let by_origin = origin(i).map(|o| match self.columns.get(&o) {
                    Some(h) => Some(*h),
                    // A relation created since the catalog was loaded: fail closed.
                    None if !self.catalog.relations.by_oid.contains_key(&o.0) => Some(Hit { rule: 0, exact: false }),
                    None => None,
                });
                let Some(stmt) = stmt else {
                    return by_origin.unwrap_or_else(|| self.touches_anything());
                };
                let Some((output, starred)) = map.as_ref().and_then(|m| m.get(i)) else {
                    // No lineage for this column (FETCH, EXECUTE, a count mismatch): its origin
                    // if it has one, else masked whenever the statement reads sensitive data.
                    return by_origin.unwrap_or_else(|| self.unknown(stmt));
                };
                if starred {
                    if let Some(o) = by_origin {
                        // A starred base-table column: its origin is exact.
                        return o;
                    }
                }
                let (sources, direct) = match output {
                    Output::Column(s) => (s, s.direct),
                    Output::Star { sources, .. } => (sources, false),
                };
                let derived = self.source_hit(sources, stmt).map(|h| Hit { exact: h.exact && direct, ..h });
                match (by_origin.flatten(), derived) {
                    (Some(h), _) if h.exact && direct => Some(h),
                    (Some(h), None) => Some(h),
                    (Some(h), Some(d)) => Some(Hit { rule: h.rule.min(d.rule), exact: false }),
                    (None, d) => d,
                }
            })
            .collect()
    }

    /// A result the gateway cannot attribute to any statement.
    fn touches_anything(&self) -> Option<Hit> {
        (!self.relations.is_empty()).then_some(Hit { rule: 0, exact: false })
    }

    /// A computed column the lineage does not describe.
    fn unknown(&self, stmt: &Statement) -> Option<Hit> {
        if stmt.result.is_some() {
            return self.touches(stmt).map(|rule| Hit { rule, exact: false });
        }
        if stmt.has(sql::Operation::Show) || stmt.has(sql::Operation::Explain) {
            return None;
        }
        // FETCH, EXECUTE, CALL: may return anything.
        self.touches_anything()
    }

    fn build(&self, hits: Vec<Option<Hit>>, described: &[(u32, i32, i16, String)]) -> Option<ResultMask> {
        if hits.iter().all(Option::is_none) {
            return None;
        }
        let mut columns = Vec::with_capacity(hits.len());
        let mut audit = Vec::new();
        for (i, (hit, (type_oid, typmod, format, name))) in hits.iter().zip(described).enumerate() {
            let Some(hit) = hit else {
                columns.push(None);
                continue;
            };
            let rule = &self.rules[hit.rule];
            let format = mask::Format::from_code(*format).unwrap_or(mask::Format::Binary);
            let column = if hit.exact {
                let c = mask::ColumnMask::new(rule.strategy.clone(), *type_oid, *typmod, format);
                if rule.scan { c.scanning(rule.detectors) } else { c }
            } else {
                mask::ColumnMask::new(derived_strategy(&rule.strategy), *type_oid, *typmod, format)
            };
            columns.push(Some(column));
            audit.push(Audited { position: i, name: name.clone(), rule: rule.rule.clone(), exact: hit.exact });
        }
        let n = columns.len();
        Some(ResultMask { plan: mask::Plan::new(columns, self.key.clone()), audit, tally: mask::Tally::new(n) })
    }
}

/// A value computed from a sensitive one is replaced whole: keeping part of it could keep
/// part of the original.
fn derived_strategy(s: &mask::Strategy) -> mask::Strategy {
    match s {
        mask::Strategy::Partial { .. } => mask::Strategy::redact(),
        other => other.clone(),
    }
}

/// Maps result positions to lineage outputs. Entries before the first star and after the
/// last map one to one; the columns between belong to the stars.
struct OutputMap<'a> {
    outputs: &'a [Output],
    n: usize,
    first_star: Option<usize>,
    last_star: usize,
    star_union: Option<Output>,
}

impl<'a> OutputMap<'a> {
    fn new(outputs: &'a [Output], n: usize) -> OutputMap<'a> {
        let stars: Vec<usize> = outputs.iter().enumerate().filter(|(_, o)| matches!(o, Output::Star { .. })).map(|(i, _)| i).collect();
        let star_union = (stars.len() > 1).then(|| {
            let mut union = Sources::default();
            for i in stars[0]..=stars[stars.len() - 1] {
                if let Some(Output::Star { sources, .. }) | Some(Output::Column(sources)) = outputs.get(i) {
                    union.columns.extend(sources.columns.iter().cloned());
                    union.rows.extend(sources.rows.iter().cloned());
                    union.opaque |= sources.opaque;
                }
            }
            Output::Star { sources: union, relations: Vec::new(), width: None }
        });
        OutputMap { outputs, n, first_star: stars.first().copied(), last_star: stars.last().copied().unwrap_or(0), star_union }
    }

    /// The output for result column `i`, and whether it comes from a star.
    fn get(&self, i: usize) -> Option<(&Output, bool)> {
        let Some(first) = self.first_star else {
            return (self.outputs.len() == self.n).then(|| (&self.outputs[i], false));
        };
        let after = self.outputs.len() - self.last_star - 1;
        if self.n < first + after {
            return None;
        }
        if i < first {
            return self.outputs.get(i).map(|o| (o, false));
        }
        if i >= self.n - after {
            return self.outputs.get(self.outputs.len() - (self.n - i)).map(|o| (o, false));
        }
        match &self.star_union {
            Some(u) => Some((u, true)),
            None => self.outputs.get(first).map(|o| (o, true)),
        }
    }
}

/// One result column that is masked, for the audit record.
#[derive(Debug)]
pub struct Audited {
    pub position: usize,
    pub name: String,
    pub rule: String,
    pub exact: bool,
}

/// The masking of one result set, and what it has masked so far.
pub struct ResultMask {
    pub plan: mask::Plan,
    pub audit: Vec<Audited>,
    pub tally: mask::Tally,
}

impl ResultMask {
    /// The audit record's columns, or None when nothing was masked.
    pub fn masked_columns(&self) -> Option<Vec<audit::MaskedColumn>> {
        let cols: Vec<audit::MaskedColumn> = self
            .audit
            .iter()
            .map(|a| audit::MaskedColumn {
                position: a.position,
                name: a.name.clone(),
                rule: a.rule.clone(),
                how: if a.exact { "exact" } else { "derived" }.into(),
                values: self.tally.per_column.get(a.position).copied().unwrap_or(0),
            })
            .filter(|c| c.values > 0)
            .collect();
        (!cols.is_empty()).then_some(cols)
    }
}
