//! The project's own description of a statement. Nothing outside this crate sees the
//! parser's tree; policy, audit and the gateway work from these facts only.

use serde::Serialize;
use std::collections::BTreeSet;

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
