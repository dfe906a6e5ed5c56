//! What each target's catalog says about functions (`pg_proc.provolatile`) and relations
//! (columns, the columns each view reads, unique keys), loaded once per target on a fresh
//! upstream session and refreshed after a while or after the gateway let DDL through.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use policy::{FunctionCatalog, Volatility};
use sql::{Operation, Statement};
use wire::{backend, Builder};

use crate::conn::{write_all, BoxIo, Frames};
use crate::Error;

const REFRESH: Duration = Duration::from_secs(300);
const FUNCTIONS: &str = "SELECT n.nspname, p.proname, p.provolatile FROM pg_catalog.pg_proc p \
                         JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace";
const COLUMNS: &str = "SELECT c.oid, n.nspname, c.relname, c.relkind, a.attnum, a.attname, a.atttypid, a.atttypmod \
                       FROM pg_catalog.pg_class c \
                       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
                       WHERE c.relkind IN ('r','v','m','f','p') AND a.attnum > 0 AND NOT a.attisdropped";
/// Columns (or, with attnum 0, whole relations) each view's rewrite rule reads.
const VIEW_READS: &str = "SELECT DISTINCT r.ev_class, d.refobjid, d.refobjsubid \
                          FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_depend d \
                          ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
                          WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid <> r.ev_class";

/// Definitions of the views in user schemas, so masking can trace each view column.
const VIEW_DEFS: &str = "SELECT c.oid, pg_catalog.pg_get_viewdef(c.oid) FROM pg_catalog.pg_class c \
                         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                         WHERE c.relkind IN ('v','m') AND n.nspname NOT IN ('pg_catalog','information_schema')";

/// Unique indexes that bound an equality lookup to one row: enforced at once (not
/// deferrable), valid, not partial, on plain columns with their type's default operator
/// class and the column's own collation, of an ordinary table that has no inheritance
/// children and no rewrite rules. `indkey` lists the key columns first.
macro_rules! unique_key_indexes {
    () => {
        "FROM pg_catalog.pg_index i \
         JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
         WHERE i.indisunique AND i.indimmediate AND i.indisvalid AND i.indisready \
         AND i.indpred IS NULL AND i.indexprs IS NULL \
         AND c.relkind = 'r' AND NOT c.relhassubclass AND NOT c.relhasrules \
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.generate_series(0, i.indnkeyatts - 1) k \
           JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k] \
           JOIN pg_catalog.pg_opclass o ON o.oid = i.indclass[k] \
           WHERE NOT o.opcdefault OR a.attcollation <> i.indcollation[k])"
    };
}
const UNIQUE_KEYS: &str = concat!("SELECT i.indrelid, i.indnkeyatts, i.indkey::text ", unique_key_indexes!());

/// `=` operators outside pg_catalog on key types, pseudo-types or domains: with one of
/// those, `key = value` might not mean the index's equality.
const CUSTOM_EQUALITY: &str = "SELECT o.oprleft, o.oprright, l.typtype, r.typtype FROM pg_catalog.pg_operator o \
                               JOIN pg_catalog.pg_type l ON l.oid = o.oprleft \
                               JOIN pg_catalog.pg_type r ON r.oid = o.oprright \
                               WHERE o.oprname = '=' AND o.oprnamespace <> 'pg_catalog'::pg_catalog.regnamespace";

/// A digest of everything [`Catalog::at_most_one_row`] relies on: which relations each name
/// may mean, the unique keys that qualify with their columns' names and types, and custom
/// `=` operators. Cheap enough to ask every few seconds.
const KEYS_FINGERPRINT: &str = concat!("SELECT pg_catalog.md5(pg_catalog.string_agg(x, ',' ORDER BY x)) FROM ( \
    SELECT 'r' || c.oid || ' ' || n.nspname || '.' || c.relname || ' ' || c.relkind::pg_catalog.text AS x \
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
      WHERE c.relkind IN ('r','v','m','f','p') \
    UNION ALL SELECT 'k' || k.indexrelid || ' ' || ( \
      SELECT pg_catalog.string_agg(a.attname || ':' || a.atttypid, ' ' ORDER BY a.attnum) \
        FROM pg_catalog.pg_attribute a WHERE a.attrelid = k.indrelid AND a.attnum = ANY (k.indkey::pg_catalog.int2[])) \
      FROM (SELECT i.indexrelid, i.indrelid, i.indkey ", unique_key_indexes!(), ") k \
    UNION ALL SELECT 'o' || o.oid FROM pg_catalog.pg_operator o \
      WHERE o.oprname = '=' AND o.oprnamespace <> 'pg_catalog'::pg_catalog.regnamespace) s");

