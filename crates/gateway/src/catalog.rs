//! What each target's catalog says about functions (`pg_proc.provolatile`) and relations
//! (columns, and the columns each view reads), loaded once per target on a fresh upstream
//! session and refreshed after a while or after the gateway let DDL through.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use policy::{FunctionCatalog, Volatility};
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
        let worse = |old: &mut Volatility| {
            if rank(v) > rank(*old) {
                *old = v
            }
        };
        worse(self.by_name.entry(name.clone()).or_insert(v));
        worse(self.by_qualified.entry((schema, name)).or_insert(v));
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

#[derive(Default)]
pub struct Catalogs {
    by_target: Mutex<HashMap<String, (Instant, Arc<Catalog>)>>,
}

impl Catalogs {
    pub fn get(&self, target: &str) -> Option<Arc<Catalog>> {
        let map = self.by_target.lock();
        map.get(target).filter(|(at, _)| at.elapsed() < REFRESH).map(|(_, f)| f.clone())
    }

    /// The next session on this target reloads the catalog (after DDL changed it).
    pub fn invalidate(&self, target: &str) {
        self.by_target.lock().remove(target);
    }

    /// Loads the catalog over a just-opened upstream session (before the agent uses it).
    pub async fn load(&self, target: &str, frames: &mut Frames<BoxIo>) -> Result<Arc<Catalog>, Error> {
        let mut cat = Catalog::default();
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
        for (oid, rel) in &mut rels.by_oid {
            rel.columns.sort_unstable();
            rels.by_name.entry(rel.name.clone()).or_default().push(*oid);
        }
        let cat = Arc::new(cat);
        self.by_target.lock().insert(target.to_string(), (Instant::now(), cat.clone()));
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
