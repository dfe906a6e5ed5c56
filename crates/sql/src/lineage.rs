//! Result-column lineage: for each entry of a statement's result, the base-relation
//! columns and rows its values may derive from, read from the parse tree alone.
//!
//! Without a catalog a name may resolve to several things; the walker then takes all of
//! them, so the answer may be wider than the truth but never narrower. What it cannot
//! follow it marks `opaque`. Recursion follows the tree, whose depth is bounded before
//! parsing; total work is bounded separately (see `BUDGET`).

use crate::analyze::is_dynamic_sql;
use crate::facts::{ColumnSource, Lineage, Output, Relation, Sources};
use crate::walk;
use pg_query::protobuf::{self, Node, ReturningOptionKind, SetOperation};
use pg_query::{NodeEnum, NodeRef};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

/// Work units (nodes visited plus set elements merged) one statement may cost. Past it
/// every output is reported opaque: a pathological text cannot make analysis quadratic.
const BUDGET: usize = 2_000_000;

/// Rounds of re-evaluation a WITH RECURSIVE gets to reach a fixed point.
const RECURSIVE_ROUNDS: usize = 8;

/// The lineage of a top-level statement's result, or None when it returns no rows.
pub(crate) fn of_statement(top: NodeRef<'_>) -> Option<Arc<Lineage>> {
    let mut w = Lin { levels: Vec::new(), ctes: Vec::new(), work: 0 };
    let targets = match top {
        NodeRef::DeclareCursorStmt(d) => w.returning(d.query.as_deref()?)?,
        NodeRef::PrepareStmt(p) => w.returning(p.query.as_deref()?)?,
        NodeRef::CopyStmt(c) if !c.is_from && !c.is_program && c.filename.is_empty() => match &c.query {
            Some(q) => w.returning(q)?,
            None => copy_table(c)?,
        },
        NodeRef::SelectStmt(_)
        | NodeRef::InsertStmt(_)
        | NodeRef::UpdateStmt(_)
        | NodeRef::DeleteStmt(_)
        | NodeRef::MergeStmt(_) => w.returns(top)?,
        _ => return None,
    };
    let exhausted = w.work > BUDGET;
    let outputs = targets
        .into_iter()
        .map(|t| {
            let mut out = t.output();
            if exhausted {
                match &mut out {
                    Output::Column(s) | Output::Star { sources: s, .. } => {
                        s.opaque = true;
                        s.direct = false;
                    }
                }
            }
            out
        })
        .collect();
    Some(Arc::new(Lineage { outputs }))
}

/// `COPY table [(cols)] TO STDOUT`.
fn copy_table(c: &protobuf::CopyStmt) -> Option<Vec<Target>> {
    let rel = relation(c.relation.as_ref()?);
    if c.attlist.is_empty() {
        return Some(vec![Target {
            star: true,
            pieces: vec![Piece::Base { rel: rel.clone(), renamed: false }],
            relations: vec![rel],
        }]);
    }
    Some(
        names(&c.attlist)
            .into_iter()
            .map(|col| Target::column(Some(col.clone()), column(Some(rel.clone()), col)))
            .collect(),
    )
}

/// What a query's output positions hold, before the top level turns them into `Output`s.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    /// One column; `name` when it can be named for certain.
    Col { name: Option<String>, src: Sources },
    /// Every column of a base relation, names unknown; `renamed` by an alias column list.
    Base { rel: Relation, renamed: bool },
    /// Columns of unknown names and count, each deriving from `src`.
    Any(Sources),
}

impl Piece {
    fn sources(&self) -> Sources {
        match self {
            Piece::Col { src, .. } | Piece::Any(src) => src.clone(),
            Piece::Base { rel, renamed } => {
                Sources { rows: [rel.clone()].into(), direct: !renamed, ..Sources::default() }
            }
        }
    }
}

/// One entry of a target list: a single column, or a star expanded into pieces.
#[derive(Debug, Clone)]
struct Target {
    star: bool,
    pieces: Vec<Piece>,
    /// Starred base relations, for `Output::Star`.
    relations: Vec<Relation>,
}

impl Target {
    fn column(name: Option<String>, src: Sources) -> Target {
        Target { star: false, pieces: vec![Piece::Col { name, src }], relations: Vec::new() }
    }

    fn output(self) -> Output {
        if !self.star {
            let src = self.pieces.into_iter().next().map(|p| p.sources()).unwrap_or_default();
            return Output::Column(src);
        }
        let width = self.pieces.iter().all(|p| matches!(p, Piece::Col { .. })).then_some(self.pieces.len());
        let mut sources = Sources::default();
        let mut direct = !self.pieces.is_empty();
        for p in &self.pieces {
            let s = p.sources();
            direct &= s.direct;
            merge(&mut sources, s);
        }
        sources.direct = direct;
        Output::Star { sources, relations: self.relations, width }
    }
}

/// A FROM item visible at one query level.
#[derive(Debug, Clone)]
struct Item {
    /// The name that qualifies it: its alias, else the relation or CTE name.
    name: Option<String>,
    /// The schema written before an unaliased relation name.
    schema: Option<String>,
    /// Named by an alias rather than by the relation's own name.
    aliased: bool,
    /// Reachable only by qualified name (RETURNING's `old`/`new`).
    hidden: bool,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    Base { rel: Relation, renamed: bool },
    Derived(Rc<Vec<Piece>>),
}

