//! `AuditLog`: the handle the gateway shares between sessions.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::journal::{self, DirLock, Journal};
use crate::record::{record_hash, Hash, RecordRef, Timestamp, GENESIS};
use crate::writer::{self, Recovered, WriterSettings};

/// Counters for /metrics and /healthz.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// This gateway's chain.
    pub stream: String,
    /// Records appended since `open`.
    pub appended: u64,
    /// Sequence number of the newest record (in the journal).
    pub last_seq: u64,
    /// Sequence number of the newest record in the store.
    pub stored_seq: u64,
    /// Records in the journal not yet in the store.
    pub backlog: u64,
    /// Checkpoints signed since `open`.
    pub checkpoints: u64,
    /// The most recent journal or store error, cleared when the store catches up.
    pub last_error: Option<String>,
    pub healthy: bool,
}

/// A record on its way to the store: its journal line, then its session id. The line has
/// every column but the stream (the writer's own), the kind (a constant) and the session id
/// (inside the event's JSON, so copied after the line). One allocation per record.
pub(crate) struct Appended {
    text: String,
    at: Range<usize>,
    event: Range<usize>,
    /// Where the line ends and the session id (if any) begins.
    line_end: usize,
    has_session: bool,
    kind: &'static str,
    seq: u64,
    prev_hash: Hash,
    hash: Hash,
    /// Where its line ends in the journal's history.
    pub(crate) journal_end: u64,
}

impl Appended {
    pub(crate) fn record<'a>(&'a self, stream: &'a str) -> RecordRef<'a> {
        RecordRef {
            stream,
            seq: self.seq,
            at: &self.text[self.at.clone()],
            prev_hash: &self.prev_hash,
            hash: &self.hash,
            kind: self.kind,
            session: self.has_session.then(|| &self.text[self.line_end..]),
            event: &self.text[self.event.clone()],
        }
    }
}

/// The chain head and the journal, behind the one lock `append` takes.
pub(crate) struct Head {
    pub(crate) journal: Journal,
    pub(crate) seq: u64,
    pub(crate) hash: Hash,
    pub(crate) tx: Option<mpsc::Sender<Appended>>,
}

/// State shared with the writer thread.
pub(crate) struct Inner {
    pub(crate) stream: String,
    pub(crate) head: Mutex<Head>,
    pub(crate) appended: AtomicU64,
    pub(crate) last_seq: AtomicU64,
    pub(crate) stored_seq: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    pub(crate) journal_ok: AtomicBool,
    /// Milliseconds since `epoch` when the store last had everything or accepted a batch.
    pub(crate) store_ok_ms: AtomicU64,
    pub(crate) epoch: Instant,
    pub(crate) last_error: Mutex<Option<String>>,
    pub(crate) stored_cv: Condvar,
    pub(crate) stored_lock: Mutex<()>,
    max_backlog: u64,
    max_backlog_ms: u64,
}

impl Inner {
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn set_error(&self, e: impl std::fmt::Display) {
        *self.last_error.lock() = Some(e.to_string());
    }

    pub(crate) fn mark_stored(&self, seq: u64) {
        let _guard = self.stored_lock.lock();
        self.stored_seq.fetch_max(seq, Ordering::SeqCst);
        self.store_ok_ms.store(self.now_ms(), Ordering::Relaxed);
        self.stored_cv.notify_all();
    }

    fn backlog(&self) -> u64 {
        self.last_seq
            .load(Ordering::SeqCst)
            .saturating_sub(self.stored_seq.load(Ordering::SeqCst))
    }

    fn healthy(&self) -> bool {
        let backlog = self.backlog();
        let failing_ms = self.now_ms().saturating_sub(self.store_ok_ms.load(Ordering::Relaxed));
        self.journal_ok.load(Ordering::Relaxed)
            && backlog <= self.max_backlog
            && !(backlog > 0 && failing_ms > self.max_backlog_ms)
    }
}

/// Tamper-evident audit records: durable in the local journal when `append` returns, moved to
/// the store in batches by a background thread, sealed by signed checkpoints.
pub struct AuditLog {
    inner: Arc<Inner>,
    writer: Mutex<Option<JoinHandle<()>>>,
    _lock: DirLock,
}

