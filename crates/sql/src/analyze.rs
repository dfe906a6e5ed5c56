//! Turns a parse tree into [`Statement`] facts.
//!
//! The walk is iterative (an explicit stack) and covers every node type through the
//! generated child table in `walk.rs`, so nesting depth never costs call stack here and a
//! statement hidden inside an unfamiliar node is still found.

use crate::facts::{Analysis, CopyOptions, Function, Operation, Statement, Table, Transaction};
use crate::{key, lineage, walk, Error};
use pg_query::protobuf::{
    self, a_const, DiscardMode, ObjectType, RoleStmtType, SetOperation, TransactionStmtKind,
    VariableSetKind,
};
use pg_query::{NodeEnum, NodeRef};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// Functions whose argument is SQL text they run, so their effect cannot be seen here.
pub(crate) const DYNAMIC_SQL: &[&str] = &[
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    // Text search: `ts_stat(sqlquery [, weights])` and `ts_rewrite(query, select)` run
    // their text argument through SPI.
    "ts_stat",
    "ts_rewrite",
    "dblink",
    "dblink_exec",
    "dblink_open",
    "dblink_send_query",
    // tablefunc: crosstab runs its query texts; connectby pastes its (unquoted) relation
    // and column arguments into a query it runs.
    "crosstab",
    "crosstab2",
    "crosstab3",
    "crosstab4",
    "connectby",
    // xml2: xpath_table pastes its relation and criteria arguments into a query it runs.
    "xpath_table",
    // pg_background runs its text in a background worker; pg_cron's per-database variant
    // (its other entry points are in SQL_SCHEDULERS).
    "pg_background_launch",
    "schedule_in_database",
    // Read whole tables named by their arguments, out of sight of the tables a rule or
    // masking sees.
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
];

/// Settings that change how the target reads SQL text.
fn is_lexing_setting(name: &str) -> bool {
    name == "client_encoding" || name == "standard_conforming_strings"
}

/// Client encodings in which a byte that looks like a quote or backslash may be part of a
/// multi-byte character, by every name PostgreSQL accepts for them (compared as PostgreSQL
/// does: lower case, letters and digits only).
const UNSAFE_ENCODINGS: &[&str] = &[
    "sjis", "shiftjis", "mskanji", "win932", "windows932", "shiftjis2004", "big5", "win950",
    "windows950", "gbk", "win936", "windows936", "uhc", "win949", "windows949", "gb18030", "johab",
];

/// Whether SQL text in client encoding `name` reads the same to the gateway as to the target.
pub fn encoding_is_safe(name: &str) -> bool {
    let key: String = name.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
    !UNSAFE_ENCODINGS.contains(&key.as_str())
}

/// Why giving lexing setting `name` the constant `value` (`None`: not a constant) must be
/// refused: after it the target would read SQL text differently from the gateway's parser.
fn unsupported_lexing(name: &str, value: Option<&a_const::Val>) -> Option<String> {
    let text = match value {
        Some(a_const::Val::Sval(s)) => Some(s.sval.to_ascii_lowercase()),
        Some(a_const::Val::Ival(i)) => Some(i.ival.to_string()),
        _ => None,
    };
    let supported = match (name, text.as_deref()) {
        // The spellings PostgreSQL reads as true.
        ("standard_conforming_strings", Some(v)) => ["t", "tr", "tru", "true", "y", "ye", "yes", "on", "1"].contains(&v),
        ("client_encoding", Some(v)) => encoding_is_safe(v),
        _ => false,
    };
    (!supported).then(|| match name {
        "standard_conforming_strings" => {
            "standard_conforming_strings must stay on: with it off, the target would read backslashes in later SQL differently from the gateway".into()
        }
        _ => "this client_encoding is not supported (its characters can hold a quote or backslash byte); use UTF8".into(),
    })
}

/// Extension functions that queue SQL text to run later in another session (pg_cron). With
/// their schema they always count; bare names are common words, see `runs_scheduled_sql`.
const SQL_SCHEDULERS: &[(&str, &str)] = &[("cron", "schedule"), ("cron", "alter_job")];

/// Whether a call of `schema.name` with `args` runs SQL text. `ts_rewrite` runs SQL only in
/// its two-argument form; `ts_rewrite(query, target, substitute)` takes tsqueries.
pub(crate) fn is_dynamic_sql(schema: Option<&str>, name: &str, args: &[protobuf::Node]) -> bool {
    (DYNAMIC_SQL.contains(&name) && !(name == "ts_rewrite" && args.len() == 3))
        || match schema {
            Some(s) => SQL_SCHEDULERS.contains(&(s, name)),
            None => runs_scheduled_sql(name, args),
        }
}