/// Column types whose equality with a literal or a parameter of a fitting type (see
/// [`param_fits`]) is exactly the unique index's: int2, int4, int8, numeric, text,
/// varchar, bpchar, name, uuid.
const KEY_TYPES: &[u32] = &[21, 23, 20, 1700, 25, 1043, 1042, 19, 2950];
const INTEGERS: &[u32] = &[21, 23, 20];
const STRINGS: &[u32] = &[25, 1043];
/// The `unknown` type: an untyped literal or parameter, resolved to the column's type.
const UNKNOWN: u32 = 705;

/// Whether a parameter declared with type `declared` compares with a `column`-typed key
/// without a lossy cast (a float parameter against a bigint key could match many rows).
fn param_fits(column: u32, declared: u32) -> bool {
    declared == 0
        || declared == UNKNOWN
        || declared == column
        || (INTEGERS.contains(&column) && INTEGERS.contains(&declared))
        || (column == 1700 && INTEGERS.contains(&declared))
        || (STRINGS.contains(&column) && STRINGS.contains(&declared))
}

/// A table, view or other relation with its columns.
#[derive(Debug, Default)]
pub struct Relation {
    pub schema: String,
    pub name: String,
    pub is_view: bool,
    /// In attnum order.
    pub columns: Vec<Column>,
    /// Views: the (relation, attnum) pairs the view reads; attnum 0 is a whole row.
    pub reads: Vec<(u32, i16)>,
    /// Views in user schemas: the defining query.
    pub definition: Option<String>,
    /// Attnums of each unique key that bounds an equality lookup to one row.
    pub unique_keys: Vec<Vec<i16>>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Column {
    pub attnum: i16,
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
}

impl Relation {
    pub fn attnum(&self, column: &str) -> Option<i16> {
        self.columns.iter().find(|c| c.name == column).map(|c| c.attnum)
    }
}

/// Relations by OID and by name.
#[derive(Debug, Default)]
pub struct Relations {
    pub by_oid: HashMap<u32, Relation>,
    /// Relation name → OIDs in every schema.
    pub by_name: HashMap<String, Vec<u32>>,
}

impl Relations {
    /// OIDs a reference may mean: in the given schema, or in any schema when unqualified
    /// (the gateway cannot know the search path's choice).
    pub fn lookup(&self, schema: Option<&str>, name: &str) -> Vec<u32> {
        let Some(oids) = self.by_name.get(name) else { return Vec::new() };
        oids.iter()
            .copied()
            .filter(|o| schema.is_none_or(|s| self.by_oid.get(o).is_some_and(|r| r.schema == s)))
            .collect()
    }
}

/// One target's catalog.
#[derive(Default)]
pub struct Catalog {
    pub functions: Functions,
    pub relations: Relations,
    /// Some `=` outside pg_catalog could capture a key comparison.
    custom_equality: bool,
    /// The target's answer to [`KEYS_FINGERPRINT`] when this was loaded.
    keys_fingerprint: Option<String>,
}

impl Catalog {
    /// Whether a statement with these pins changes at most one row: every relation its
    /// name may mean has a unique key whose columns are all pinned, each to a literal or to
    /// a parameter whose declared type (`param_types`, from Parse) fits the column.
    pub fn at_most_one_row(&self, pinned: &sql::Pinned, param_types: &[u32]) -> bool {
        if self.custom_equality {
            return false;
        }
        let oids = self.relations.lookup(pinned.table.schema.as_deref(), &pinned.table.name);
        let keyed = |oid: &u32| {
            let Some(rel) = self.relations.by_oid.get(oid) else { return false };
            rel.unique_keys.iter().any(|key| {
                key.iter().all(|attnum| {
                    let Some(col) = rel.columns.iter().find(|c| c.attnum == *attnum) else { return false };
                    KEY_TYPES.contains(&col.type_oid)
                        && pinned.columns.iter().any(|(name, param)| {
                            *name == col.name
                                && param.is_none_or(|n| {
                                    let declared = param_types.get(n as usize - 1).copied().unwrap_or(0);
                                    param_fits(col.type_oid, declared)
                                })
                        })
                })
            })
        };
        !oids.is_empty() && oids.iter().all(keyed)
    }