impl Item {
    fn pieces(&self) -> Vec<Piece> {
        match &self.body {
            Body::Base { rel, renamed } => vec![Piece::Base { rel: rel.clone(), renamed: *renamed }],
            Body::Derived(p) => p.as_ref().clone(),
        }
    }

    fn whole_row(&self) -> Sources {
        let mut s = Sources::default();
        match &self.body {
            Body::Base { rel, .. } => {
                s.rows.insert(rel.clone());
            }
            Body::Derived(pieces) => {
                for p in pieces.iter() {
                    match p {
                        Piece::Col { src, .. } | Piece::Any(src) => {
                            s.columns.extend(src.columns.iter().cloned());
                            s.rows.extend(src.rows.iter().cloned());
                            s.opaque |= src.opaque;
                        }
                        Piece::Base { rel, .. } => {
                            s.rows.insert(rel.clone());
                        }
                    }
                }
            }
        }
        s
    }

    /// Work a whole-row read costs.
    fn width(&self) -> usize {
        match &self.body {
            Body::Base { .. } => 1,
            Body::Derived(p) => p.len(),
        }
    }
}

/// The FROM items of one query level.
#[derive(Default)]
struct Level<'a> {
    items: Vec<Item>,
    /// Join aliases and the items each covers.
    groups: Vec<(String, Range<usize>)>,
    /// Column names merged by JOIN … USING.
    merged: Vec<String>,
    natural: bool,
    windows: &'a [Node],
}

/// Candidates a column reference may resolve to, gathered across levels.
#[derive(Default)]
struct Found {
    bases: Vec<Relation>,
    src: Sources,
    direct: bool,
    any: bool,
    /// A column JOIN … USING / NATURAL merged from both sides: no one relation owns it.
    merged: bool,
}

impl Found {
    fn new() -> Found {
        Found { direct: true, ..Found::default() }
    }

    fn add(&mut self, s: Sources) {
        self.direct &= s.direct;
        self.any = true;
        merge(&mut self.src, s);
    }

    fn base(&mut self, rel: &Relation, renamed: bool) {
        self.any = true;
        if renamed {
            self.direct = false;
            self.src.rows.insert(rel.clone());
        } else if !self.bases.contains(rel) {
            self.bases.push(rel.clone());
        }
    }

    /// Offers every column of `pieces` that may carry the name `x`; true when one is named so.
    fn pieces(&mut self, pieces: &[Piece], x: &str) -> bool {
        let named: Vec<&Piece> =
            pieces.iter().filter(|p| matches!(p, Piece::Col { name: Some(n), .. } if n == x)).collect();
        if !named.is_empty() {
            for p in named {
                self.add(p.sources());
            }
            return true;
        }
        for p in pieces {
            match p {
                Piece::Col { name: None, src } | Piece::Any(src) => self.add(src.clone()),
                Piece::Base { rel, renamed } => self.base(rel, *renamed),
                Piece::Col { .. } => {}
            }
        }
        false
    }

    fn finish(mut self, x: &str) -> Option<Sources> {
        if !self.any {
            return None;
        }
        match self.bases.as_slice() {
            [] => {}
            [one] if !self.merged => {
                self.src.columns.insert(ColumnSource { table: Some(one.clone()), column: x.to_owned() });
            }
            _ => {
                self.src.columns.insert(ColumnSource { table: None, column: x.to_owned() });
            }
        }
        self.src.direct = self.direct;
        Some(self.src)
    }
}

struct Lin<'a> {
    /// Query levels, innermost last.
    levels: Vec<Level<'a>>,
    /// Visible CTEs, innermost last.
    ctes: Vec<(String, Rc<Vec<Piece>>)>,
    work: usize,
}

impl<'a> Lin<'a> {
    fn spend(&mut self, n: usize) -> bool {
        self.work = self.work.saturating_add(n);
        self.work <= BUDGET
    }

    fn union(&mut self, into: &mut Sources, s: Sources) {
        let n = s.columns.len() + s.rows.len();
        if self.spend(n) {
            merge(into, s);
        } else {
            into.opaque = true;
        }
    }

    /// The result of a statement that may return rows (a query, or DML with RETURNING).
    fn returning(&mut self, node: &'a Node) -> Option<Vec<Target>> {
        self.returns(node.node.as_ref()?.to_ref())
    }

    fn returns(&mut self, node: NodeRef<'a>) -> Option<Vec<Target>> {
        match node {
            NodeRef::SelectStmt(s) if s.into_clause.is_none() => Some(self.select(s)),
            NodeRef::InsertStmt(s) => {
                self.dml(s.relation.as_ref()?, &[], s.with_clause.as_ref(), s.returning_clause.as_ref())
            }
            NodeRef::UpdateStmt(s) => {
                self.dml(s.relation.as_ref()?, &s.from_clause, s.with_clause.as_ref(), s.returning_clause.as_ref())
            }
            NodeRef::DeleteStmt(s) => {
                self.dml(s.relation.as_ref()?, &s.using_clause, s.with_clause.as_ref(), s.returning_clause.as_ref())
            }
            NodeRef::MergeStmt(s) => self.dml(
                s.relation.as_ref()?,
                s.source_relation.as_deref().map(std::slice::from_ref).unwrap_or_default(),
                s.with_clause.as_ref(),
                s.returning_clause.as_ref(),
            ),
            _ => None,
        }
    }