/// A pg_cron entry point called without its schema (`cron` on the search path): a bare
/// `schedule` or `alter_job` whose command argument is SQL text, or is computed. A function
/// of the user's own by that name passes unless it is given SQL text in that place.
fn runs_scheduled_sql(name: &str, args: &[protobuf::Node]) -> bool {
    if name != "schedule" && name != "alter_job" {
        return false;
    }
    let named = args.iter().find_map(|a| match &a.node {
        Some(NodeEnum::NamedArgExpr(n)) if n.name.eq_ignore_ascii_case("command") => n.arg.as_deref(),
        _ => None,
    });
    let positional = || {
        let at = match (name, args.len()) {
            ("schedule", 2) => 1,
            ("schedule", 3) | ("alter_job", 3..) => 2,
            _ => return None,
        };
        args.get(at)
    };
    match named.or_else(positional).and_then(|c| c.node.as_ref()) {
        None => false,
        Some(NodeEnum::AConst(c)) => match &c.val {
            Some(a_const::Val::Sval(s)) => parses_as_sql(&s.sval),
            _ => false,
        },
        Some(_) => true,
    }
}

/// Whether `text` holds at least one SQL statement. Fails closed (true) on text too deep to
/// parse safely on what is left of this thread's stack.
fn parses_as_sql(text: &str) -> bool {
    const MAX_LEVELS: usize = 200;
    match crate::depth::bound(text, MAX_LEVELS) {
        Ok(levels) if stacker::remaining_stack().is_some_and(|left| left >= crate::parse::stack_for(levels)) => {
            pg_query::parse(text, 0).is_ok_and(|r| !r.protobuf.stmts.is_empty())
        }
        Ok(_) => true,
        Err(Error::Syntax(_)) => false,
        Err(_) => true,
    }
}

/// Facts plus whether any fact was derived from a constant's value (such facts must not be
/// shared between texts that differ only in constants).
pub(crate) struct Outcome {
    pub analysis: Analysis,
    pub read_constants: bool,
}

/// CTE names visible at a point of the tree.
struct Scope {
    names: Vec<String>,
    parent: Option<Rc<Scope>>,
}

impl Scope {
    fn contains(scope: &Option<Rc<Scope>>, name: &str) -> bool {
        let mut cur = scope.as_deref();
        while let Some(s) = cur {
            if s.names.iter().any(|n| n == name) {
                return true;
            }
            cur = s.parent.as_deref();
        }
        false
    }
}

#[derive(Clone, Default)]
struct Ctx {
    /// Inside a plain EXPLAIN: the statement is planned, not run.
    inert: bool,
    /// This relation is written (DML target, DDL object, COPY FROM target).
    write: bool,
    scope: Option<Rc<Scope>>,
}

pub(crate) fn analyze(text: &str, tree: &protobuf::ParseResult) -> Result<Outcome, Error> {
    let mut read_constants = false;
    let mut statements = Vec::with_capacity(tree.stmts.len());
    for raw in &tree.stmts {
        let Some(top) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else { continue };
        let start = usize::try_from(raw.stmt_location).unwrap_or(0).min(text.len());
        let end = match usize::try_from(raw.stmt_len) {
            Ok(0) | Err(_) => text.len(),
            Ok(len) => start.saturating_add(len).min(text.len()),
        };
        let mut w = Walker::new(start, end, top.to_ref());
        w.run(top.to_ref());
        if let Some(reason) = w.unsupported.take() {
            return Err(Error::Unsupported(reason));
        }
        read_constants |= w.read_constants;
        let mut st = w.finish(top.to_ref());
        st.result = lineage::of_statement(top.to_ref());
        st.pinned = key::of_statement(top);
        if let NodeEnum::CopyStmt(c) = top {
            if !c.is_from {
                // Option values are literals: facts that depend on them hold for this text only.
                read_constants |= !c.options.is_empty();
                st.copy = Some(copy_options(c));
            }
        }
        statements.push(st);
    }
    Ok(Outcome { analysis: Analysis { statements }, read_constants })
}

struct Walker<'a> {
    st: Statement,
    tables: Vec<Table>,
    stack: Vec<(NodeRef<'a>, Ctx)>,
    buf: Vec<NodeRef<'a>>,
    dml_nodes: usize,
    read_constants: bool,
    /// Why the statement cannot be let through whatever the policy says.
    unsupported: Option<String>,
}

impl<'a> Walker<'a> {
    fn new(start: usize, end: usize, top: NodeRef<'_>) -> Self {
        Walker {
            st: Statement {
                start,
                end,
                command: command_tag(top),
                operations: BTreeSet::new(),
                tables: BTreeSet::new(),
                functions: BTreeSet::new(),
                transaction: None,
                prepares: None,
                executes: None,
                deallocates: None,
                rows_countable: false,
                result: None,
                pinned: None,
                copy: None,
                changes_lexing: false,
            },
            tables: Vec::new(),
            stack: Vec::new(),
            buf: Vec::new(),
            dml_nodes: 0,
            read_constants: false,
            unsupported: None,
        }
    }

    fn run(&mut self, top: NodeRef<'a>) {
        self.stack.push((top, Ctx::default()));
        while let Some((node, ctx)) = self.stack.pop() {
            self.visit(node, &ctx);
            self.push_children(node, ctx);
        }
    }

