//! The background thread: journal records → store in batches, then signed checkpoints.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::log::{Appended, Inner};
use crate::record::{now_rfc3339, Checkpoint, Record, GENESIS};
use crate::store::{self, Store};

/// How long the writer gathers records before a store transaction. Longer batches dirty each
/// page of the session index once per batch instead of once per few records; 50 ms cut the
/// store's CPU per record by about a third against 5 ms, and a reader waits at most that long.
const GROUP_COMMIT: Duration = Duration::from_millis(50);
const IDLE_TICK: Duration = Duration::from_millis(250);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const CLOSING_ATTEMPTS: u32 = 3;

pub(crate) struct WriterSettings {
    pub(crate) stream: String,
    pub(crate) batch_max: usize,
    pub(crate) checkpoint_every: u64,
    pub(crate) checkpoint_every_time: Duration,
    pub(crate) checkpoint_file: Option<PathBuf>,
    pub(crate) rotate_bytes: u64,
    pub(crate) key: SigningKey,
}

pub(crate) struct Recovered {
    /// The newest stored record of this gateway's stream: the chain head.
    pub(crate) last: Option<Record>,
}

pub(crate) fn run(
    cfg: Config,
    base_dir: PathBuf,
    settings: WriterSettings,
    journal_records: Vec<Record>,
    recovered_tx: mpsc::SyncSender<Result<Recovered>>,
    inner_rx: mpsc::Receiver<Arc<Inner>>,
    rx: mpsc::Receiver<Appended>,
) {
    let (store, last, last_cp_seq) = match recover(&cfg, &base_dir, &settings, &journal_records) {
        Ok(r) => r,
        Err(e) => {
            let _ = recovered_tx.send(Err(e));
            return;
        }
    };
    drop(journal_records);
    if recovered_tx.send(Ok(Recovered { last: last.clone() })).is_err() {
        return;
    }
    let Ok(inner) = inner_rx.recv() else {
        return;
    };
    // The journal now holds just `last`, and nothing has been appended yet.
    let last_end = inner.head.lock().journal.end();
    Writer {
        inner,
        store,
        settings,
        rx,
        pending: VecDeque::new(),
        last,
        last_end,
        last_cp_seq,
        last_cp_at: Instant::now(),
    }
    .run();
}

/// Moves journal records the store lacks into it, checking that the two agree.
fn recover(
    cfg: &Config,
    base_dir: &std::path::Path,
    settings: &WriterSettings,
    journal: &[Record],
) -> Result<(Box<dyn Store>, Option<Record>, u64)> {
    let mut store = store::open(cfg, base_dir)?;
    let mut streams: Vec<&str> = Vec::new();
    for r in journal {
        if !streams.contains(&r.stream.as_str()) {
            streams.push(&r.stream);
        }
    }
    for stream in streams {
        let records: Vec<&Record> = journal.iter().filter(|r| r.stream == stream).collect();
        let head = store.last_record(stream)?;
        let head_seq = head.as_ref().map_or(0, |h| h.seq);
        if let Some(h) = &head {
            if let Some(j) = records.iter().find(|r| r.seq == h.seq) {
                if j.hash != h.hash {
                    return Err(Error::Store(format!(
                        "journal and store disagree on stream {stream} seq {}: two writers share one stream?",
                        h.seq
                    )));
                }
            }
        }
        let new: Vec<Record> = records.into_iter().filter(|r| r.seq > head_seq).cloned().collect();
        if let Some(first) = new.first() {
            let expected_prev = head.as_ref().map_or(GENESIS, |h| h.hash);
            if first.seq != head_seq + 1 || first.prev_hash != expected_prev {
                return Err(Error::Store(format!(
                    "store ends at stream {stream} seq {head_seq} but the journal continues from seq {}; \
                     records are missing from both (store replaced or restored from an old backup?)",
                    first.seq
                )));
            }
            for chunk in new.chunks(settings.batch_max) {
                let chunk: Vec<_> = chunk.iter().map(Record::borrowed).collect();
                store.insert(&chunk)?;
            }
            tracing::info!(stream, records = new.len(), "replayed audit journal into the store");
        }
    }
    let last = store.last_record(&settings.stream)?;
    let last_seq = last.as_ref().map_or(0, |r| r.seq);
    let last_cp_seq = store.checkpoints(&settings.stream)?.last().map_or(0, |c| c.seq);
    if last_cp_seq > last_seq {
        return Err(Error::Store(format!(
            "store ends at stream {} seq {last_seq} but a signed checkpoint covers seq {last_cp_seq}: \
             records were removed; run `drawbridge audit verify`",
            settings.stream
        )));
    }
    Ok((store, last, last_cp_seq))
}