    /// A query used as a relation or a value: its targets, or one opaque star.
    fn query(&mut self, node: &'a Node) -> Vec<Target> {
        match node.node.as_ref().map(NodeEnum::to_ref) {
            Some(
                n @ (NodeRef::InsertStmt(_) | NodeRef::UpdateStmt(_) | NodeRef::DeleteStmt(_) | NodeRef::MergeStmt(_)),
            ) => self.returns(n).unwrap_or_default(),
            Some(NodeRef::SelectStmt(s)) => self.select(s),
            _ => vec![opaque_star()],
        }
    }

    fn dml(
        &mut self,
        target: &'a protobuf::RangeVar,
        from: &'a [Node],
        with: Option<&'a protobuf::WithClause>,
        returning: Option<&'a protobuf::ReturningClause>,
    ) -> Option<Vec<Target>> {
        let returning = returning.filter(|r| !r.exprs.is_empty())?;
        let mark = self.ctes.len();
        if let Some(w) = with {
            self.with(w);
        }
        self.levels.push(Level::default());
        let rel = relation(target);
        let (name, schema) = match &target.alias {
            Some(a) => (a.aliasname.clone(), None),
            None => (rel.name.clone(), rel.schema.clone()),
        };
        let aliased = target.alias.is_some();
        self.add_item(Item {
            name: Some(name),
            schema,
            aliased,
            hidden: false,
            body: Body::Base { rel: rel.clone(), renamed: false },
        });
        let mut old = "old".to_owned();
        let mut new = "new".to_owned();
        for o in &returning.options {
            if let Some(NodeEnum::ReturningOption(o)) = &o.node {
                match ReturningOptionKind::try_from(o.option) {
                    Ok(ReturningOptionKind::ReturningOptionOld) => old.clone_from(&o.value),
                    Ok(ReturningOptionKind::ReturningOptionNew) => new.clone_from(&o.value),
                    _ => {}
                }
            }
        }
        for n in [old, new] {
            let body = Body::Base { rel: rel.clone(), renamed: false };
            self.add_item(Item { name: Some(n), schema: None, aliased: true, hidden: true, body });
        }
        for f in from {
            self.add_from(f);
        }
        let targets = returning.exprs.iter().map(|t| self.target(t)).collect();
        self.levels.pop();
        self.ctes.truncate(mark);
        Some(targets)
    }

    fn add_item(&mut self, item: Item) {
        if let Some(l) = self.levels.last_mut() {
            l.items.push(item);
        }
    }

    fn select(&mut self, s: &'a protobuf::SelectStmt) -> Vec<Target> {
        if !self.spend(1) {
            return vec![opaque_star()];
        }
        let mark = self.ctes.len();
        if let Some(w) = &s.with_clause {
            self.with(w);
        }
        let out = if s.op != SetOperation::SetopNone as i32 && s.op != 0 {
            self.set_op(s)
        } else if !s.values_lists.is_empty() {
            self.values(&s.values_lists)
        } else {
            self.levels.push(Level { windows: &s.window_clause, ..Level::default() });
            for f in &s.from_clause {
                self.add_from(f);
            }
            let targets = s.target_list.iter().map(|t| self.target(t)).collect();
            self.levels.pop();
            targets
        };
        self.ctes.truncate(mark);
        out
    }

    fn set_op(&mut self, s: &'a protobuf::SelectStmt) -> Vec<Target> {
        let (Some(l), Some(r)) = (&s.larg, &s.rarg) else { return vec![opaque_star()] };
        let left = self.select(l);
        let right = self.select(r);
        let flat = |ts: &[Target]| -> Option<Vec<(Option<String>, Sources)>> {
            ts.iter()
                .flat_map(|t| t.pieces.iter())
                .map(|p| match p {
                    Piece::Col { name, src } => Some((name.clone(), src.clone())),
                    _ => None,
                })
                .collect()
        };
        match (flat(&left), flat(&right)) {
            (Some(lf), Some(rf)) if lf.len() == rf.len() => {
                let mut cols = Vec::with_capacity(lf.len());
                for ((name, mut a), (_, b)) in lf.into_iter().zip(rf) {
                    let direct = a.direct && b.direct;
                    self.union(&mut a, b);
                    a.direct = direct;
                    cols.push(Piece::Col { name, src: a });
                }
                // The result keeps the left arm's shape: its stars stay stars.
                let mut cols = cols.into_iter();
                left.into_iter()
                    .map(|t| Target {
                        star: t.star,
                        pieces: cols.by_ref().take(t.pieces.len()).collect(),
                        relations: Vec::new(),
                    })
                    .collect()
            }
            _ => {
                let mut src = Sources::default();
                let mut relations = Vec::new();
                for t in left.iter().chain(&right) {
                    for p in &t.pieces {
                        self.union(&mut src, p.sources());
                    }
                    for r in &t.relations {
                        if !relations.contains(r) {
                            relations.push(r.clone());
                        }
                    }
                }
                src.direct = false;
                vec![Target { star: true, pieces: vec![Piece::Any(src)], relations }]
            }
        }
    }

