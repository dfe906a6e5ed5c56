//! The target's prepared-statement names as a session knows them. Parse and SQL `PREPARE`
//! share one namespace at the target, and a Close or DEALLOCATE is skipped when an earlier
//! message of its batch failed. So a name is forgotten only once the target has answered the
//! batch that freed it without an error; until then it may be prepared again only from the
//! same text, and `EXECUTE name` is judged against every body seen for it.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher as _, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use sql::Statement;

/// What the target has answered, as `Outbound` sees it. Batches are numbered by the
/// ReadyForQuery messages before them: batch `b` ends with the `b + 1`-th.
pub(crate) struct Answers {
    ready: AtomicU64,
    /// One more than the batch of the latest ErrorResponse (0: none yet).
    latest_failure: AtomicU64,
    /// Like `latest_failure`, every failure from `watch_from` on: the batches a pending free
    /// may have been sent in.
    failures: Mutex<Vec<u64>>,
    watch_from: AtomicU64,
}

impl Default for Answers {
    fn default() -> Answers {
        Answers {
            ready: AtomicU64::new(0),
            latest_failure: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
            watch_from: AtomicU64::new(u64::MAX),
        }
    }
}

impl Answers {
    /// `seen` ReadyForQuery messages have arrived.
    pub(crate) fn ready(&self, seen: u64) {
        self.ready.store(seen, Ordering::SeqCst);
    }

    /// An ErrorResponse arrived after `seen` ReadyForQuery messages.
    pub(crate) fn error(&self, seen: u64) {
        let failure = seen + 1;
        self.latest_failure.store(failure, Ordering::SeqCst);
        // Pairs with `Names::freed`: each side writes its own value before reading the
        // other's, so a failure of a watched batch is either pushed here or seen there.
        if failure >= self.watch_from.load(Ordering::SeqCst) {
            let mut failures = self.failures.lock();
            if failures.last() != Some(&failure) {
                failures.push(failure);
            }
        }
    }

    /// Whether any batch from `batch` on has failed so far.
    pub(crate) fn failed_since(&self, batch: u64) -> bool {
        self.latest_failure.load(Ordering::SeqCst) > batch
    }
}

/// A Close or DEALLOCATE sent in `batch`; `generation` orders it among registrations.
struct Free {
    batch: u64,
    generation: u64,
    /// `None`: every name (`DEALLOCATE ALL`, `DISCARD ALL`).
    name: Option<Vec<u8>>,
}

#[derive(Default)]
pub(crate) struct Names {
    key: RandomState,
    /// Each name the target may hold: a keyed hash of the Parse text it was made from (None
    /// for SQL `PREPARE`), and when it was registered.
    names: HashMap<Vec<u8>, (Option<u64>, u64)>,
    /// Every body `EXECUTE name` may run, with when it was registered.
    bodies: HashMap<String, Vec<(u64, Statement)>>,
    generation: u64,
    frees: VecDeque<Free>,
}

/// Never freed: a body whose `PREPARE` runs at some later Execute.
const PINNED: u64 = u64::MAX;

impl Names {
    /// The key a Parse of `name` from `text` registers; `None` when the target may still
    /// hold the name made from another text.
    pub(crate) fn parse_key(&self, name: &[u8], text: &[u8]) -> Option<u64> {
        let key = self.key.hash_one(text);
        match self.names.get(name) {
            Some((k, _)) if *k != Some(key) => None,
            _ => Some(key),
        }
    }

    /// A Parse of `name` was forwarded; `EXECUTE name` runs `bodies` too.
    pub(crate) fn parsed(&mut self, name: &[u8], key: u64, bodies: &[Statement]) {
        self.generation += 1;
        let g = self.generation;
        self.names.insert(name.to_vec(), (Some(key), g));
        for body in bodies {
            self.add_body(String::from_utf8_lossy(name).into_owned(), body, g);
        }
    }

    /// `PREPARE name AS body` was forwarded; `now` when it runs in this message, otherwise
    /// (a Parse) at an Execute the gateway cannot tie to a batch, and the name stays.
    pub(crate) fn prepared(&mut self, name: &str, body: &Statement, now: bool) {
        self.generation += 1;
        let g = if now { self.generation } else { PINNED };
        let entry = self.names.entry(name.as_bytes().to_vec()).or_insert((None, g));
        *entry = (None, entry.1.max(g));
        self.add_body(name.to_owned(), body, g);
    }

    fn add_body(&mut self, name: String, body: &Statement, g: u64) {
        let bodies = self.bodies.entry(name).or_default();
        match bodies.iter_mut().find(|(_, s)| s == body) {
            Some(seen) => seen.0 = seen.0.max(g),
            None => bodies.push((g, body.clone())),
        }
    }

    /// Every body seen for `name`.
    pub(crate) fn bodies(&self, name: &str) -> impl Iterator<Item = &Statement> {
        self.bodies.get(name).into_iter().flatten().map(|(_, s)| s)
    }

    /// The one body seen for `name`, if there is exactly one.
    pub(crate) fn only_body(&self, name: &str) -> Option<&Statement> {
        match self.bodies.get(name).map(Vec::as_slice) {
            Some([(_, body)]) => Some(body),
            _ => None,
        }
    }

