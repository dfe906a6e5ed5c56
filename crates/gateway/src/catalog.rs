//! What each target's catalog says about functions (`pg_proc.provolatile`), loaded once
//! per target on a fresh upstream session and refreshed after a while.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use policy::{FunctionCatalog, Volatility};
use wire::{backend, Builder};

use crate::conn::{write_all, BoxIo, Frames};
use crate::Error;

const REFRESH: Duration = Duration::from_secs(300);
const QUERY: &str = "SELECT n.nspname, p.proname, p.provolatile FROM pg_catalog.pg_proc p \
                     JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace";

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
    by_target: Mutex<HashMap<String, (Instant, Arc<Functions>)>>,
}

impl Catalogs {
    pub fn get(&self, target: &str) -> Option<Arc<Functions>> {
        let map = self.by_target.lock();
        map.get(target).filter(|(at, _)| at.elapsed() < REFRESH).map(|(_, f)| f.clone())
    }

    /// Loads the catalog over a just-opened upstream session (before the agent uses it).
    pub async fn load(&self, target: &str, frames: &mut Frames<BoxIo>) -> Result<Arc<Functions>, Error> {
        write_all(&mut frames.io, &Builder::query(QUERY)).await?;
        let mut funcs = Functions::default();
        let mut failed = None;
        loop {
            let Some((h, frame)) = frames.next().await? else {
                return Err(Error::Upstream { target: target.into(), reason: "closed while reading catalog".into() });
            };
            let body = h.body(&frame);
            match h.tag {
                backend::DATA_ROW => {
                    if let Some((schema, name, vol)) = row(body) {
                        funcs.add(schema, name, vol);
                    }
                }
                backend::ERROR_RESPONSE => failed = Some(crate::upstream::server_message(body)),
                backend::READY_FOR_QUERY => break,
                _ => {}
            }
        }
        if let Some(reason) = failed {
            return Err(Error::Upstream { target: target.into(), reason: format!("catalog: {reason}") });
        }
        let funcs = Arc::new(funcs);
        self.by_target.lock().insert(target.to_string(), (Instant::now(), funcs.clone()));
        Ok(funcs)
    }
}

fn row(body: &[u8]) -> Option<(String, String, Volatility)> {
    let mut cols = Vec::with_capacity(3);
    let mut rest = body.get(2..)?;
    for _ in 0..3 {
        let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        rest = &rest[4..];
        let len = usize::try_from(len).ok()?;
        cols.push(rest.get(..len)?);
        rest = &rest[len..];
    }
    let vol = match cols[2] {
        b"i" => Volatility::Immutable,
        b"s" => Volatility::Stable,
        _ => Volatility::Volatile,
    };
    Some((String::from_utf8_lossy(cols[0]).into(), String::from_utf8_lossy(cols[1]).into(), vol))
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
        assert_eq!(row(&body).unwrap().2, Volatility::Stable);
        assert!(row(&body[..body.len() - 1]).is_none());
    }
}