    fn values(&mut self, rows: &'a [Node]) -> Vec<Target> {
        let mut cols: Vec<Sources> = Vec::new();
        for row in rows {
            let Some(NodeEnum::List(list)) = &row.node else {
                cols.push(Sources { opaque: true, ..Sources::default() });
                continue;
            };
            for (i, item) in list.items.iter().enumerate() {
                let s = self.node(item);
                match cols.get_mut(i) {
                    Some(c) => {
                        let direct = c.direct && s.direct;
                        self.union(c, s);
                        c.direct = direct;
                    }
                    None => cols.push(s),
                }
            }
        }
        cols.into_iter().enumerate().map(|(i, src)| Target::column(Some(format!("column{}", i + 1)), src)).collect()
    }

    fn with(&mut self, w: &'a protobuf::WithClause) {
        let ctes: Vec<&'a protobuf::CommonTableExpr> = w
            .ctes
            .iter()
            .filter_map(|c| match &c.node {
                Some(NodeEnum::CommonTableExpr(c)) => Some(c.as_ref()),
                _ => None,
            })
            .collect();
        if !w.recursive {
            for c in ctes {
                let pieces = self.cte_body(c);
                self.ctes.push((c.ctename.clone(), Rc::new(pieces)));
            }
            return;
        }
        // Any CTE may name any other (or itself): start from "nothing yet" and re-evaluate
        // until no output changes.
        let mark = self.ctes.len();
        for c in &ctes {
            self.ctes.push((c.ctename.clone(), Rc::new(vec![Piece::Any(Sources::default())])));
        }
        // Seed each with its non-recursive arm, so its columns have names from the start.
        for (i, c) in ctes.iter().enumerate() {
            if let Some(NodeEnum::SelectStmt(s)) = c.ctequery.as_deref().and_then(|q| q.node.as_ref()) {
                if let (true, Some(l)) = (s.op != SetOperation::SetopNone as i32 && s.op != 0, &s.larg) {
                    let seed = rename(flatten(self.select(l)), &names(&c.aliascolnames));
                    if let Some(slot) = self.ctes.get_mut(mark + i) {
                        slot.1 = Rc::new(seed);
                    }
                }
            }
        }
        let mut settled = false;
        for _ in 0..RECURSIVE_ROUNDS {
            let mut changed = false;
            for (i, c) in ctes.iter().enumerate() {
                let pieces = self.cte_body(c);
                if let Some(slot) = self.ctes.get_mut(mark + i) {
                    if *slot.1 != pieces {
                        slot.1 = Rc::new(pieces);
                        changed = true;
                    }
                }
            }
            if !changed || self.work > BUDGET {
                settled = !changed;
                break;
            }
        }
        if !settled {
            for slot in &mut self.ctes[mark..] {
                slot.1 = Rc::new(vec![Piece::Any(Sources { opaque: true, ..Sources::default() })]);
            }
        }
    }

    fn cte_body(&mut self, c: &'a protobuf::CommonTableExpr) -> Vec<Piece> {
        let Some(q) = c.ctequery.as_deref() else { return vec![Piece::Any(opaque())] };
        let pieces = flatten(self.query(q));
        rename(pieces, &names(&c.aliascolnames))
    }

    /// Adds the items of one FROM entry to the innermost level.
    fn add_from(&mut self, node: &'a Node) {
        let Some(n) = node.node.as_ref() else { return };
        match n.to_ref() {
            NodeRef::RangeVar(rv) => self.range_var(rv),
            NodeRef::RangeSubselect(rs) => {
                let pieces = match &rs.subquery {
                    Some(q) => self.detached(rs.lateral, |w| flatten(w.query(q))),
                    None => vec![Piece::Any(opaque())],
                };
                self.derived(pieces, rs.alias.as_ref());
            }
            NodeRef::RangeFunction(rf) => self.range_function(rf),
            NodeRef::JoinExpr(j) => {
                let start = self.levels.last().map_or(0, |l| l.items.len());
                if let Some(l) = &j.larg {
                    self.add_from(l);
                }
                if let Some(r) = &j.rarg {
                    self.add_from(r);
                }
                let Some(level) = self.levels.last_mut() else { return };
                let end = level.items.len();
                level.natural |= j.is_natural;
                level.merged.extend(names(&j.using_clause));
                for a in [&j.alias, &j.join_using_alias].into_iter().flatten() {
                    level.groups.push((a.aliasname.clone(), start..end));
                }
            }
            NodeRef::RangeTableSample(ts) => {
                if let Some(r) = &ts.relation {
                    self.add_from(r);
                }
            }
            NodeRef::RangeTableFunc(f) => {
                let src = self.children(NodeRef::RangeTableFunc(f));
                self.derived(vec![Piece::Any(src)], f.alias.as_ref());
            }
            NodeRef::JsonTable(f) => {
                let src = self.children(NodeRef::JsonTable(f));
                self.derived(vec![Piece::Any(src)], f.alias.as_ref());
            }
            _ => self.add_item(Item {
                name: None,
                schema: None,
                aliased: true,
                hidden: false,
                body: Body::Derived(Rc::new(vec![Piece::Any(opaque())])),
            }),
        }
    }