    /// Whether running the statement may change the schema, seen or unseen: DDL, procedural
    /// code, writes to system catalogs, or a volatile function that may be user code (a
    /// non-volatile one cannot run DDL).
    pub fn may_change_schema(&self, s: &Statement) -> bool {
        s.operations.iter().any(|o| o.is_ddl() || matches!(o, Operation::Procedural | Operation::DynamicSql | Operation::Call))
            || s.tables.iter().any(|t| {
                t.write && (t.schema.as_deref() == Some("pg_catalog") || (t.schema.is_none() && t.name.starts_with("pg_")))
            })
            || s.functions.iter().any(|f| {
                matches!(self.functions.volatility(f), Volatility::Volatile | Volatility::Unknown) && self.functions.may_be_user_code(f)
            })
    }
}

impl FunctionCatalog for Catalog {
    fn volatility(&self, f: &sql::Function) -> Volatility {
        self.functions.volatility(f)
    }
}

/// Volatility by function name; for an unqualified call the most volatile overload in
/// any schema counts, since the gateway cannot know the search path's choice.
#[derive(Default)]
pub struct Functions {
    by_name: HashMap<String, Volatility>,
    by_qualified: HashMap<(String, String), Volatility>,
    /// Names defined outside pg_catalog.
    outside_catalog: HashSet<String>,
}

fn rank(v: Volatility) -> u8 {
    match v {
        Volatility::Immutable => 0,
        Volatility::Stable => 1,
        Volatility::Volatile => 2,
        Volatility::Unknown => 3,
    }
}

impl Functions {
    fn add(&mut self, schema: String, name: String, v: Volatility) {
        if schema != "pg_catalog" {
            self.outside_catalog.insert(name.clone());
        }
        let worse = |old: &mut Volatility| {
            if rank(v) > rank(*old) {
                *old = v
            }
        };
        worse(self.by_name.entry(name.clone()).or_insert(v));
        worse(self.by_qualified.entry((schema, name)).or_insert(v));
    }
}

impl Functions {
    /// Whether a call may reach a function defined outside pg_catalog (or one unknown).
    fn may_be_user_code(&self, f: &sql::Function) -> bool {
        match &f.schema {
            Some(s) => s != "pg_catalog",
            None => self.outside_catalog.contains(&f.name) || !self.by_name.contains_key(&f.name),
        }
    }
}

impl FunctionCatalog for Functions {
    fn volatility(&self, f: &sql::Function) -> Volatility {
        let found = match &f.schema {
            Some(s) => self.by_qualified.get(&(s.clone(), f.name.clone())),
            None => self.by_name.get(&f.name),
        };
        found.copied().unwrap_or(Volatility::Unknown)
    }
}

/// What asking the target about its unique keys found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// The same keys as at load.
    Confirmed,
    /// Different keys; the catalog was reloaded.
    Changed,
}

pub struct Catalogs {
    by_target: Mutex<HashMap<String, Cached>>,
    /// Bumped at every invalidation: a load that straddles one may have read the schema
    /// from before the change, so it is not cached.
    generation: AtomicU64,
    /// Sessions that let a possible schema change through whose transaction has not ended
    /// yet. While any has, no catalog vouches for a unique key (it may be in the middle of
    /// being dropped).
    changing: AtomicUsize,
    /// How long a check of the target's keys lets the catalog vouch for them: keys dropped
    /// or renamed outside the gateway are noticed within this long.
    keys_trusted_for: Duration,
}

