//! The project's own description of a statement. Nothing outside this crate sees the
//! parser's tree; policy, audit and the gateway work from these facts only.

use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;

/// One thing a statement does. A statement yields every operation found anywhere in its
/// tree (writable CTEs, EXPLAIN ANALYZE, PREPARE bodies, subqueries), so a rule that
/// matches an operation cannot be dodged by nesting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    // reads
    Select,
    Show,
    Explain,
    Fetch,
    DeclareCursor,
    ClosePortal,
    // data writes
    Insert,
    Update,
    UpdateWithoutWhere,
    Delete,
    DeleteWithoutWhere,
    Merge,
    Truncate,
    SelectInto,
    CopyFrom,
    CopyTo,
    CopyProgram,
    CopyFile,
    LockRows,
    LockTable,
    // execution that hides what it does
    ExplainAnalyze,
    Procedural,
    DynamicSql,
    Call,
    FunctionCall,
    // DDL
    CreateTable,
    CreateIndex,
    CreateView,
    CreateFunction,
    CreateSchema,
    CreateDatabase,
    CreateExtension,
    CreateOther,
    AlterTable,
    AlterOther,
    DropTable,
    DropDatabase,
    DropSchema,
    DropIndex,
    DropColumn,
    DropView,
    DropFunction,
    DropOther,
    Rename,
    Comment,
    // privileges and identity
    Grant,
    Revoke,
    RoleChange,
    AlterOwner,
    SetRole,
    SetSessionAuthorization,
    // session and server
    Set,
    Reset,
    Discard,
    Listen,
    Unlisten,
    Notify,
    Prepare,
    Execute,
    Deallocate,
    Vacuum,
    Analyze,
    Cluster,
    Reindex,
    RefreshMaterializedView,
    Checkpoint,
    Load,
    AlterSystem,
    // transaction control
    Begin,
    BeginReadWrite,
    Commit,
    Rollback,
    Savepoint,
    ReleaseSavepoint,
    RollbackToSavepoint,
    PrepareTransaction,
    CommitPrepared,
    RollbackPrepared,
    SetTransaction,
    /// A statement kind this analyzer does not classify; policy should treat it with suspicion.
    Other,
}

impl Operation {
    pub const ALL: &'static [Operation] = &[
        Operation::Select, Operation::Show, Operation::Explain, Operation::Fetch,
        Operation::DeclareCursor, Operation::ClosePortal, Operation::Insert, Operation::Update,
        Operation::UpdateWithoutWhere, Operation::Delete, Operation::DeleteWithoutWhere,
        Operation::Merge, Operation::Truncate, Operation::SelectInto, Operation::CopyFrom,
        Operation::CopyTo, Operation::CopyProgram, Operation::CopyFile, Operation::LockRows,
        Operation::LockTable, Operation::ExplainAnalyze, Operation::Procedural,
        Operation::DynamicSql, Operation::Call, Operation::FunctionCall, Operation::CreateTable,
        Operation::CreateIndex, Operation::CreateView, Operation::CreateFunction,
        Operation::CreateSchema, Operation::CreateDatabase, Operation::CreateExtension,
        Operation::CreateOther, Operation::AlterTable, Operation::AlterOther,
        Operation::DropTable, Operation::DropDatabase, Operation::DropSchema,
        Operation::DropIndex, Operation::DropColumn, Operation::DropView,
        Operation::DropFunction, Operation::DropOther, Operation::Rename, Operation::Comment,
        Operation::Grant, Operation::Revoke, Operation::RoleChange, Operation::AlterOwner,
        Operation::SetRole, Operation::SetSessionAuthorization, Operation::Set,
        Operation::Reset, Operation::Discard, Operation::Listen, Operation::Unlisten,
        Operation::Notify, Operation::Prepare, Operation::Execute, Operation::Deallocate,
        Operation::Vacuum, Operation::Analyze, Operation::Cluster, Operation::Reindex,
        Operation::RefreshMaterializedView, Operation::Checkpoint, Operation::Load,
        Operation::AlterSystem, Operation::Begin, Operation::BeginReadWrite, Operation::Commit,
        Operation::Rollback, Operation::Savepoint, Operation::ReleaseSavepoint,
        Operation::RollbackToSavepoint, Operation::PrepareTransaction,
        Operation::CommitPrepared, Operation::RollbackPrepared, Operation::SetTransaction,
        Operation::Other,
    ];

    /// The name used in policy files and output (snake_case).
    pub fn name(self) -> &'static str {
        // serde's snake_case and this table stay in step through the test below.
        NAMES[self as usize]
    }

    pub fn from_name(name: &str) -> Option<Operation> {
        NAMES.iter().position(|n| *n == name).map(|i| Operation::ALL[i])
    }

    /// Schema changes: the "ddl" category in policy files.
    pub fn is_ddl(self) -> bool {
        use Operation::*;
        matches!(
            self,
            CreateTable | CreateIndex | CreateView | CreateFunction | CreateSchema
                | CreateDatabase | CreateExtension | CreateOther | AlterTable | AlterOther
                | DropTable | DropDatabase | DropSchema | DropIndex | DropColumn | DropView
                | DropFunction | DropOther | Rename | Comment | AlterOwner
        )
    }

    /// Privilege and identity changes: the "privileges" category.
    pub fn is_privilege(self) -> bool {
        use Operation::*;
        matches!(self, Grant | Revoke | RoleChange | AlterOwner | SetRole | SetSessionAuthorization)
    }

    /// Anything that changes data or schema, or may do so invisibly: the complement of
    /// what a read-only session may do (function volatility is judged separately).
    pub fn is_write(self) -> bool {
        use Operation::*;
        self.is_ddl()
            || self.is_privilege()
            || matches!(
                self,
                Insert | Update | UpdateWithoutWhere | Delete | DeleteWithoutWhere | Merge
                    | Truncate | SelectInto | RefreshMaterializedView | CopyFrom | CopyProgram | CopyFile | LockRows | LockTable | ExplainAnalyze
                    | Procedural | DynamicSql | Call
                    | Vacuum | Analyze | Cluster | Reindex | Checkpoint | Load | AlterSystem
                    | BeginReadWrite | Notify | PrepareTransaction | CommitPrepared
                    | RollbackPrepared | Other
            )
    }
}