struct Writer {
    inner: Arc<Inner>,
    store: Box<dyn Store>,
    settings: WriterSettings,
    rx: mpsc::Receiver<Appended>,
    pending: VecDeque<Appended>,
    last: Option<Record>,
    /// Where `last`'s journal line ends.
    last_end: u64,
    last_cp_seq: u64,
    last_cp_at: Instant,
}

impl Writer {
    fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        let mut closing_failures = 0;
        loop {
            if self.pending.is_empty() {
                match self.rx.recv_timeout(IDLE_TICK) {
                    Ok(a) => {
                        self.pending.push_back(a);
                        // Group commit: the records are already durable in the journal, so
                        // waiting a moment costs nothing and turns a transaction (and a
                        // wake-up) per record into one per batch.
                        std::thread::sleep(GROUP_COMMIT);
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        self.inner.mark_stored(0);
                        self.maybe_checkpoint(false);
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            let closing = self.drain();
            match self.commit() {
                Ok(()) => {
                    backoff = MIN_BACKOFF;
                    self.maybe_rotate();
                    self.prepare_journal_window();
                }
                Err(e) => {
                    tracing::warn!(error = %e, backlog = self.pending.len(), "audit store write failed; records wait in the journal");
                    self.inner.set_error(&e);
                    if closing {
                        closing_failures += 1;
                        if closing_failures >= CLOSING_ATTEMPTS {
                            break;
                        }
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    if let Err(e) = self.store.reconnect() {
                        self.inner.set_error(&e);
                    }
                }
            }
        }
        // Seal what reached the store so `verify` can vouch for all of it.
        self.maybe_checkpoint(true);
    }

    /// Takes everything waiting in the channel; true once every sender is gone.
    fn drain(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(a) => self.pending.push_back(a),
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
    }

    fn commit(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            let n = self.pending.len().min(self.settings.batch_max);
            let stream = &self.settings.stream;
            let batch: Vec<_> = self.pending.range(..n).map(|a| a.record(stream)).collect();
            self.store.insert(&batch)?;
            let last = batch[n - 1].to_record();
            drop(batch);
            if let Some(a) = self.pending.drain(..n).next_back() {
                self.last_end = a.journal_end;
            }
            self.inner.mark_stored(last.seq);
            self.last = Some(last);
            self.maybe_checkpoint(false);
        }
        *self.inner.last_error.lock() = None;
        Ok(())
    }

    fn prepare_journal_window(&self) {
        let Some(next) = self.inner.head.lock().journal.next_window_due() else {
            return;
        };
        match next.prepare() {
            Ok(prepared) => self.inner.head.lock().journal.offer(prepared),
            // Appends map their own window instead.
            Err(e) => tracing::debug!(error = %e, "could not prepare the next audit journal window"),
        }
    }

    fn maybe_checkpoint(&mut self, force: bool) {
        let Some(last) = &self.last else {
            return;
        };
        if last.seq <= self.last_cp_seq {
            return;
        }
        let due = last.seq - self.last_cp_seq >= self.settings.checkpoint_every
            || self.last_cp_at.elapsed() >= self.settings.checkpoint_every_time;
        if !(due || force) {
            return;
        }
        let cp = Checkpoint::sign(&self.settings.key, &self.settings.stream, last.seq, &last.hash, now_rfc3339());
        if let Err(e) = self.store.insert_checkpoint(&cp) {
            self.inner.set_error(&e);
            return;
        }
        self.last_cp_seq = cp.seq;
        self.last_cp_at = Instant::now();
        self.inner.checkpoints.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = &self.settings.checkpoint_file {
            if let Err(e) = append_checkpoint_file(path, &cp) {
                self.inner.set_error(Error::io("appending checkpoint file", path.clone(), e));
            }
        }
    }

    /// Once the journal is large, shrink it to the newest stored record and the lines after
    /// it (records appended while this batch was being stored).
    fn maybe_rotate(&mut self) {
        let Some(last) = &self.last else {
            return;
        };
        let mut head = self.inner.head.lock();
        if head.journal.bytes() < self.settings.rotate_bytes {
            return;
        }
        // Not worth it unless it at least halves the journal (not while the store lags).
        if head.journal.end().saturating_sub(self.last_end) * 2 > head.journal.bytes() {
            return;
        }
        if let Err(e) = head.journal.rewrite(Some(last), Some(self.last_end)) {
            self.inner.set_error(&e);
        }
    }
}

fn append_checkpoint_file(path: &std::path::Path, cp: &Checkpoint) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut line = serde_json::to_string(cp).map_err(std::io::Error::other)?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(line.as_bytes())?;
    f.sync_data()
}
