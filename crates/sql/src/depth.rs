//! A cheap upper bound on parse-tree nesting, computed before parsing.
//!
//! The parser's C code guards its own recursion, but decoding and dropping the tree on
//! the Rust side recurse once per level with no guard, so the depth must be known (and
//! bounded) before the tree exists.

use crate::Error;
use pg_query::protobuf::Token;

/// Implicit levels every statement may add above what its tokens account for (RawStmt,
/// SelectStmt, ResTarget, TypeName and the leaves under a cast).
pub(crate) const SLACK: usize = 16;

/// Upper bound on node levels of the tree `text` parses into.
///
/// Every level of nesting consumes at least one byte (the densest form is a chain of
/// unary operators, `-+-+…1`), so a text no longer than the limit needs no closer look.
/// Longer texts are tokenised with PostgreSQL's own lexer and bounded per bracket group:
/// comma-separated items and set-operation branches are siblings, so a group costs its
/// longest item in tokens, plus its chain of set operations, plus its deepest inner group.
pub(crate) fn bound(text: &str, max_depth: usize) -> Result<usize, Error> {
    if text.len() <= max_depth {
        return Ok(text.len() + SLACK);
    }
    let scanned = pg_query::scan(text).map_err(|e| Error::Syntax(crate::parse::message(e)))?;
    let depth = groups(scanned.tokens.iter().map(|t| t.token)) + SLACK;
    if depth > max_depth + SLACK {
        return Err(Error::TooDeep { max: max_depth });
    }
    Ok(depth)
}

#[derive(Default, Clone, Copy)]
struct Group {
    item: usize,
    longest_item: usize,
    set_ops: usize,
    /// AND / OR chains are flattened by the parser: at most an OR over ANDs.
    bool_levels: usize,
    deepest_inner: usize,
}

impl Group {
    fn value(&self) -> usize {
        self.item.max(self.longest_item) + self.set_ops + self.bool_levels + self.deepest_inner
    }
}

fn groups(tokens: impl Iterator<Item = i32>) -> usize {
    const OPEN: [i32; 2] = [Token::Ascii40 as i32, Token::Ascii91 as i32];
    const CLOSE: [i32; 2] = [Token::Ascii41 as i32, Token::Ascii93 as i32];
    const SEPARATORS: [i32; 2] = [Token::Ascii44 as i32, Token::Ascii59 as i32];
    const SET_OPS: [i32; 3] = [Token::Union as i32, Token::Intersect as i32, Token::Except as i32];
    const LEAVES: [i32; 8] = [
        Token::Iconst as i32,
        Token::Fconst as i32,
        Token::Sconst as i32,
        Token::Usconst as i32,
        Token::Bconst as i32,
        Token::Xconst as i32,
        Token::SqlComment as i32,
        Token::CComment as i32,
    ];
    // A bracket group may itself be a node (sub-select, row, array, call): 2 levels.
    const GROUP_COST: usize = 2;

    let mut stack = vec![Group::default()];
    let mut deepest = 0;
    let close = |stack: &mut Vec<Group>| {
        if let Some(g) = stack.pop() {
            let v = g.value() + GROUP_COST;
            if let Some(parent) = stack.last_mut() {
                parent.deepest_inner = parent.deepest_inner.max(v);
            }
        }
    };
    for tok in tokens {
        if OPEN.contains(&tok) {
            stack.push(Group::default());
        } else if CLOSE.contains(&tok) {
            // An unbalanced ')' is a syntax error the parser will report.
            if stack.len() > 1 {
                close(&mut stack);
            }
        } else if SEPARATORS.contains(&tok) {
            if let Some(g) = stack.last_mut() {
                g.longest_item = g.longest_item.max(g.item);
                g.item = 0;
            }
            if tok == Token::Ascii59 as i32 && stack.len() == 1 {
                deepest = deepest.max(stack[0].value());
                stack[0] = Group::default();
            }
        } else if !LEAVES.contains(&tok) {
            if let Some(g) = stack.last_mut() {
                // Set-operation branches are siblings under a chain of set operations.
                if SET_OPS.contains(&tok) {
                    g.longest_item = g.longest_item.max(g.item);
                    g.item = 0;
                    g.set_ops += 1;
                } else if tok == Token::And as i32 || tok == Token::Or as i32 {
                    g.longest_item = g.longest_item.max(g.item);
                    g.item = 0;
                    g.bool_levels = 2;
                } else {
                    g.item += 1;
                }
            }
        }
    }
    while stack.len() > 1 {
        close(&mut stack);
    }
    deepest.max(stack.first().map_or(0, Group::value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(sql: &str) -> usize {
        groups(pg_query::scan(sql).unwrap().tokens.iter().map(|t| t.token))
    }

    #[test]
    fn lists_are_siblings_but_chains_add_up() {
        let list = format!("SELECT 1 WHERE x IN ({})", vec!["1"; 500].join(","));
        assert!(est(&list) < 20, "{}", est(&list));
        let sum = format!("SELECT 1{}", "+1".repeat(300));
        assert!(est(&sum) >= 300);
        let unions = format!("SELECT 1, 2{}", " UNION SELECT 1, 2".repeat(300));
        assert!(est(&unions) >= 300);
        let ors = format!("SELECT 1 WHERE {}", vec!["a = 1 AND b = 2"; 500].join(" OR "));
        assert!(est(&ors) < 20, "{}", est(&ors));
        let nested_and = format!("SELECT {}true{}", "true AND (".repeat(100), ")".repeat(100));
        assert!(est(&nested_and) >= 300);
        let nested = format!("SELECT {}1{}", "(SELECT ".repeat(100), ")".repeat(100));
        assert!(est(&nested) >= 300);
    }

    #[test]
    fn statements_are_bounded_separately() {
        let many = "SELECT 1+1+1+1;".repeat(400);
        assert!(est(&many) < 20);
    }
}