const NAMES: &[&str] = &[
    "select", "show", "explain", "fetch", "declare_cursor", "close_portal", "insert", "update",
    "update_without_where", "delete", "delete_without_where", "merge", "truncate",
    "select_into", "copy_from", "copy_to", "copy_program", "copy_file", "lock_rows",
    "lock_table", "explain_analyze", "procedural", "dynamic_sql", "call", "function_call",
    "create_table", "create_index", "create_view", "create_function", "create_schema",
    "create_database", "create_extension", "create_other", "alter_table", "alter_other",
    "drop_table", "drop_database", "drop_schema", "drop_index", "drop_column", "drop_view",
    "drop_function", "drop_other", "rename", "comment", "grant", "revoke", "role_change",
    "alter_owner", "set_role", "set_session_authorization", "set", "reset", "discard",
    "listen", "unlisten", "notify", "prepare", "execute", "deallocate", "vacuum", "analyze",
    "cluster", "reindex", "refresh_materialized_view", "checkpoint", "load", "alter_system",
    "begin", "begin_read_write", "commit", "rollback", "savepoint", "release_savepoint",
    "rollback_to_savepoint", "prepare_transaction", "commit_prepared", "rollback_prepared",
    "set_transaction", "other",
];

/// A relation named in the statement.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Table {
    pub schema: Option<String>,
    pub name: String,
    /// The statement writes to it (DML target, DDL object, COPY FROM target).
    pub write: bool,
}

/// A function called anywhere in the statement, names as PostgreSQL resolved the
/// spelling (unicode escapes and quoting already undone), lower-case unless quoted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Function {
    pub schema: Option<String>,
    pub name: String,
}

/// Transaction control carried by the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transaction {
    Begin,
    Commit,
    Rollback,
    Savepoint,
    Release,
    RollbackTo,
    Other,
}

/// The facts of one statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Statement {
    /// Byte range of this statement in the analysed text.
    pub start: usize,
    pub end: usize,
    /// The top-level command, as PostgreSQL's command tag would name it ("SELECT", "DROP TABLE").
    pub command: String,
    pub operations: BTreeSet<Operation>,
    pub tables: BTreeSet<Table>,
    pub functions: BTreeSet<Function>,
    pub transaction: Option<Transaction>,
    /// `PREPARE name AS …`: the body's facts are merged into this statement.
    pub prepares: Option<String>,
    /// `EXECUTE name`: policy must also judge the prepared body.
    pub executes: Option<String>,
    /// `DEALLOCATE name`; `Some(None)` for `DEALLOCATE ALL` / `DISCARD ALL`.
    pub deallocates: Option<Option<String>>,
    /// The command tag reports every row the statement modifies (a top-level
    /// UPDATE/DELETE/MERGE/INSERT with no data-modifying CTE), so a row limit can be exact.
    pub rows_countable: bool,
    /// Where the rows this statement returns take their values from; None when it returns
    /// no rows the analysis can describe (no RETURNING, EXPLAIN, SELECT INTO, utility
    /// commands). DECLARE and PREPARE describe their query; COPY … TO STDOUT its rows.
    /// Not serialised: the audit log keeps facts for every statement, and lineage is the
    /// gateway's working data, not evidence.
    #[serde(skip)]
    pub result: Option<Arc<Lineage>>,
    /// Columns the statement's WHERE clause pins to single values (UPDATE and DELETE only).
    /// Not serialised, like `result`: working data for the row-limit guard.
    #[serde(skip)]
    pub pinned: Option<Arc<Pinned>>,
    /// `COPY … TO`: the options that shape its data lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyOptions>,
    /// Sets or resets `client_encoding` or `standard_conforming_strings` (SET, SET NAMES,
    /// RESET ALL, set_config): the target may read later SQL text differently.
    #[serde(skip)]
    pub changes_lexing: bool,
}