    fn finish(mut self, top: NodeRef<'_>) -> Statement {
        // One entry per relation; written if any mention writes it.
        let mut merged: BTreeMap<(Option<String>, String), bool> = BTreeMap::new();
        for t in self.tables.drain(..) {
            *merged.entry((t.schema, t.name)).or_insert(false) |= t.write;
        }
        self.st.tables = merged.into_iter().map(|((schema, name), write)| Table { schema, name, write }).collect();
        let dml_top = matches!(
            top,
            NodeRef::InsertStmt(_) | NodeRef::UpdateStmt(_) | NodeRef::DeleteStmt(_) | NodeRef::MergeStmt(_)
        );
        // For PREPARE the flag describes the body, which is what each EXECUTE will run.
        let prepared_dml = match top {
            NodeRef::PrepareStmt(p) => p.query.as_ref().and_then(|q| q.node.as_ref()).is_some_and(|n| {
                matches!(
                    n,
                    pg_query::NodeEnum::InsertStmt(_)
                        | pg_query::NodeEnum::UpdateStmt(_)
                        | pg_query::NodeEnum::DeleteStmt(_)
                        | pg_query::NodeEnum::MergeStmt(_)
                )
            }),
            _ => false,
        };
        self.st.rows_countable = ((dml_top || prepared_dml) && self.dml_nodes == 1)
            || matches!(top, NodeRef::ExecuteStmt(_));
        self.st
    }

    fn op(&mut self, ctx: &Ctx, op: Operation) {
        if !ctx.inert {
            self.st.operations.insert(op);
        }
    }

    fn table(&mut self, schema: &str, name: &str, write: bool) {
        let schema = (!schema.is_empty()).then(|| schema.to_owned());
        self.tables.push(Table { schema, name: name.to_owned(), write });
    }

    fn push_children(&mut self, node: NodeRef<'a>, ctx: Ctx) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        walk::children(node, &mut buf);
        let with = with_clause(node);
        let inner_scope = match with {
            Some(w) if !w.ctes.is_empty() => Some(Rc::new(Scope {
                names: w.ctes.iter().filter_map(cte_name).map(str::to_owned).collect(),
                parent: ctx.scope.clone(),
            })),
            _ => ctx.scope.clone(),
        };
        let inert = ctx.inert || matches!(node, NodeRef::ExplainStmt(e) if !explain_analyze(e, &mut self.read_constants));
        for child in buf.drain(..) {
            if let (NodeRef::WithClause(c), Some(w)) = (child, with) {
                if std::ptr::eq(c, w) {
                    self.push_ctes(w, &ctx, inert);
                    continue;
                }
            }
            let write = is_write_target(node, child);
            self.stack.push((child, Ctx { inert, write, scope: inner_scope.clone() }));
        }
        self.buf = buf;
    }

    /// A CTE body sees the CTEs before it, and all of them (itself included) when RECURSIVE.
    fn push_ctes(&mut self, w: &'a protobuf::WithClause, ctx: &Ctx, inert: bool) {
        let names: Vec<String> = w.ctes.iter().filter_map(cte_name).map(str::to_owned).collect();
        for (i, cte) in w.ctes.iter().enumerate() {
            let Some(node) = cte.node.as_ref() else { continue };
            let visible = if w.recursive { names.clone() } else { names[..i].to_vec() };
            let scope = if visible.is_empty() {
                ctx.scope.clone()
            } else {
                Some(Rc::new(Scope { names: visible, parent: ctx.scope.clone() }))
            };
            self.stack.push((node.to_ref(), Ctx { inert, write: false, scope }));
        }
    }

