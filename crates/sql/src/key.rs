//! Which columns an UPDATE or DELETE pins to single values. With the catalog's unique keys
//! this tells the gateway a statement changes at most one row.

use std::sync::Arc;

use pg_query::protobuf::{self, a_const, AExprKind, BoolExprType};
use pg_query::NodeEnum;

use crate::facts::{Pinned, Relation};

/// The pins of a top-level UPDATE or DELETE on one relation, with no WITH, FROM or USING,
/// whose WHERE clause is a conjunction with at least one `column = constant` or
/// `column = $n`. Anything else (OR, casts, operators spelled with a schema, a column of
/// another relation) pins nothing; the caller then treats the statement as unbounded.
pub(crate) fn of_statement(top: &NodeEnum) -> Option<Arc<Pinned>> {
    let (relation, filter) = match top {
        NodeEnum::UpdateStmt(s) if s.with_clause.is_none() && s.from_clause.is_empty() => {
            (s.relation.as_ref()?, s.where_clause.as_deref()?)
        }
        NodeEnum::DeleteStmt(s) if s.with_clause.is_none() && s.using_clause.is_empty() => {
            (s.relation.as_ref()?, s.where_clause.as_deref()?)
        }
        _ => return None,
    };
    if !relation.catalogname.is_empty() {
        return None;
    }
    let qualifier = match &relation.alias {
        Some(a) => a.aliasname.as_str(),
        None => relation.relname.as_str(),
    };
    let mut columns = Vec::new();
    conjuncts(filter, qualifier, &mut columns, 0);
    if columns.is_empty() {
        return None;
    }
    columns.sort_unstable();
    columns.dedup();
    let schema = (!relation.schemaname.is_empty()).then(|| relation.schemaname.clone());
    Some(Arc::new(Pinned { table: Relation { schema, name: relation.relname.clone() }, columns }))
}

/// Bounded so a deeply nested AND (already depth-checked by the parser guard) cannot
/// recurse without limit here either.
const MAX_DEPTH: usize = 64;

fn conjuncts(node: &protobuf::Node, qualifier: &str, out: &mut Vec<(String, Option<u32>)>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match node.node.as_ref() {
        Some(NodeEnum::BoolExpr(b)) if b.boolop == BoolExprType::AndExpr as i32 => {
            for a in &b.args {
                conjuncts(a, qualifier, out, depth + 1);
            }
        }
        Some(NodeEnum::AExpr(e)) if e.kind == AExprKind::AexprOp as i32 && is_plain_equals(&e.name) => {
            let (Some(l), Some(r)) = (e.lexpr.as_deref(), e.rexpr.as_deref()) else { return };
            let pin = match (column(l, qualifier), value(r)) {
                (Some(c), Some(v)) => Some((c, v)),
                _ => column(r, qualifier).zip(value(l)),
            };
            if let Some((c, v)) = pin {
                out.push((c, v));
            }
        }
        _ => {}
    }
}

/// `=` as written, not `OPERATOR(schema.=)`.
fn is_plain_equals(name: &[protobuf::Node]) -> bool {
    matches!(name, [n] if matches!(&n.node, Some(NodeEnum::String(s)) if s.sval == "="))
}

/// A column of the target: `col` or `qualifier.col`.
fn column(node: &protobuf::Node, qualifier: &str) -> Option<String> {
    let Some(NodeEnum::ColumnRef(c)) = node.node.as_ref() else { return None };
    let names: Vec<&str> = c
        .fields
        .iter()
        .map(|f| match &f.node {
            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    match names.as_slice() {
        [col] => Some((*col).to_owned()),
        [q, col] if *q == qualifier => Some((*col).to_owned()),
        _ => None,
    }
}

/// A single value: a literal (`None`) or a parameter (`Some(n)`). NULL matches no row, so it
/// pins too.
fn value(node: &protobuf::Node) -> Option<Option<u32>> {
    match node.node.as_ref()? {
        NodeEnum::AConst(c) => match &c.val {
            None | Some(a_const::Val::Ival(_) | a_const::Val::Fval(_) | a_const::Val::Sval(_)) => Some(None),
            Some(_) => None,
        },
        NodeEnum::ParamRef(p) => u32::try_from(p.number).ok().filter(|n| *n > 0).map(Some),
        _ => None,
    }
}