struct Cached {
    loaded: Instant,
    /// When the target last confirmed the keys this catalog knows (a load confirms them too).
    keys_checked: Instant,
    /// A check of the keys is under way.
    checking: bool,
    catalog: Arc<Catalog>,
}

/// What the cached catalog can say about unique keys right now.
pub enum Keys {
    Trusted(Arc<Catalog>),
    /// Not confirmed lately: the caller should start [`Catalogs::check_keys`].
    CheckDue,
    Unknown,
}

impl Catalogs {
    pub fn new(keys_trusted_for: Duration) -> Catalogs {
        Catalogs {
            by_target: Mutex::default(),
            generation: AtomicU64::new(0),
            changing: AtomicUsize::new(0),
            keys_trusted_for,
        }
    }

    pub fn get(&self, target: &str) -> Option<Arc<Catalog>> {
        let map = self.by_target.lock();
        map.get(target).filter(|c| c.loaded.elapsed() < REFRESH).map(|c| c.catalog.clone())
    }

    /// The current catalog, if it can be trusted to say which writes touch at most one row:
    /// loaded since the last schema change the gateway saw end, with none under way, and its
    /// keys confirmed by the target lately (schema changes made outside the gateway).
    pub fn settled(&self, target: &str) -> Keys {
        if self.changing.load(Ordering::SeqCst) > 0 || self.keys_trusted_for.is_zero() {
            return Keys::Unknown;
        }
        let mut map = self.by_target.lock();
        match map.get_mut(target) {
            Some(c) if c.loaded.elapsed() >= REFRESH => Keys::Unknown,
            Some(c) if c.keys_checked.elapsed() < self.keys_trusted_for => Keys::Trusted(c.catalog.clone()),
            Some(c) if !c.checking => {
                c.checking = true;
                Keys::CheckDue
            }
            _ => Keys::Unknown,
        }
    }

    /// The next session on this target reloads the catalog (after DDL changed it).
    pub fn invalidate(&self, target: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.by_target.lock().remove(target);
    }

    /// A session let through a statement that may change the schema.
    pub fn change_began(&self) {
        self.changing.fetch_add(1, Ordering::SeqCst);
    }

    /// That session's transaction ended (or the session did): what it changed is committed
    /// or gone, and the next load sees it.
    pub fn change_ended(&self, target: &str) {
        self.invalidate(target);
        self.changing.fetch_sub(1, Ordering::SeqCst);
    }

    /// Asks the target, over an upstream session of the gateway's own, whether the keys the
    /// cached catalog knows still hold; reloads the catalog when they do not.
    pub async fn check_keys(&self, target: &str, frames: &mut Frames<BoxIo>) -> Result<Option<KeyCheck>, Error> {
        let generation = self.generation.load(Ordering::SeqCst);
        let Some(current) = self.get(target) else { return Ok(None) };
        let mut fingerprint = None;
        query(target, frames, KEYS_FINGERPRINT, |c| fingerprint = Some(text(c[0]))).await?;
        if fingerprint.is_some() && fingerprint == current.keys_fingerprint {
            let mut map = self.by_target.lock();
            if let Some(c) = map.get_mut(target) {
                // Not when a change the gateway saw ended meanwhile: the answer may predate it.
                if self.generation.load(Ordering::SeqCst) == generation && Arc::ptr_eq(&c.catalog, &current) {
                    c.keys_checked = Instant::now();
                }
            }
            return Ok(Some(KeyCheck::Confirmed));
        }
        tracing::info!(target, "unique keys changed outside the gateway; reloading the catalog");
        self.invalidate(target);
        self.load(target, frames).await?;
        Ok(Some(KeyCheck::Changed))
    }

    /// The check [`Catalogs::settled`] asked for is over, whatever its outcome.
    pub fn check_ended(&self, target: &str) {
        if let Some(c) = self.by_target.lock().get_mut(target) {
            c.checking = false;
        }
    }