    /// A Close of `name` (or a DEALLOCATE of it or of all, `None`) was forwarded in `batch`.
    pub(crate) fn freed(&mut self, name: Option<&[u8]>, batch: u64, answers: &Answers) {
        if self.frees.is_empty() {
            answers.watch_from.store(batch + 1, Ordering::SeqCst);
        }
        // Skipped at the target: its batch has already failed.
        if answers.latest_failure.load(Ordering::SeqCst) == batch + 1 {
            if self.frees.is_empty() {
                answers.watch_from.store(u64::MAX, Ordering::SeqCst);
            }
            return;
        }
        self.generation += 1;
        self.frees.push_back(Free { batch, generation: self.generation, name: name.map(<[u8]>::to_vec) });
    }

    /// Forgets what frees the target has carried out: those whose batch it answered without
    /// an error. A free in a failed batch is dropped and the name kept.
    pub(crate) fn settle(&mut self, answers: &Answers) {
        let Some(first) = self.frees.front() else {
            return;
        };
        let ready = answers.ready.load(Ordering::SeqCst);
        if first.batch >= ready {
            return;
        }
        let failed: Vec<u64> = {
            let mut failures = answers.failures.lock();
            let done = failures.iter().copied().filter(|f| *f <= ready).collect();
            failures.retain(|f| *f > ready);
            done
        };
        while let Some(free) = self.frees.front() {
            if free.batch >= ready {
                break;
            }
            if let Some(free) = self.frees.pop_front().filter(|f| !failed.contains(&(f.batch + 1))) {
                self.forget(free.name.as_deref(), free.generation);
            }
        }
        let watch = self.frees.front().map_or(u64::MAX, |f| f.batch + 1);
        answers.watch_from.store(watch, Ordering::SeqCst);
    }

    /// Drops what was registered for `name` (every name: `None`) before `generation`.
    fn forget(&mut self, name: Option<&[u8]>, generation: u64) {
        match name {
            Some(name) => {
                if self.names.get(name).is_some_and(|(_, g)| *g < generation) {
                    self.names.remove(name);
                }
                let key = String::from_utf8_lossy(name);
                if let Some(bodies) = self.bodies.get_mut(key.as_ref()) {
                    bodies.retain(|(g, _)| *g > generation);
                    if bodies.is_empty() {
                        self.bodies.remove(key.as_ref());
                    }
                }
            }
            None => {
                self.names.retain(|_, (_, g)| *g > generation);
                self.bodies.retain(|_, bodies| {
                    bodies.retain(|(g, _)| *g > generation);
                    !bodies.is_empty()
                });
            }
        }
    }

    /// How many names and bodies are held: for tests of what is forgotten.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        (self.names.len(), self.bodies.values().map(Vec::len).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> Statement {
        let a = sql::Analyzer::new(sql::Limits::default());
        a.analyze_uncached(text).expect("parses").statements[0].clone()
    }

    #[test]
    fn a_close_answered_without_error_frees_the_name() {
        let answers = Answers::default();
        let mut n = Names::default();
        let k = n.parse_key(b"s1", b"SELECT 1").expect("free name");
        n.parsed(b"s1", k, &[body("SELECT 1")]);
        assert!(n.parse_key(b"s1", b"SELECT 2").is_none(), "held by another text");
        n.freed(Some(b"s1"), 1, &answers);
        n.settle(&answers);
        assert_eq!(n.held(), (1, 1), "not answered yet");
        answers.ready(2);
        n.settle(&answers);
        assert_eq!(n.held(), (0, 0));
        assert!(n.parse_key(b"s1", b"SELECT 2").is_some());
    }

    #[test]
    fn a_close_in_a_failed_batch_keeps_the_name() {
        let answers = Answers::default();
        let mut n = Names::default();
        let k = n.parse_key(b"s1", b"SELECT 1").expect("free name");
        n.parsed(b"s1", k, &[body("SELECT 1")]);
        n.freed(Some(b"s1"), 3, &answers);
        answers.error(3);
        answers.ready(4);
        n.settle(&answers);
        assert_eq!(n.held(), (1, 1));
        // A batch that failed before the Close was judged is not watched at all.
        n.freed(Some(b"s1"), 3, &answers);
        assert!(n.frees.is_empty());
        // An error in a later batch does not hide that the earlier one was clean.
        n.freed(Some(b"s1"), 4, &answers);
        answers.error(5);
        answers.ready(6);
        n.settle(&answers);
        assert_eq!(n.held(), (0, 0));
        assert_eq!(answers.watch_from.load(Ordering::SeqCst), u64::MAX);
        assert!(answers.failures.lock().is_empty());
    }

    #[test]
    fn a_name_registered_after_the_close_survives_it() {
        let answers = Answers::default();
        let mut n = Names::default();
        n.prepared("p", &body("SELECT 1"), true);
        n.freed(None, 0, &answers);
        n.prepared("p", &body("SELECT 2"), true);
        let k = n.parse_key(b"s1", b"SELECT 3").expect("free name");
        n.parsed(b"s1", k, &[body("SELECT 3")]);
        answers.ready(1);
        n.settle(&answers);
        assert_eq!(n.held(), (2, 2));
        assert_eq!(n.bodies("p").count(), 1);
        assert!(n.only_body("p").is_some_and(|b| *b == body("SELECT 2")));
    }

    #[test]
    fn a_prepare_inside_a_parse_is_never_freed() {
        let answers = Answers::default();
        let mut n = Names::default();
        n.prepared("p", &body("SELECT 1"), false);
        n.freed(Some(b"p"), 0, &answers);
        answers.ready(1);
        n.settle(&answers);
        assert_eq!(n.held(), (1, 1));
    }
}