    /// Runs `f` without the innermost level in view unless `lateral`: a plain FROM subquery
    /// sees outer query levels but not its siblings.
    fn detached<T>(&mut self, lateral: bool, f: impl FnOnce(&mut Self) -> T) -> T {
        if lateral {
            return f(self);
        }
        let own = self.levels.pop();
        let out = f(self);
        if let Some(l) = own {
            self.levels.push(l);
        }
        out
    }

    fn range_var(&mut self, rv: &'a protobuf::RangeVar) {
        let cte = if rv.schemaname.is_empty() && rv.catalogname.is_empty() {
            self.ctes.iter().rev().find(|(n, _)| *n == rv.relname).map(|(_, p)| Rc::clone(p))
        } else {
            None
        };
        if let Some(pieces) = cte {
            let pieces = match &rv.alias {
                Some(a) if !a.colnames.is_empty() => Rc::new(rename(pieces.as_ref().clone(), &names(&a.colnames))),
                _ => pieces,
            };
            let name = rv.alias.as_ref().map_or_else(|| rv.relname.clone(), |a| a.aliasname.clone());
            self.add_item(Item {
                name: Some(name),
                schema: None,
                aliased: true,
                hidden: false,
                body: Body::Derived(pieces),
            });
            return;
        }
        let rel = relation(rv);
        let (name, schema, renamed) = match &rv.alias {
            Some(a) => (a.aliasname.clone(), None, !a.colnames.is_empty()),
            None => (rel.name.clone(), rel.schema.clone(), false),
        };
        let aliased = rv.alias.is_some();
        self.add_item(Item { name: Some(name), schema, aliased, hidden: false, body: Body::Base { rel, renamed } });
    }

    fn range_function(&mut self, rf: &'a protobuf::RangeFunction) {
        let mut src = Sources::default();
        let mut coldefs = names_of_coldefs(&rf.coldeflist);
        for f in &rf.functions {
            // Each entry is a list of the call and its own column definitions.
            match &f.node {
                Some(NodeEnum::List(l)) => {
                    if let Some(call) = l.items.first() {
                        let s = self.node(call);
                        self.union(&mut src, s);
                    }
                    if let Some(Some(NodeEnum::List(defs))) = l.items.get(1).map(|d| &d.node) {
                        coldefs.extend(names_of_coldefs(&defs.items));
                    }
                }
                _ => {
                    let s = self.node(f);
                    self.union(&mut src, s);
                }
            }
        }
        src.direct = false;
        let pieces = if coldefs.is_empty() {
            vec![Piece::Any(src)]
        } else {
            let mut p: Vec<Piece> =
                coldefs.into_iter().map(|n| Piece::Col { name: Some(n), src: src.clone() }).collect();
            if rf.ordinality {
                p.push(Piece::Col { name: None, src: Sources::default() });
            }
            p
        };
        self.derived(pieces, rf.alias.as_ref());
    }

    fn derived(&mut self, pieces: Vec<Piece>, alias: Option<&protobuf::Alias>) {
        let pieces = match alias {
            Some(a) => rename(pieces, &names(&a.colnames)),
            None => pieces,
        };
        let name = alias.map(|a| a.aliasname.clone());
        self.add_item(Item { name, schema: None, aliased: true, hidden: false, body: Body::Derived(Rc::new(pieces)) });
    }

    fn target(&mut self, node: &'a Node) -> Target {
        let (name, val) = match &node.node {
            Some(NodeEnum::ResTarget(rt)) => (Some(rt.name.as_str()).filter(|n| !n.is_empty()), rt.val.as_deref()),
            _ => (None, Some(node)),
        };
        let Some(val) = val else { return Target::column(None, opaque()) };
        if let Some(NodeEnum::ColumnRef(c)) = &val.node {
            if let Some((qual, Field::Star)) = split_last(&c.fields) {
                return self.star(&qual);
            }
        }
        let src = self.node(val);
        Target::column(name.map(str::to_owned).or_else(|| figure_name(val)), src)
    }