    /// Loads the catalog over a just-opened upstream session (before the agent uses it).
    pub async fn load(&self, target: &str, frames: &mut Frames<BoxIo>) -> Result<Arc<Catalog>, Error> {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut cat = Catalog::default();
        // First: each query reads its own snapshot, so a change made while this loads leaves
        // the digest older than the keys and the next check reloads.
        query(target, frames, KEYS_FINGERPRINT, |c| cat.keys_fingerprint = Some(text(c[0]))).await?;
        query(target, frames, FUNCTIONS, |c| {
            let vol = match c[2] {
                b"i" => Volatility::Immutable,
                b"s" => Volatility::Stable,
                _ => Volatility::Volatile,
            };
            cat.functions.add(text(c[0]), text(c[1]), vol);
        })
        .await?;
        let rels = &mut cat.relations;
        query(target, frames, COLUMNS, |c| {
            let (Some(oid), Some(attnum)) = (number::<u32>(c[0]), number::<i16>(c[4])) else { return };
            let rel = rels.by_oid.entry(oid).or_insert_with(|| Relation {
                schema: text(c[1]),
                name: text(c[2]),
                is_view: c[3] == b"v",
                ..Relation::default()
            });
            let (Some(type_oid), Some(typmod)) = (number::<u32>(c[6]), number::<i32>(c[7])) else { return };
            rel.columns.push(Column { attnum, name: text(c[5]), type_oid, typmod });
        })
        .await?;
        query(target, frames, VIEW_READS, |c| {
            let (Some(view), Some(read), Some(attnum)) = (number::<u32>(c[0]), number::<u32>(c[1]), number::<i16>(c[2])) else {
                return;
            };
            if let Some(v) = rels.by_oid.get_mut(&view) {
                v.reads.push((read, attnum));
            }
        })
        .await?;
        query(target, frames, VIEW_DEFS, |c| {
            if let Some(v) = number::<u32>(c[0]).and_then(|oid| rels.by_oid.get_mut(&oid)) {
                v.definition = Some(text(c[1]));
            }
        })
        .await?;
        query(target, frames, UNIQUE_KEYS, |c| {
            let (Some(oid), Some(n)) = (number::<u32>(c[0]), number::<usize>(c[1])) else { return };
            let key: Option<Vec<i16>> = text(c[2]).split(' ').take(n).map(|a| a.parse().ok()).collect();
            if let (Some(rel), Some(key)) = (rels.by_oid.get_mut(&oid), key) {
                if key.len() == n && n > 0 {
                    rel.unique_keys.push(key);
                }
            }
        })
        .await?;
        let mut custom_equality = false;
        query(target, frames, CUSTOM_EQUALITY, |c| {
            let operand = |oid: &[u8], kind: &[u8]| {
                number::<u32>(oid).is_none_or(|o| KEY_TYPES.contains(&o) || o == UNKNOWN) || kind == b"p" || kind == b"d"
            };
            custom_equality |= operand(c[0], c[2]) || operand(c[1], c[3]);
        })
        .await?;
        cat.custom_equality = custom_equality;
        let rels = &mut cat.relations;
        for (oid, rel) in &mut rels.by_oid {
            rel.columns.sort_unstable();
            rels.by_name.entry(rel.name.clone()).or_default().push(*oid);
        }
        let cat = Arc::new(cat);
        let mut map = self.by_target.lock();
        // Checked under the lock `invalidate` also takes, so a change cannot slip between.
        if self.generation.load(Ordering::SeqCst) == generation {
            let now = Instant::now();
            map.insert(target.to_string(), Cached { loaded: now, keys_checked: now, checking: false, catalog: cat.clone() });
        }
        Ok(cat)
    }
}