impl AuditLog {
    /// Opens the journal and the store (creating both on first start), replays journal records
    /// the store lacks, and starts the writer. Fails when the store is unreachable or disagrees
    /// with the journal.
    pub fn open(cfg: &Config, base_dir: &Path) -> Result<AuditLog> {
        cfg.check()?;
        let journal_dir = cfg.resolve(base_dir, &cfg.journal_dir);
        let lock = journal::lock_dir(&journal_dir)?;
        let stream = journal::stream_id(&journal_dir, cfg.instance.as_deref())?;
        let key = crate::keys::load_or_create(&cfg.resolve(base_dir, &cfg.key_file))?;
        let (mut journal, pending) = Journal::open(&journal_dir, cfg.fsync)?;

        let settings = WriterSettings {
            stream: stream.clone(),
            batch_max: cfg.batch_max,
            checkpoint_every: cfg.checkpoint_every,
            checkpoint_every_time: Duration::from_secs(cfg.checkpoint_secs),
            checkpoint_file: cfg.checkpoint_file.as_ref().map(|p| cfg.resolve(base_dir, p)),
            rotate_bytes: cfg.journal_rotate_bytes,
            key,
        };
        let (recovered_tx, recovered_rx) = mpsc::sync_channel::<Result<Recovered>>(1);
        let (tx, rx) = mpsc::channel::<Appended>();
        let (inner_tx, inner_rx) = mpsc::sync_channel::<Arc<Inner>>(1);
        let cfg_store = cfg.clone();
        let base = base_dir.to_path_buf();
        // The store is opened on the writer thread: the sync PostgreSQL client must not run
        // inside the caller's async runtime.
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer::run(cfg_store, base, settings, pending, recovered_tx, inner_rx, rx))
            .map_err(|e| Error::io("starting audit writer thread", PathBuf::from("."), e))?;
        let recovered = match recovered_rx.recv() {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let _ = handle.join();
                return Err(e);
            }
            Err(_) => {
                let _ = handle.join();
                return Err(Error::Store("audit writer thread stopped during recovery".into()));
            }
        };

        // Everything is in the store now: keep only the head in the journal.
        journal.rewrite(recovered.last.as_ref(), None)?;
        let (seq, hash) = recovered.last.as_ref().map_or((0, GENESIS), |r| (r.seq, r.hash));
        let epoch = Instant::now();
        let inner = Arc::new(Inner {
            stream,
            head: Mutex::new(Head {
                journal,
                seq,
                hash,
                tx: Some(tx),
            }),
            appended: AtomicU64::new(0),
            last_seq: AtomicU64::new(seq),
            stored_seq: AtomicU64::new(seq),
            checkpoints: AtomicU64::new(0),
            journal_ok: AtomicBool::new(true),
            store_ok_ms: AtomicU64::new(0),
            epoch,
            last_error: Mutex::new(None),
            stored_cv: Condvar::new(),
            stored_lock: Mutex::new(()),
            max_backlog: cfg.max_backlog,
            max_backlog_ms: cfg.max_backlog_secs.saturating_mul(1000),
        });
        if inner_tx.send(inner.clone()).is_err() {
            let _ = handle.join();
            return Err(Error::Store("audit writer thread stopped during recovery".into()));
        }
        Ok(AuditLog {
            inner,
            writer: Mutex::new(Some(handle)),
            _lock: lock,
        })
    }

    /// Records one event; it is in the journal (and so survives a crash of this process) when
    /// this returns. Returns the record's sequence number. An error means the record was NOT
    /// kept: the caller should refuse the statement.
    pub fn append(&self, event: Event) -> Result<u64> {
        let kind = event.kind();
        let session = event.session();
        let json = serde_json::to_string(&event)?;
        let mut line = String::with_capacity(json.len() + 256 + session.map_or(0, str::len));
        let inner = &*self.inner;
        let mut head = inner.head.lock();
        let head = &mut *head;
        if head.tx.is_none() {
            return Err(Error::Closed);
        }
        let seq = head.seq + 1;
        // Taken under the lock so times never go backwards along the chain.
        let at = Timestamp::now();
        let at = at.as_str();
        let prev_hash = head.hash;
        let hash = record_hash(&inner.stream, seq, at, &prev_hash, &json);
        let record = RecordRef {
            stream: &inner.stream,
            seq,
            at,
            prev_hash: &prev_hash,
            hash: &hash,
            kind,
            session,
            event: &json,
        };
        let spans = record.write_json_line(&mut line);
        line.push('\n');
        let line_end = line.len();
        if let Err(e) = head.journal.write_line(line.as_bytes()) {
            let err = Error::io("writing audit journal", head.journal.path(), e);
            inner.journal_ok.store(false, Ordering::Relaxed);
            inner.set_error(&err);
            return Err(err);
        }
        inner.journal_ok.store(true, Ordering::Relaxed);
        head.seq = seq;
        head.hash = hash;
        inner.last_seq.store(seq, Ordering::SeqCst);
        inner.appended.fetch_add(1, Ordering::Relaxed);
        // Sent under the lock so the writer sees records in order. If the writer is gone the
        // record is still in the journal and the next start moves it.
        if let Some(tx) = &head.tx {
            line.push_str(session.unwrap_or_default());
            let appended = Appended {
                text: line,
                at: spans.at,
                event: spans.event,
                line_end,
                has_session: session.is_some(),
                kind,
                seq,
                prev_hash,
                hash,
                journal_end: head.journal.end(),
            };
            if tx.send(appended).is_err() {
                inner.set_error("audit writer thread has stopped; records stay in the journal");
            }
        }
        Ok(seq)
    }

    pub fn stats(&self) -> Stats {
        let i = &*self.inner;
        Stats {
            stream: i.stream.clone(),
            appended: i.appended.load(Ordering::Relaxed),
            last_seq: i.last_seq.load(Ordering::SeqCst),
            stored_seq: i.stored_seq.load(Ordering::SeqCst),
            backlog: i.backlog(),
            checkpoints: i.checkpoints.load(Ordering::Relaxed),
            last_error: i.last_error.lock().clone(),
            healthy: i.healthy(),
        }
    }

    /// False when records can't be made durable: the journal can't be written, or the store
    /// has fallen too far behind (`max_backlog` records or `max_backlog_secs`).
    pub fn healthy(&self) -> bool {
        self.inner.healthy()
    }

    /// This gateway's stream id.
    pub fn stream(&self) -> &str {
        &self.inner.stream
    }

    /// Waits until every record appended so far is in the store.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        let target = self.inner.last_seq.load(Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        let mut guard = self.inner.stored_lock.lock();
        while self.inner.stored_seq.load(Ordering::SeqCst) < target {
            if self.inner.stored_cv.wait_until(&mut guard, deadline).timed_out() {
                let why = self.inner.last_error.lock().clone().unwrap_or_default();
                return Err(Error::Store(format!("store did not catch up within {timeout:?}: {why}")));
            }
        }
        Ok(())
    }

    /// Stops the writer after it has moved what it can into the store and sealed it with a
    /// checkpoint. Dropping the log does the same.
    pub fn close(&self) {
        drop(self.inner.head.lock().tx.take());
        if let Some(handle) = self.writer.lock().take() {
            let _ = handle.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}