    /// `*` or `qual.*` as a target-list entry.
    fn star(&mut self, qual: &[&str]) -> Target {
        let items: Vec<Item> = if qual.is_empty() {
            self.levels.last().map(|l| l.items.iter().filter(|i| !i.hidden).cloned().collect()).unwrap_or_default()
        } else {
            self.qualified(qual).unwrap_or_default()
        };
        if items.is_empty() {
            return opaque_star();
        }
        let pieces: Vec<Piece> = items.iter().flat_map(Item::pieces).collect();
        let relations = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Base { rel, .. } => Some(rel.clone()),
                _ => None,
            })
            .collect();
        Target { star: true, pieces, relations }
    }

    /// The items a qualifier names (`t`, `s.t`, `db.s.t`), innermost level first.
    fn qualified(&self, qual: &[&str]) -> Option<Vec<Item>> {
        let (schema, name) = match qual {
            [name] => (None, *name),
            [.., schema, name] => (Some(*schema), *name),
            [] => return None,
        };
        for level in self.levels.iter().rev() {
            let mut found: Vec<Item> = Vec::new();
            if schema.is_none() {
                for (g, range) in &level.groups {
                    if g == name {
                        found.extend(level.items.get(range.clone()).unwrap_or_default().iter().cloned());
                    }
                }
            }
            for item in &level.items {
                let hit = item.name.as_deref() == Some(name)
                    && match schema {
                        None => true,
                        // `s.t.x` names a relation written without alias, with or without
                        // its schema.
                        Some(s) => {
                            !item.aliased
                                && matches!(item.body, Body::Base { .. })
                                && item.schema.as_deref().is_none_or(|is| is == s)
                        }
                    };
                if hit {
                    found.push(item.clone());
                }
            }
            if !found.is_empty() {
                return Some(found);
            }
        }
        None
    }

    /// The sources of an expression.
    fn node(&mut self, node: &'a Node) -> Sources {
        match &node.node {
            Some(n) => self.expr(n.to_ref()),
            None => Sources::default(),
        }
    }

    fn expr(&mut self, node: NodeRef<'a>) -> Sources {
        if !self.spend(1) {
            return opaque();
        }
        match node {
            NodeRef::ColumnRef(c) => self.column_ref(c),
            NodeRef::SelectStmt(s) => {
                let targets = self.select(s);
                let mut src = Sources::default();
                for p in targets.iter().flat_map(|t| &t.pieces) {
                    self.union(&mut src, p.sources());
                }
                src.direct = false;
                src
            }
            NodeRef::FuncCall(f) => self.func_call(f),
            NodeRef::AConst(_)
            | NodeRef::ParamRef(_)
            | NodeRef::SqlvalueFunction(_)
            | NodeRef::SetToDefault(_)
            | NodeRef::String(_)
            | NodeRef::Integer(_)
            | NodeRef::Float(_)
            | NodeRef::Boolean(_)
            | NodeRef::BitString(_)
            | NodeRef::TypeName(_)
            | NodeRef::MergeSupportFunc(_)
            | NodeRef::JsonFormat(_)
            | NodeRef::Alias(_)
            // `(expr).*`: the expression already carries the sources.
            | NodeRef::AStar(_) => Sources::default(),
            NodeRef::AExpr(_)
            | NodeRef::BoolExpr(_)
            | NodeRef::NullTest(_)
            | NodeRef::BooleanTest(_)
            | NodeRef::TypeCast(_)
            | NodeRef::CollateClause(_)
            | NodeRef::CaseExpr(_)
            | NodeRef::CaseWhen(_)
            | NodeRef::CoalesceExpr(_)
            | NodeRef::MinMaxExpr(_)
            | NodeRef::AArrayExpr(_)
            | NodeRef::RowExpr(_)
            | NodeRef::AIndirection(_)
            | NodeRef::AIndices(_)
            | NodeRef::SubLink(_)
            | NodeRef::GroupingFunc(_)
            | NodeRef::XmlExpr(_)
            | NodeRef::XmlSerialize(_)
            | NodeRef::NamedArgExpr(_)
            | NodeRef::ResTarget(_)
            | NodeRef::SortBy(_)
            | NodeRef::WindowDef(_)
            | NodeRef::List(_)
            | NodeRef::RangeTableFuncCol(_)
            | NodeRef::JsonValueExpr(_)
            | NodeRef::JsonKeyValue(_)
            | NodeRef::JsonObjectConstructor(_)
            | NodeRef::JsonArrayConstructor(_)
            | NodeRef::JsonArrayQueryConstructor(_)
            | NodeRef::JsonAggConstructor(_)
            | NodeRef::JsonObjectAgg(_)
            | NodeRef::JsonArrayAgg(_)
            | NodeRef::JsonFuncExpr(_)
            | NodeRef::JsonParseExpr(_)
            | NodeRef::JsonScalarExpr(_)
            | NodeRef::JsonSerializeExpr(_)
            | NodeRef::JsonIsPredicate(_)
            | NodeRef::JsonOutput(_)
            | NodeRef::JsonReturning(_)
            | NodeRef::JsonBehavior(_)
            | NodeRef::JsonArgument(_)
            | NodeRef::JsonTablePathSpec(_)
            | NodeRef::JsonTableColumn(_) => self.children(node),
            _ => opaque(),
        }
    }

    /// The union of a node's children: a value computed from them, so never direct.
    fn children(&mut self, node: NodeRef<'a>) -> Sources {
        let mut kids = Vec::new();
        walk::children(node, &mut kids);
        let mut src = Sources::default();
        for k in kids {
            let s = self.expr(k);
            self.union(&mut src, s);
        }
        src.direct = false;
        src
    }

    fn func_call(&mut self, f: &'a protobuf::FuncCall) -> Sources {
        let mut src = self.children(NodeRef::FuncCall(f));
        let part = |n: &'a protobuf::Node| match &n.node {
            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        };
        let name = f.funcname.last().and_then(part);
        let schema = f.funcname.len().checked_sub(2).and_then(|i| f.funcname.get(i)).and_then(part);
        // Functions that run SQL text read what the text says.
        if name.is_some_and(|n| is_dynamic_sql(schema, n, &f.args)) {
            src.opaque = true;
        }
        if let Some(over) = &f.over {
            // `OVER w` and `OVER (w …)` take partitioning and ordering from the WINDOW clause.
            let windows = self.levels.last().map(|l| l.windows).unwrap_or_default();
            let mut next: Vec<&str> =
                [over.name.as_str(), over.refname.as_str()].into_iter().filter(|n| !n.is_empty()).collect();
            let mut hops = 0;
            while let Some(want) = next.pop() {
                hops += 1;
                if hops > windows.len() + 2 {
                    break;
                }
                for w in windows {
                    if let Some(NodeEnum::WindowDef(d)) = &w.node {
                        if d.name == want {
                            for n in d.partition_clause.iter().chain(&d.order_clause) {
                                let s = self.node(n);
                                self.union(&mut src, s);
                            }
                            if !d.refname.is_empty() {
                                next.push(d.refname.as_str());
                            }
                        }
                    }
                }
            }
        }
        src.direct = false;
        src
    }

    fn column_ref(&mut self, c: &'a protobuf::ColumnRef) -> Sources {
        let Some((qual, last)) = split_last(&c.fields) else { return opaque() };
        match (qual.as_slice(), last) {
            ([], Field::Name(x)) => self.single(x),
            ([], Field::Star) => {
                let items: Vec<Item> = self.levels.last().map(|l| l.items.clone()).unwrap_or_default();
                self.rows_of(&items)
            }
            (q, Field::Star) => match self.qualified(q) {
                Some(items) => self.rows_of(&items),
                None => opaque(),
            },
            (&[t], Field::Name(x)) => match self.qualified(&[t]) {
                Some(items) => self.column_in(&items, x),
                // `a.b` where `a` is no relation: field `b` of column `a`.
                None => field_of(self.single(t)),
            },
            (&[a, b], Field::Name(x)) => match self.qualified(&[a, b]) {
                Some(items) => self.column_in(&items, x),
                None => match self.qualified(&[a]) {
                    Some(items) => field_of(self.column_in(&items, b)),
                    None => field_of(self.single(a)),
                },
            },
            (&[_, a, b], Field::Name(x)) => match self.qualified(&[a, b]) {
                Some(items) => self.column_in(&items, x),
                None => opaque(),
            },
            _ => opaque(),
        }
    }

    fn rows_of(&mut self, items: &[Item]) -> Sources {
        if items.is_empty() {
            return opaque();
        }
        let mut src = Sources::default();
        for i in items {
            if !self.spend(i.width()) {
                return opaque();
            }
            let s = i.whole_row();
            self.union(&mut src, s);
        }
        src.direct = false;
        src
    }

    /// Column `x` of the given items (one qualifier's worth).
    fn column_in(&mut self, items: &[Item], x: &str) -> Sources {
        let mut found = Found::new();
        for item in items {
            match &item.body {
                Body::Base { rel, renamed } => found.base(rel, *renamed),
                Body::Derived(p) => {
                    found.pieces(p, x);
                }
            }
        }
        let _ = self.spend(found.src.columns.len() + found.src.rows.len());
        found.finish(x).unwrap_or_else(opaque)
    }

    /// An unqualified name: a column of some item in scope, innermost level first, and
    /// also the whole row of an item so named.
    fn single(&mut self, x: &str) -> Sources {
        let mut found = Found::new();
        for level in self.levels.iter().rev() {
            let mut named = false;
            let mut level_found = Found::new();
            for item in level.items.iter().filter(|i| !i.hidden) {
                match &item.body {
                    Body::Base { rel, renamed } => level_found.base(rel, *renamed),
                    Body::Derived(p) => named |= level_found.pieces(p, x),
                }
            }
            let merged = level.natural || level.merged.iter().any(|m| m == x);
            if named && !merged {
                // A derived column of that name binds here; base relations cannot also
                // have it in a statement that runs.
                let mut only = Found::new();
                for item in level.items.iter().filter(|i| !i.hidden) {
                    if let Body::Derived(p) = &item.body {
                        if p.iter().any(|q| matches!(q, Piece::Col { name: Some(n), .. } if n == x)) {
                            only.pieces(p, x);
                        }
                    }
                }
                level_found = only;
            }
            found.direct &= level_found.direct;
            found.any |= level_found.any;
            found.merged |= merged && !level_found.bases.is_empty();
            merge(&mut found.src, level_found.src);
            for b in level_found.bases {
                if !found.bases.contains(&b) {
                    found.bases.push(b);
                }
            }
            if named {
                break;
            }
        }
        let whole = self.qualified(&[x]).map(|items| self.rows_of(&items));
        let mut src = match found.finish(x) {
            Some(s) => s,
            None if whole.is_some() => Sources::default(),
            None => opaque(),
        };
        if let Some(w) = whole {
            merge(&mut src, w);
            src.direct = false;
        }
        let _ = self.spend(src.columns.len() + src.rows.len());
        src
    }
}