    fn visit(&mut self, node: NodeRef<'a>, ctx: &Ctx) {
        use Operation as O;
        match node {
            NodeRef::RangeVar(rv) => {
                let cte = !ctx.write && rv.schemaname.is_empty() && Scope::contains(&ctx.scope, &rv.relname);
                if !cte {
                    self.table(&rv.schemaname, &rv.relname, ctx.write && !ctx.inert);
                }
            }
            NodeRef::FuncCall(fc) => self.func_call(fc, ctx),
            NodeRef::SelectStmt(s) => {
                // Set-operation branches are SelectStmts too; only leaves are SELECTs.
                if s.op == SetOperation::SetopNone as i32 || s.op == 0 {
                    self.op(ctx, O::Select);
                }
                if s.into_clause.is_some() {
                    self.op(ctx, O::SelectInto);
                    self.op(ctx, O::CreateTable);
                }
                if !s.locking_clause.is_empty() {
                    self.op(ctx, O::LockRows);
                }
            }
            NodeRef::InsertStmt(s) => {
                self.dml_nodes += 1;
                self.op(ctx, O::Insert);
                let upsert = s.on_conflict_clause.as_ref().is_some_and(|c| {
                    c.action == protobuf::OnConflictAction::OnconflictUpdate as i32
                });
                if upsert {
                    self.op(ctx, O::Update);
                }
            }
            NodeRef::UpdateStmt(s) => {
                self.dml_nodes += 1;
                self.op(ctx, O::Update);
                if s.where_clause.is_none() {
                    self.op(ctx, O::UpdateWithoutWhere);
                }
            }
            NodeRef::DeleteStmt(s) => {
                self.dml_nodes += 1;
                self.op(ctx, O::Delete);
                if s.where_clause.is_none() {
                    self.op(ctx, O::DeleteWithoutWhere);
                }
            }
            NodeRef::MergeStmt(_) => {
                self.dml_nodes += 1;
                self.op(ctx, O::Merge);
            }
            NodeRef::MergeWhenClause(c) => {
                let op = match protobuf::CmdType::try_from(c.command_type) {
                    Ok(protobuf::CmdType::CmdUpdate) => Some(O::Update),
                    Ok(protobuf::CmdType::CmdDelete) => Some(O::Delete),
                    Ok(protobuf::CmdType::CmdInsert) => Some(O::Insert),
                    _ => None,
                };
                if let Some(op) = op {
                    self.op(ctx, op);
                }
            }
            NodeRef::ExplainStmt(e) => {
                self.op(ctx, O::Explain);
                if explain_analyze(e, &mut self.read_constants) {
                    self.op(ctx, O::ExplainAnalyze);
                }
            }
            NodeRef::PrepareStmt(p) => {
                self.op(ctx, O::Prepare);
                if !ctx.inert && self.st.prepares.is_none() {
                    self.st.prepares = Some(p.name.clone());
                }
            }
            NodeRef::ExecuteStmt(e) => {
                self.op(ctx, O::Execute);
                if !ctx.inert && self.st.executes.is_none() {
                    self.st.executes = Some(e.name.clone());
                }
            }
            NodeRef::DeallocateStmt(d) => {
                self.op(ctx, O::Deallocate);
                if !ctx.inert {
                    self.st.deallocates =
                        Some(if d.isall || d.name.is_empty() { None } else { Some(d.name.clone()) });
                }
            }
            NodeRef::DiscardStmt(d) => {
                self.op(ctx, O::Discard);
                if d.target == DiscardMode::DiscardAll as i32 && !ctx.inert {
                    self.op(ctx, O::Reset);
                    self.st.deallocates = Some(None);
                }
            }
            NodeRef::CreateTableAsStmt(c) => {
                self.op(ctx, O::SelectInto);
                if c.objtype == ObjectType::ObjectMatview as i32 {
                    self.op(ctx, O::CreateView);
                } else {
                    self.op(ctx, O::CreateTable);
                }
            }
            NodeRef::CopyStmt(c) => {
                self.op(ctx, if c.is_from { O::CopyFrom } else { O::CopyTo });
                if c.is_program {
                    self.op(ctx, O::CopyProgram);
                } else if !c.filename.is_empty() {
                    self.op(ctx, O::CopyFile);
                }
            }
            NodeRef::AlterTableStmt(a) => {
                self.op(ctx, O::AlterTable);
                for cmd in &a.cmds {
                    if let Some(NodeEnum::AlterTableCmd(c)) = &cmd.node {
                        match protobuf::AlterTableType::try_from(c.subtype) {
                            Ok(protobuf::AlterTableType::AtDropColumn) => self.op(ctx, O::DropColumn),
                            Ok(protobuf::AlterTableType::AtChangeOwner) => self.op(ctx, O::AlterOwner),
                            _ => {}
                        }
                    }
                }
            }
            NodeRef::DropStmt(d) => self.drop_stmt(d, ctx),
            NodeRef::VariableSetStmt(v) => self.set_stmt(v, ctx),
            NodeRef::TransactionStmt(t) => self.transaction(t, ctx),
            NodeRef::GrantStmt(g) => self.op(ctx, if g.is_grant { O::Grant } else { O::Revoke }),
            NodeRef::GrantRoleStmt(g) => {
                self.op(ctx, if g.is_grant { O::Grant } else { O::Revoke });
                self.op(ctx, O::RoleChange);
            }
            NodeRef::VacuumStmt(v) => self.op(ctx, if v.is_vacuumcmd { O::Vacuum } else { O::Analyze }),
            NodeRef::CreateFunctionStmt(_) => {
                self.op(ctx, O::CreateFunction);
                self.op(ctx, O::Procedural);
            }
            NodeRef::ReturnStmt(_) | NodeRef::RawStmt(_) => {}
            other => {
                if let Some(op) = simple_op(walk::kind(&other)) {
                    self.op(ctx, op);
                }
            }
        }
    }

    fn func_call(&mut self, fc: &protobuf::FuncCall, ctx: &Ctx) {
        let parts: Vec<&str> = fc
            .funcname
            .iter()
            .filter_map(|n| match &n.node {
                Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                _ => None,
            })
            .collect();
        let Some((name, qualifiers)) = parts.split_last() else { return };
        let schema = qualifiers.last().map(|s| (*s).to_owned());
        let builtin = schema.as_deref().is_none_or(|s| s == "pg_catalog");
        self.st.functions.insert(Function { schema: schema.clone(), name: (*name).to_owned() });
        self.op(ctx, Operation::FunctionCall);
        if builtin && *name == "set_config" {
            self.read_constants = true;
            let first = fc.args.first().and_then(|a| a.node.as_ref());
            let harmless = match first {
                Some(NodeEnum::AConst(c)) => match &c.val {
                    Some(a_const::Val::Sval(s)) => {
                        let v = s.sval.to_ascii_lowercase();
                        if is_lexing_setting(&v) {
                            self.st.changes_lexing = true;
                            let value = match fc.args.get(1).and_then(|a| a.node.as_ref()) {
                                Some(NodeEnum::AConst(c)) => c.val.as_ref(),
                                _ => None,
                            };
                            if let Some(reason) = unsupported_lexing(&v, value) {
                                self.unsupported.get_or_insert(reason);
                            }
                        }
                        v != "role" && v != "session_authorization"
                    }
                    _ => false,
                },
                _ => false,
            };
            if !harmless {
                self.op(ctx, Operation::SetRole);
            }
        }
        if schema.is_none() && (*name == "schedule" || *name == "alter_job") {
            // Whether it runs SQL depends on its text argument's value.
            self.read_constants = true;
        }
        if is_dynamic_sql(schema.as_deref(), name, &fc.args) {
            self.op(ctx, Operation::DynamicSql);
        }
    }