/// A top-level UPDATE or DELETE of one relation (no WITH, FROM or USING) whose WHERE clause
/// is a conjunction including `column = value` for each of `columns`. If those columns hold
/// a unique key of the relation, the statement changes at most one row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pinned {
    /// As written: the schema only when qualified.
    pub table: Relation,
    /// Sorted column names, each with the parameter number when its value is `$n` rather
    /// than a literal.
    pub columns: Vec<(String, Option<u32>)>,
}

/// Options of `COPY … TO`, as written (defaults are the reader's business).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct CopyOptions {
    pub binary: bool,
    pub csv: bool,
    pub delimiter: Option<String>,
    pub null: Option<String>,
    pub quote: Option<String>,
    pub escape: Option<String>,
    pub header: bool,
    /// `ENCODING`: the data is converted to it.
    pub encoding: Option<String>,
}

/// A relation as written in the statement (schema when qualified), quoting and unicode
/// escapes undone as for [`Table`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
pub struct Relation {
    pub schema: Option<String>,
    pub name: String,
}

/// A base-relation column a value may derive from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
pub struct ColumnSource {
    /// The relation, when the reference resolves to exactly one base relation in scope.
    /// None: any relation of the statement that has a column of this name.
    pub table: Option<Relation>,
    pub column: String,
}

/// What one value of the result may derive from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Sources {
    /// Base-relation columns the value may derive from.
    pub columns: BTreeSet<ColumnSource>,
    /// Base relations whose whole row feeds the value (`row_to_json(t)`, `t` as a value,
    /// `t.*` inside an expression, a relation whose columns were renamed by an alias list).
    pub rows: BTreeSet<Relation>,
    /// The value is exactly one base column's value, unchanged: a bare column reference,
    /// possibly through aliases, subqueries, CTEs and set operations whose arms are all
    /// direct. False for any expression, casts included.
    pub direct: bool,
    /// Something could not be followed: the value may derive from anything the statement
    /// reads.
    pub opaque: bool,
}

impl Sources {
    /// Nothing from any relation feeds the value (constants, `count(*)`, parameters).
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.rows.is_empty() && !self.opaque
    }
}

/// One entry of a result's target list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// One result column.
    Column(Sources),
    /// `*` or `rel.*` at the top level of the target list: several result columns.
    /// `sources` is the union over everything the star covers (a starred base relation is
    /// in `sources.rows`; `direct` means every covered column is one base column's value
    /// unchanged). `relations` lists the base relations whose columns the star expands
    /// to, in FROM order. `width` is the column count when known without a catalog.
    Star { sources: Sources, relations: Vec<Relation>, width: Option<usize> },
}

impl Output {
    pub fn sources(&self) -> &Sources {
        match self {
            Output::Column(s) | Output::Star { sources: s, .. } => s,
        }
    }
}

/// Where each entry of a statement's result comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Lineage {
    /// One entry per entry of the result's target list, in order.
    pub outputs: Vec<Output>,
}

impl Statement {
    pub fn has(&self, op: Operation) -> bool {
        self.operations.contains(&op)
    }
}

/// The facts of a whole message: one entry per statement, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Analysis {
    pub statements: Vec<Statement>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_serde_and_round_trip() {
        assert_eq!(NAMES.len(), Operation::ALL.len());
        for (i, op) in Operation::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "ALL must follow declaration order");
            let serde_name = serde_json::to_value(op).unwrap();
            assert_eq!(serde_name.as_str().unwrap(), op.name());
            assert_eq!(Operation::from_name(op.name()), Some(*op));
        }
    }
}