enum Field<'n> {
    Name(&'n str),
    Star,
}

/// A ColumnRef's qualifier names and its last field; None for shapes that are not names.
fn split_last(fields: &[Node]) -> Option<(Vec<&str>, Field<'_>)> {
    let (last, qual) = fields.split_last()?;
    let qual = qual
        .iter()
        .map(|f| match &f.node {
            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let last = match &last.node {
        Some(NodeEnum::String(s)) => Field::Name(s.sval.as_str()),
        Some(NodeEnum::AStar(_)) => Field::Star,
        _ => return None,
    };
    Some((qual, last))
}

fn field_of(mut s: Sources) -> Sources {
    s.direct = false;
    s
}

fn merge(into: &mut Sources, s: Sources) {
    into.columns.extend(s.columns);
    into.rows.extend(s.rows);
    into.opaque |= s.opaque;
}

fn opaque() -> Sources {
    Sources { opaque: true, ..Sources::default() }
}

fn opaque_star() -> Target {
    Target { star: true, pieces: vec![Piece::Any(opaque())], relations: Vec::new() }
}

fn column(table: Option<Relation>, column: String) -> Sources {
    Sources { columns: [ColumnSource { table, column }].into(), direct: true, ..Sources::default() }
}

fn relation(rv: &protobuf::RangeVar) -> Relation {
    Relation { schema: (!rv.schemaname.is_empty()).then(|| rv.schemaname.clone()), name: rv.relname.clone() }
}

fn flatten(targets: Vec<Target>) -> Vec<Piece> {
    targets.into_iter().flat_map(|t| t.pieces).collect()
}

/// Renames positions by an alias column list. Past a piece of unknown width positions
/// cannot be matched: the names left over may then be any of the remaining columns.
fn rename(pieces: Vec<Piece>, names: &[String]) -> Vec<Piece> {
    if names.is_empty() {
        return pieces;
    }
    let mut out = Vec::with_capacity(pieces.len());
    let mut names = names.iter();
    let mut rest = pieces.into_iter();
    for p in rest.by_ref() {
        match p {
            Piece::Col { name, src } => {
                out.push(Piece::Col { name: names.next().cloned().or(name), src });
            }
            other => {
                let mut src = other.sources();
                let remaining: Vec<Piece> = rest.by_ref().collect();
                for r in &remaining {
                    merge(&mut src, r.sources());
                }
                src.direct = false;
                for n in names.by_ref() {
                    out.push(Piece::Col { name: Some(n.clone()), src: src.clone() });
                }
                out.push(Piece::Any(src));
                break;
            }
        }
        if names.len() == 0 {
            out.extend(rest.by_ref());
            break;
        }
    }
    out
}

/// Plain names from a list of String nodes (alias columns, USING, COPY columns).
fn names(list: &[Node]) -> Vec<String> {
    list.iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

fn names_of_coldefs(list: &[Node]) -> Vec<String> {
    list.iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::ColumnDef(d)) => Some(d.colname.clone()),
            _ => None,
        })
        .collect()
}