    fn drop_stmt(&mut self, d: &protobuf::DropStmt, ctx: &Ctx) {
        use ObjectType as T;
        let kind = ObjectType::try_from(d.remove_type).unwrap_or(T::Undefined);
        let op = match kind {
            T::ObjectTable | T::ObjectForeignTable => Operation::DropTable,
            T::ObjectSchema => Operation::DropSchema,
            T::ObjectIndex => Operation::DropIndex,
            T::ObjectView | T::ObjectMatview => Operation::DropView,
            T::ObjectFunction | T::ObjectProcedure | T::ObjectRoutine | T::ObjectAggregate => {
                Operation::DropFunction
            }
            T::ObjectDatabase => Operation::DropDatabase,
            _ => Operation::DropOther,
        };
        self.op(ctx, op);
        let relation = matches!(
            kind,
            T::ObjectTable | T::ObjectForeignTable | T::ObjectIndex | T::ObjectView | T::ObjectMatview
                | T::ObjectSequence
        );
        if relation {
            for obj in &d.objects {
                if let Some(NodeEnum::List(list)) = &obj.node {
                    let names: Vec<&str> = list
                        .items
                        .iter()
                        .filter_map(|i| match &i.node {
                            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                            _ => None,
                        })
                        .collect();
                    if let Some((name, quals)) = names.split_last() {
                        let schema = quals.last().copied().unwrap_or("");
                        self.table(schema, name, !ctx.inert);
                    }
                }
            }
        }
    }

    fn set_stmt(&mut self, v: &protobuf::VariableSetStmt, ctx: &Ctx) {
        use Operation as O;
        let kind = VariableSetKind::try_from(v.kind).unwrap_or(VariableSetKind::Undefined);
        let name = v.name.to_ascii_lowercase();
        if kind == VariableSetKind::VarResetAll || is_lexing_setting(&name) {
            self.st.changes_lexing = true;
        }
        if kind == VariableSetKind::VarSetValue && is_lexing_setting(&name) {
            // `on` and `off` share a shape: this decision holds for this text only.
            self.read_constants = true;
            let value = match v.args.as_slice() {
                [one] => match &one.node {
                    Some(NodeEnum::AConst(c)) => c.val.as_ref(),
                    _ => None,
                },
                _ => None,
            };
            if let Some(reason) = unsupported_lexing(&name, value) {
                self.unsupported.get_or_insert(reason);
            }
        }
        match kind {
            VariableSetKind::VarReset | VariableSetKind::VarResetAll => self.op(ctx, O::Reset),
            VariableSetKind::VarSetMulti => {
                // SET TRANSACTION / SET SESSION CHARACTERISTICS AS TRANSACTION …
                self.op(ctx, O::SetTransaction);
                if read_write(&v.args, &mut self.read_constants) {
                    self.op(ctx, O::BeginReadWrite);
                }
            }
            _ => match name.as_str() {
                "role" => self.op(ctx, O::SetRole),
                "session_authorization" => self.op(ctx, O::SetSessionAuthorization),
                "transaction_read_only" | "default_transaction_read_only" => {
                    self.op(ctx, O::Set);
                    self.op(ctx, O::BeginReadWrite);
                }
                _ => self.op(ctx, O::Set),
            },
        }
    }

    fn transaction(&mut self, t: &protobuf::TransactionStmt, ctx: &Ctx) {
        use Operation as O;
        use TransactionStmtKind as K;
        let (op, tx) = match K::try_from(t.kind).unwrap_or(K::Undefined) {
            K::TransStmtBegin | K::TransStmtStart => (O::Begin, Transaction::Begin),
            K::TransStmtCommit => (O::Commit, Transaction::Commit),
            K::TransStmtRollback => (O::Rollback, Transaction::Rollback),
            K::TransStmtSavepoint => (O::Savepoint, Transaction::Savepoint),
            K::TransStmtRelease => (O::ReleaseSavepoint, Transaction::Release),
            K::TransStmtRollbackTo => (O::RollbackToSavepoint, Transaction::RollbackTo),
            K::TransStmtPrepare => (O::PrepareTransaction, Transaction::Other),
            K::TransStmtCommitPrepared => (O::CommitPrepared, Transaction::Other),
            K::TransStmtRollbackPrepared => (O::RollbackPrepared, Transaction::Other),
            K::Undefined => (O::Other, Transaction::Other),
        };
        self.op(ctx, op);
        if op == O::Begin && read_write(&t.options, &mut self.read_constants) {
            self.op(ctx, O::BeginReadWrite);
        }
        if !ctx.inert {
            self.st.transaction.get_or_insert(tx);
        }
    }
}

