//! CEL conditions: compiled at load, evaluated against a statement's facts under a deadline.
//!
//! The interpreter cannot be interrupted, so the deadline is enforced cooperatively: every
//! lookup of a top-level variable (`statement`, `principal`, `target`, `now`) goes through
//! [`Facts`], which refuses to answer once the deadline has passed, turning the rest of the
//! evaluation into an error. An evaluation that errors or finishes past the deadline counts as
//! failed; the caller then decides fail-closed. Expressions are capped in length at load.

use cel::common::ast::{EntryExpr, Expr};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Env, IdedExpr, Program, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const VARIABLES: [&str; 4] = ["statement", "principal", "target", "now"];
const MAX_SOURCE_BYTES: usize = 4096;

fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib())).clone()
}

pub(crate) struct Condition {
    program: Program,
    pub(crate) uses_now: bool,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition")
            .field("uses_now", &self.uses_now)
            .finish()
    }
}

/// Why an evaluation gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    Deadline,
    Error(String),
}

impl Condition {
    pub(crate) fn compile(source: &str) -> Result<Condition, String> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(format!(
                "expression is longer than {MAX_SOURCE_BYTES} bytes"
            ));
        }
        let program = env()
            .compile(source)
            .map_err(|e| format!("CEL syntax: {e}"))?;
        let mut bound = BTreeSet::new();
        collect_bound(program.expression(), &mut bound);
        let refs = program.references();
        let mut unknown: Vec<&str> = refs
            .variables()
            .into_iter()
            .filter(|v| !VARIABLES.contains(v) && !bound.contains(*v))
            .collect();
        unknown.sort_unstable();
        if let Some(v) = unknown.first() {
            return Err(format!(
                "unknown variable `{v}`; conditions may use statement, principal, target and now"
            ));
        }
        let uses_now = refs.has_variable("now");
        Ok(Condition { program, uses_now })
    }

    pub(crate) fn eval(&self, facts: &Facts, budget: Duration) -> Result<bool, Failure> {
        let started = Instant::now();
        let resolver = Deadlined {
            facts,
            deadline: started + budget,
        };
        let mut ctx = cel::Context::with_env(env());
        ctx.set_variable_resolver(&resolver);
        let result = self.program.execute(&ctx);
        if started.elapsed() > budget {
            return Err(Failure::Deadline);
        }
        match result {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(Failure::Error(format!(
                "condition gave {other:?}, not a bool"
            ))),
            Err(e) => Err(Failure::Error(e.to_string())),
        }
    }
}

/// Names bound by comprehensions (`exists(x, …)`), which are not free variables.
fn collect_bound(e: &IdedExpr, out: &mut BTreeSet<String>) {
    match &e.expr {
        Expr::Call(call) => {
            if let Some(t) = &call.target {
                collect_bound(t, out);
            }
            call.args.iter().for_each(|a| collect_bound(a, out));
        }
        Expr::Comprehension(c) => {
            out.insert(c.iter_var.clone());
            if let Some(v) = &c.iter_var2 {
                out.insert(v.clone());
            }
            out.insert(c.accu_var.clone());
            for sub in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                collect_bound(sub, out);
            }
        }
        Expr::List(l) => l.elements.iter().for_each(|x| collect_bound(x, out)),
        Expr::Map(m) => m.entries.iter().for_each(|x| collect_entry(&x.expr, out)),
        Expr::Struct(s) => s.entries.iter().for_each(|x| collect_entry(&x.expr, out)),
        Expr::Select(s) => collect_bound(&s.operand, out),
        Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => {}
    }
}

fn collect_entry(e: &EntryExpr, out: &mut BTreeSet<String>) {
    match e {
        EntryExpr::StructField(f) => collect_bound(&f.value, out),
        EntryExpr::MapEntry(m) => {
            collect_bound(&m.key, out);
            collect_bound(&m.value, out);
        }
    }
}

/// The variables a condition sees, built once per evaluated statement.
pub(crate) struct Facts {
    statement: Option<Box<dyn Val>>,
    principal: Option<Box<dyn Val>>,
    target: Option<Box<dyn Val>>,
    now: Option<Box<dyn Val>>,
}

// A value that fails to convert is left out; looking it up then errors, which fails closed.
fn boxed(v: Value) -> Option<Box<dyn Val>> {
    Box::<dyn Val>::try_from(v).ok()
}

fn list(items: impl IntoIterator<Item = String>) -> Value {
    Value::from(items.into_iter().map(Value::from).collect::<Vec<Value>>())
}

impl Facts {
    pub(crate) fn new(stmt: &sql::Statement, ctx: &crate::Context<'_>) -> Facts {
        let mut s: HashMap<String, Value> = HashMap::new();
        s.insert("command".into(), Value::from(stmt.command.clone()));
        s.insert(
            "operations".into(),
            list(stmt.operations.iter().map(|o| o.name().to_string())),
        );
        s.insert(
            "tables".into(),
            list(stmt.tables.iter().map(crate::eval::table_name)),
        );
        s.insert(
            "functions".into(),
            list(stmt.functions.iter().map(|f| f.name.clone())),
        );
        let mut p: HashMap<String, Value> = HashMap::new();
        p.insert("agent".into(), Value::from(ctx.principal.agent.clone()));
        p.insert("groups".into(), list(ctx.principal.groups.iter().cloned()));
        Facts {
            statement: boxed(Value::from(s)),
            principal: boxed(Value::from(p)),
            target: boxed(Value::from(ctx.target.to_string())),
            now: boxed(Value::Timestamp(ctx.now.fixed_offset())),
        }
    }
}

struct Deadlined<'a> {
    facts: &'a Facts,
    deadline: Instant,
}

impl VariableResolver for Deadlined<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        if Instant::now() > self.deadline {
            return None;
        }
        let v = match variable {
            "statement" => &self.facts.statement,
            "principal" => &self.facts.principal,
            "target" => &self.facts.target,
            "now" => &self.facts.now,
            _ => return None,
        };
        v.as_deref().map(CowVal::Borrowed)
    }
}