/// Runs one catalog query, handing each row's non-NULL text columns to `row`.
async fn query(
    target: &str,
    frames: &mut Frames<BoxIo>,
    sql: &str,
    mut row: impl FnMut(&[&[u8]]),
) -> Result<(), Error> {
    write_all(&mut frames.io, &Builder::query(sql)).await?;
    let mut failed = None;
    loop {
        let Some((h, frame)) = frames.next().await? else {
            return Err(Error::Upstream { target: target.into(), reason: "closed while reading catalog".into() });
        };
        let body = h.body(&frame);
        match h.tag {
            backend::DATA_ROW => {
                let mut cols = Vec::with_capacity(8);
                if columns(body, &mut cols).is_some() {
                    row(&cols);
                }
            }
            backend::ERROR_RESPONSE => failed = Some(crate::upstream::server_message(body)),
            backend::READY_FOR_QUERY => break,
            _ => {}
        }
    }
    match failed {
        Some(reason) => Err(Error::Upstream { target: target.into(), reason: format!("catalog: {reason}") }),
        None => Ok(()),
    }
}

/// The values of a DataRow; None when it is malformed or has a NULL.
fn columns<'a>(body: &'a [u8], out: &mut Vec<&'a [u8]>) -> Option<()> {
    let n = u16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    let mut rest = body.get(2..)?;
    for _ in 0..n {
        let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        rest = &rest[4..];
        let len = usize::try_from(len).ok()?;
        out.push(rest.get(..len)?);
        rest = &rest[len..];
    }
    Some(())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn number<T: std::str::FromStr>(b: &[u8]) -> Option<T> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unqualified_takes_most_volatile_overload() {
        let mut f = Functions::default();
        f.add("pg_catalog".into(), "now".into(), Volatility::Stable);
        f.add("public".into(), "now".into(), Volatility::Volatile);
        f.add("pg_catalog".into(), "lower".into(), Volatility::Immutable);
        let call = |s: Option<&str>, n: &str| sql::Function { schema: s.map(Into::into), name: n.into() };
        assert_eq!(f.volatility(&call(None, "now")), Volatility::Volatile);
        assert_eq!(f.volatility(&call(Some("pg_catalog"), "now")), Volatility::Stable);
        assert_eq!(f.volatility(&call(None, "lower")), Volatility::Immutable);
        assert_eq!(f.volatility(&call(None, "nope")), Volatility::Unknown);
    }

    fn keyed_catalog() -> Catalog {
        let mut cat = Catalog::default();
        let col = |attnum, name: &str, type_oid| Column { attnum, name: name.into(), type_oid, typmod: -1 };
        let mut add = |oid, schema: &str, name: &str, columns, unique_keys| {
            let rel = Relation { schema: schema.into(), name: name.into(), columns, unique_keys, ..Relation::default() };
            cat.relations.by_oid.insert(oid, rel);
            cat.relations.by_name.entry(name.into()).or_default().push(oid);
        };
        // accounts: key (id bigint); pairs: key (a int, b text); floats: key on a float8.
        add(1, "public", "accounts", vec![col(1, "id", 20), col(2, "balance", 23)], vec![vec![1]]);
        add(2, "public", "pairs", vec![col(1, "a", 23), col(2, "b", 25)], vec![vec![1, 2]]);
        add(3, "public", "floats", vec![col(1, "x", 701)], vec![vec![1]]);
        // Same name in two schemas, one without a key: an unqualified name may mean either.
        add(4, "public", "twin", vec![col(1, "id", 23)], vec![vec![1]]);
        add(5, "other", "twin", vec![col(1, "id", 23)], vec![]);
        cat
    }

    fn pin(schema: Option<&str>, table: &str, columns: &[(&str, Option<u32>)]) -> sql::Pinned {
        sql::Pinned {
            table: sql::Relation { schema: schema.map(Into::into), name: table.into() },
            columns: columns.iter().map(|(c, p)| ((*c).to_owned(), *p)).collect(),
        }
    }

    #[test]
    fn a_write_is_single_row_only_when_a_whole_unique_key_is_pinned() {
        let cat = keyed_catalog();
        assert!(cat.at_most_one_row(&pin(None, "accounts", &[("id", None)]), &[]));
        assert!(cat.at_most_one_row(&pin(Some("public"), "accounts", &[("balance", None), ("id", Some(1))]), &[]));
        assert!(!cat.at_most_one_row(&pin(None, "accounts", &[("balance", None)]), &[]));
        assert!(!cat.at_most_one_row(&pin(Some("other"), "accounts", &[("id", None)]), &[]));
        assert!(!cat.at_most_one_row(&pin(None, "missing", &[("id", None)]), &[]));
        // Part of a composite key is not enough.
        assert!(!cat.at_most_one_row(&pin(None, "pairs", &[("a", None)]), &[]));
        assert!(cat.at_most_one_row(&pin(None, "pairs", &[("a", Some(1)), ("b", Some(2))]), &[]));
        // Float equality is left to the guard.
        assert!(!cat.at_most_one_row(&pin(None, "floats", &[("x", None)]), &[]));
        assert!(!cat.at_most_one_row(&pin(None, "twin", &[("id", None)]), &[]));
        assert!(cat.at_most_one_row(&pin(Some("public"), "twin", &[("id", None)]), &[]));
    }

    #[test]
    fn declared_parameter_types_must_compare_exactly_with_the_key() {
        let cat = keyed_catalog();
        let id = pin(None, "accounts", &[("id", Some(1))]);
        for (declared, fits) in [(0, true), (705, true), (20, true), (23, true), (21, true), (1700, false), (701, false), (25, false)] {
            assert_eq!(cat.at_most_one_row(&id, &[declared]), fits, "bigint key, parameter type {declared}");
        }
        // Only the parameter's own type counts.
        assert!(cat.at_most_one_row(&pin(None, "accounts", &[("id", Some(2))]), &[701, 20]));
        let pair = pin(None, "pairs", &[("a", Some(1)), ("b", Some(2))]);
        assert!(cat.at_most_one_row(&pair, &[23, 1043]));
        assert!(!cat.at_most_one_row(&pair, &[23, 1042]));
        assert!(param_fits(1700, 23) && !param_fits(23, 1700));
    }

    #[test]
    fn a_custom_equality_operator_disables_key_bounds() {
        let mut cat = keyed_catalog();
        cat.custom_equality = true;
        assert!(!cat.at_most_one_row(&pin(None, "accounts", &[("id", None)]), &[]));
    }

    #[test]
    fn schema_changes_seen_and_unseen() {
        let mut cat = Catalog::default();
        cat.functions.add("pg_catalog".into(), "random".into(), Volatility::Volatile);
        cat.functions.add("pg_catalog".into(), "lower".into(), Volatility::Immutable);
        cat.functions.add("app".into(), "tidy".into(), Volatility::Volatile);
        cat.functions.add("app".into(), "label".into(), Volatility::Stable);
        let analyzer = sql::Analyzer::default();
        let changes = |q: &str| analyzer.analyze(q).unwrap().statements.iter().any(|s| cat.may_change_schema(s));
        for q in ["DROP INDEX i", "ALTER TABLE t DROP CONSTRAINT k", "CREATE TEMP TABLE t (a int)", "DO $$ BEGIN END $$",
            "CALL p()", "SELECT tidy()", "SELECT app.label(1), unknown_fn()", "UPDATE pg_index SET indisunique = false",
            "UPDATE pg_catalog.pg_class SET relhasrules = false WHERE oid = 1"]
        {
            assert!(changes(q), "{q}");
        }
        for q in ["SELECT random(), lower('A'), label(1)", "UPDATE t SET a = 1 WHERE id = 2", "SELECT pg_catalog.random()"] {
            assert!(!changes(q), "{q}");
        }
    }

    #[test]
    fn data_row_decoding_is_bounded() {
        let mut body = vec![0, 3];
        for v in [&b"pg_catalog"[..], b"now", b"s"] {
            body.extend_from_slice(&(v.len() as i32).to_be_bytes());
            body.extend_from_slice(v);
        }
        let mut cols = Vec::new();
        assert!(columns(&body, &mut cols).is_some());
        assert_eq!(cols, [&b"pg_catalog"[..], b"now", b"s"]);
        cols.clear();
        assert!(columns(&body[..body.len() - 1], &mut cols).is_none());
        let mut null = vec![0, 1];
        null.extend_from_slice(&(-1i32).to_be_bytes());
        cols.clear();
        assert!(columns(&null, &mut cols).is_none());
    }
}