/// Operations of statement kinds that need no look inside.
fn simple_op(kind: &str) -> Option<Operation> {
    use Operation as O;
    Some(match kind {
        "DoStmt" => O::Procedural,
        "CallStmt" => O::Call,
        "LockStmt" => O::LockTable,
        "TruncateStmt" => O::Truncate,
        "RenameStmt" => O::Rename,
        "AlterOwnerStmt" | "ReassignOwnedStmt" => O::AlterOwner,
        "CreateRoleStmt" | "AlterRoleStmt" | "AlterRoleSetStmt" | "DropRoleStmt" => O::RoleChange,
        "VariableShowStmt" => O::Show,
        "ListenStmt" => O::Listen,
        "UnlistenStmt" => O::Unlisten,
        "NotifyStmt" => O::Notify,
        "ClusterStmt" => O::Cluster,
        "ReindexStmt" => O::Reindex,
        "CheckPointStmt" => O::Checkpoint,
        "LoadStmt" => O::Load,
        "AlterSystemStmt" => O::AlterSystem,
        "DeclareCursorStmt" => O::DeclareCursor,
        "FetchStmt" => O::Fetch,
        "ClosePortalStmt" => O::ClosePortal,
        "CreateStmt" | "CreateForeignTableStmt" => O::CreateTable,
        "IndexStmt" => O::CreateIndex,
        "ViewStmt" => O::CreateView,
        "CreateSchemaStmt" => O::CreateSchema,
        "CreatedbStmt" => O::CreateDatabase,
        "DropdbStmt" => O::DropDatabase,
        "CreateExtensionStmt" => O::CreateExtension,
        "RefreshMatViewStmt" => O::RefreshMaterializedView,
        "CommentStmt" => O::Comment,
        "ConstraintsSetStmt" => O::Set,
        "RuleStmt" => O::CreateOther,
        // CREATE AGGREGATE / OPERATOR / COLLATION / TYPE / TEXT SEARCH …, CREATE TYPE … AS (…).
        "DefineStmt" | "CompositeTypeStmt" => O::CreateOther,
        // Creates foreign tables, as CREATE FOREIGN TABLE does.
        "ImportForeignSchemaStmt" => O::CreateTable,
        "SecLabelStmt" => O::AlterOther,
        k if k.starts_with("Create") && k.ends_with("Stmt") => O::CreateOther,
        k if k.starts_with("Alter") && k.ends_with("Stmt") => O::AlterOther,
        k if k.starts_with("Drop") && k.ends_with("Stmt") => O::DropOther,
        k if k.ends_with("Stmt") => O::Other,
        _ => return None,
    })
}

fn cte_name(n: &protobuf::Node) -> Option<&str> {
    match &n.node {
        Some(NodeEnum::CommonTableExpr(c)) => Some(c.ctename.as_str()),
        _ => None,
    }
}

fn with_clause<'a>(node: NodeRef<'a>) -> Option<&'a protobuf::WithClause> {
    match node {
        NodeRef::SelectStmt(s) => s.with_clause.as_ref(),
        NodeRef::InsertStmt(s) => s.with_clause.as_ref(),
        NodeRef::UpdateStmt(s) => s.with_clause.as_ref(),
        NodeRef::DeleteStmt(s) => s.with_clause.as_ref(),
        NodeRef::MergeStmt(s) => s.with_clause.as_ref(),
        _ => None,
    }
}

/// Whether `child` (a direct child of `parent`) is a relation the parent writes.
fn is_write_target(parent: NodeRef<'_>, child: NodeRef<'_>) -> bool {
    let NodeRef::RangeVar(rv) = child else { return false };
    let is = |r: &Option<protobuf::RangeVar>| r.as_ref().is_some_and(|r| std::ptr::eq(r, rv));
    match parent {
        NodeRef::InsertStmt(s) => is(&s.relation),
        NodeRef::UpdateStmt(s) => is(&s.relation),
        NodeRef::DeleteStmt(s) => is(&s.relation),
        NodeRef::MergeStmt(s) => is(&s.relation),
        NodeRef::CopyStmt(s) => s.is_from && is(&s.relation),
        NodeRef::IntoClause(s) => is(&s.rel),
        NodeRef::VacuumRelation(s) => is(&s.relation),
        NodeRef::SelectStmt(_)
        | NodeRef::ExplainStmt(_)
        | NodeRef::PrepareStmt(_)
        | NodeRef::DeclareCursorStmt(_)
        | NodeRef::ExecuteStmt(_)
        | NodeRef::CallStmt(_)
        | NodeRef::CreateTableAsStmt(_) => false,
        // Any other statement names relations as the objects it creates, alters, locks,
        // truncates or grants on.
        other => walk::kind(&other).ends_with("Stmt"),
    }
}

fn copy_options(c: &protobuf::CopyStmt) -> CopyOptions {
    let mut o = CopyOptions::default();
    for opt in &c.options {
        let Some(NodeEnum::DefElem(d)) = &opt.node else { continue };
        let text = match d.arg.as_deref().and_then(|a| a.node.as_ref()) {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            Some(NodeEnum::Integer(i)) => Some(i.ival.to_string()),
            Some(NodeEnum::Boolean(b)) => Some(b.boolval.to_string()),
            _ => None,
        };
        match d.defname.as_str() {
            "format" => {
                let f = text.unwrap_or_default().to_ascii_lowercase();
                o.binary = f == "binary";
                o.csv = f == "csv";
            }
            "delimiter" => o.delimiter = text,
            "null" => o.null = text,
            "quote" => o.quote = text,
            "escape" => o.escape = text,
            "header" => {
                let t = text.map(|t| t.to_ascii_lowercase());
                o.header = !matches!(t.as_deref(), Some("false" | "off" | "0"));
            }
            "encoding" => o.encoding = Some(text.unwrap_or_default()),
            _ => {}
        }
    }
    o
}