/// The output name PostgreSQL gives an unaliased target, for the shapes where it is
/// certain; None stands for a name the walker does not know.
fn figure_name(val: &Node) -> Option<String> {
    match val.node.as_ref()? {
        NodeEnum::ColumnRef(c) => match split_last(&c.fields)? {
            (_, Field::Name(n)) => Some(n.to_owned()),
            (_, Field::Star) => None,
        },
        NodeEnum::AIndirection(i) => i
            .indirection
            .iter()
            .rev()
            .find_map(|n| match &n.node {
                Some(NodeEnum::String(s)) => Some(s.sval.clone()),
                _ => None,
            })
            .or_else(|| figure_name(i.arg.as_deref()?)),
        NodeEnum::FuncCall(f) => match &f.funcname.last()?.node {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        },
        NodeEnum::TypeCast(t) => figure_name(t.arg.as_deref()?),
        NodeEnum::CollateClause(c) => figure_name(c.arg.as_deref()?),
        NodeEnum::CaseExpr(_) => Some("case".into()),
        NodeEnum::CoalesceExpr(_) => Some("coalesce".into()),
        NodeEnum::RowExpr(_) => Some("row".into()),
        NodeEnum::AArrayExpr(_) => Some("array".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, column: &str) -> Piece {
        Piece::Col { name: Some(name.into()), src: super::column(None, column.into()) }
    }

    #[test]
    fn rename_maps_positions_until_a_star_of_unknown_width() {
        let names = ["x".to_owned(), "y".to_owned(), "z".to_owned()];
        let out = rename(vec![col("a", "a"), col("b", "b")], &names[..1]);
        assert_eq!(out, vec![col("x", "a"), col("b", "b")]);
        let users = Relation { schema: None, name: "users".into() };
        let out = rename(vec![col("a", "a"), Piece::Base { rel: users.clone(), renamed: false }], &names);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], col("x", "a"));
        // `y` and `z` may be any column of users.
        let Piece::Col { name: Some(n), src } = &out[1] else { panic!("{out:?}") };
        assert_eq!(n, "y");
        assert!(src.rows.contains(&users) && !src.direct);
        assert!(matches!(&out[3], Piece::Any(s) if s.rows.contains(&users)));
    }

    #[test]
    fn unknown_expression_nodes_fail_closed() {
        let mut w = Lin { levels: Vec::new(), ctes: Vec::new(), work: 0 };
        let var = protobuf::Var::default();
        assert!(w.expr(NodeRef::Var(&var)).opaque);
        let c = protobuf::AConst::default();
        assert!(w.expr(NodeRef::AConst(&c)).is_empty());
    }

    #[test]
    fn work_past_the_budget_is_opaque() {
        let mut w = Lin { levels: Vec::new(), ctes: Vec::new(), work: BUDGET };
        let c = protobuf::AConst::default();
        assert!(w.expr(NodeRef::AConst(&c)).opaque);
    }
}