/// EXPLAIN runs the statement when ANALYZE is on; anything but an explicit "off" counts.
fn explain_analyze(e: &protobuf::ExplainStmt, read_constants: &mut bool) -> bool {
    e.options.iter().any(|o| match &o.node {
        Some(NodeEnum::DefElem(d)) if d.defname.eq_ignore_ascii_case("analyze") => {
            *read_constants = true;
            !is_false(d.arg.as_deref())
        }
        _ => false,
    })
}

/// `transaction_read_only` set to false among BEGIN / SET TRANSACTION options. A value
/// that is not a plain constant counts as read-write.
fn read_write(options: &[protobuf::Node], read_constants: &mut bool) -> bool {
    options.iter().any(|o| match &o.node {
        Some(NodeEnum::DefElem(d)) if d.defname == "transaction_read_only" => {
            *read_constants = true;
            match d.arg.as_deref().and_then(|a| a.node.as_ref()) {
                Some(NodeEnum::AConst(c)) => match &c.val {
                    Some(a_const::Val::Ival(i)) => i.ival == 0,
                    Some(a_const::Val::Boolval(b)) => !b.boolval,
                    _ => true,
                },
                _ => true,
            }
        }
        _ => false,
    })
}

fn is_false(arg: Option<&protobuf::Node>) -> bool {
    let Some(node) = arg.and_then(|a| a.node.as_ref()) else { return false };
    let word = match node {
        NodeEnum::String(s) => s.sval.to_ascii_lowercase(),
        NodeEnum::Boolean(b) => return !b.boolval,
        NodeEnum::AConst(c) => match &c.val {
            Some(a_const::Val::Sval(s)) => s.sval.to_ascii_lowercase(),
            Some(a_const::Val::Ival(i)) => return i.ival == 0,
            Some(a_const::Val::Boolval(b)) => return !b.boolval,
            _ => return false,
        },
        NodeEnum::Integer(i) => return i.ival == 0,
        _ => return false,
    };
    matches!(word.as_str(), "false" | "off" | "no" | "0")
}

fn object_name(t: i32) -> String {
    match ObjectType::try_from(t) {
        Ok(ObjectType::ObjectMatview) => "MATERIALIZED VIEW".into(),
        Ok(ObjectType::ObjectTsconfiguration) => "TEXT SEARCH CONFIGURATION".into(),
        Ok(ObjectType::ObjectTsdictionary) => "TEXT SEARCH DICTIONARY".into(),
        Ok(ObjectType::ObjectTsparser) => "TEXT SEARCH PARSER".into(),
        Ok(ObjectType::ObjectTstemplate) => "TEXT SEARCH TEMPLATE".into(),
        Ok(ObjectType::ObjectFdw) => "FOREIGN DATA WRAPPER".into(),
        Ok(ObjectType::ObjectForeignServer) => "SERVER".into(),
        Ok(ObjectType::ObjectOpclass) => "OPERATOR CLASS".into(),
        Ok(ObjectType::ObjectOpfamily) => "OPERATOR FAMILY".into(),
        Ok(ObjectType::ObjectEventTrigger) => "EVENT TRIGGER".into(),
        Ok(ObjectType::ObjectStatisticExt) => "STATISTICS".into(),
        Ok(k) => k.as_str_name().trim_start_matches("OBJECT_").replace('_', " "),
        Err(_) => "OBJECT".into(),
    }
}

/// The command tag PostgreSQL reports for a top-level statement.
fn command_tag(node: NodeRef<'_>) -> String {
    use TransactionStmtKind as K;
    let s: &str = match node {
        NodeRef::SelectStmt(s) if s.into_clause.is_some() => "SELECT INTO",
        NodeRef::SelectStmt(_) => "SELECT",
        NodeRef::InsertStmt(_) => "INSERT",
        NodeRef::UpdateStmt(_) => "UPDATE",
        NodeRef::DeleteStmt(_) => "DELETE",
        NodeRef::MergeStmt(_) => "MERGE",
        NodeRef::CreateTableAsStmt(c) if c.objtype == ObjectType::ObjectMatview as i32 => {
            "CREATE MATERIALIZED VIEW"
        }
        NodeRef::CreateTableAsStmt(c) if c.is_select_into => "SELECT INTO",
        NodeRef::CreateTableAsStmt(_) => "CREATE TABLE AS",
        NodeRef::DropStmt(d) => return format!("DROP {}", object_name(d.remove_type)),
        NodeRef::RenameStmt(r) => return format!("ALTER {}", object_name(r.rename_type)),
        NodeRef::AlterOwnerStmt(r) => return format!("ALTER {}", object_name(r.object_type)),
        NodeRef::AlterTableStmt(a) => return format!("ALTER {}", object_name(a.objtype)),
        NodeRef::TransactionStmt(t) => match K::try_from(t.kind).unwrap_or(K::Undefined) {
            K::TransStmtBegin => "BEGIN",
            K::TransStmtStart => "START TRANSACTION",
            K::TransStmtCommit => "COMMIT",
            K::TransStmtRollback | K::TransStmtRollbackTo => "ROLLBACK",
            K::TransStmtSavepoint => "SAVEPOINT",
            K::TransStmtRelease => "RELEASE",
            K::TransStmtPrepare => "PREPARE TRANSACTION",
            K::TransStmtCommitPrepared => "COMMIT PREPARED",
            K::TransStmtRollbackPrepared => "ROLLBACK PREPARED",
            K::Undefined => "???",
        },
        NodeRef::VariableSetStmt(v)
            if v.kind == VariableSetKind::VarReset as i32 || v.kind == VariableSetKind::VarResetAll as i32 =>
        {
            "RESET"
        }
        NodeRef::VariableSetStmt(_) => "SET",
        NodeRef::VariableShowStmt(_) => "SHOW",
        NodeRef::CreateStmt(_) => "CREATE TABLE",
        NodeRef::IndexStmt(_) => "CREATE INDEX",
        NodeRef::ViewStmt(_) => "CREATE VIEW",
        NodeRef::CreateFunctionStmt(f) if f.is_procedure => "CREATE PROCEDURE",
        NodeRef::CreateFunctionStmt(_) => "CREATE FUNCTION",
        NodeRef::TruncateStmt(_) => "TRUNCATE TABLE",
        NodeRef::LockStmt(_) => "LOCK TABLE",
        NodeRef::GrantStmt(g) => if g.is_grant { "GRANT" } else { "REVOKE" },
        NodeRef::GrantRoleStmt(g) => if g.is_grant { "GRANT ROLE" } else { "REVOKE ROLE" },
        NodeRef::CreateRoleStmt(r) if r.stmt_type == RoleStmtType::RolestmtGroup as i32 => "CREATE ROLE",
        NodeRef::CreateRoleStmt(_) => "CREATE ROLE",
        NodeRef::AlterRoleStmt(_) | NodeRef::AlterRoleSetStmt(_) => "ALTER ROLE",
        NodeRef::DropRoleStmt(_) => "DROP ROLE",
        NodeRef::VacuumStmt(v) => if v.is_vacuumcmd { "VACUUM" } else { "ANALYZE" },
        NodeRef::DeclareCursorStmt(_) => "DECLARE CURSOR",
        NodeRef::FetchStmt(f) => if f.ismove { "MOVE" } else { "FETCH" },
        NodeRef::ClosePortalStmt(c) if c.portalname.is_empty() => "CLOSE CURSOR ALL",
        NodeRef::ClosePortalStmt(_) => "CLOSE CURSOR",
        NodeRef::DeallocateStmt(d) if d.isall || d.name.is_empty() => "DEALLOCATE ALL",
        NodeRef::DeallocateStmt(_) => "DEALLOCATE",
        NodeRef::DiscardStmt(d) => match DiscardMode::try_from(d.target) {
            Ok(DiscardMode::DiscardPlans) => "DISCARD PLANS",
            Ok(DiscardMode::DiscardSequences) => "DISCARD SEQUENCES",
            Ok(DiscardMode::DiscardTemp) => "DISCARD TEMP",
            _ => "DISCARD ALL",
        },
        NodeRef::CreatedbStmt(_) => "CREATE DATABASE",
        NodeRef::DropdbStmt(_) => "DROP DATABASE",
        NodeRef::RefreshMatViewStmt(_) => "REFRESH MATERIALIZED VIEW",
        NodeRef::CreateSeqStmt(_) => "CREATE SEQUENCE",
        NodeRef::AlterSeqStmt(_) => "ALTER SEQUENCE",
        NodeRef::CreateTrigStmt(_) => "CREATE TRIGGER",
        NodeRef::RuleStmt(_) => "CREATE RULE",
        NodeRef::ConstraintsSetStmt(_) => "SET CONSTRAINTS",
        NodeRef::CheckPointStmt(_) => "CHECKPOINT",
        NodeRef::CreatePlangStmt(_) => "CREATE LANGUAGE",
        NodeRef::CreateForeignTableStmt(_) => "CREATE FOREIGN TABLE",
        NodeRef::CreateEventTrigStmt(_) => "CREATE EVENT TRIGGER",
        NodeRef::CreateStatsStmt(_) => "CREATE STATISTICS",
        NodeRef::CompositeTypeStmt(_) | NodeRef::CreateEnumStmt(_) | NodeRef::CreateRangeStmt(_) => "CREATE TYPE",
        NodeRef::DefineStmt(d) => return format!("CREATE {}", object_name(d.kind)),
        NodeRef::SecLabelStmt(_) => "SECURITY LABEL",
        other => return words(walk::kind(&other)),
    };
    s.to_owned()
}

/// "CreatePolicyStmt" → "CREATE POLICY".
fn words(kind: &str) -> String {
    let base = kind.strip_suffix("Stmt").unwrap_or(kind);
    let mut out = String::with_capacity(base.len() + 4);
    for (i, ch) in base.char_indices() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}
