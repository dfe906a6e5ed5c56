//! The local append-only journal: one JSON line per record, in place before `append` returns.
//!
//! Lines are copied into a shared memory mapping of the file rather than written with
//! `write(2)`: the page cache holds them the moment the copy ends, so a killed process loses
//! nothing, and an append costs a copy instead of a system call made under the chain's lock.
//! Only a window at the end of the file is mapped, and the file is allocated a little past
//! its records so the copy has room; the unwritten rest reads as zeros and is cut off again on
//! close and on the next open.
//!
//! Touching a fresh page of the mapping costs a page fault (and the filesystem's work to
//! back it) in the middle of an append, under the chain's lock. So the writer thread maps
//! the next window ahead of time and faults all of its pages in at once, off that lock; the
//! append then only switches to it.
//!
//! Records stay here until the store has them; the file is then rewritten to hold only the
//! newest record, so the chain head survives even when the store is unreachable.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use memmap2::{MmapMut, MmapOptions};

use crate::error::{Error, Result};
use crate::record::Record;

pub(crate) const FILE_NAME: &str = "journal.jsonl";

/// How much of the file's end is mapped at once, and how far the file is allocated ahead.
/// Mapping only a window keeps the cost of moving it proportional to what was written in
/// it, not to the size of the file.
const WINDOW: u64 = 4 << 20;
/// How far a prepared window reaches back into the one before it, so a line that starts
/// near the end of a window still fits in the next one.
const OVERLAP: u64 = 64 << 10;

pub(crate) struct Journal {
    path: PathBuf,
    file: File,
    /// The end of the file, mapped once the first line needs room.
    window: Option<Window>,
    /// The window after it, mapped and faulted in by the writer thread.
    prepared: Option<Window>,
    /// Bumped when the file is replaced, so a window prepared for the old one is dropped.
    generation: u64,
    /// Length of the records; from here to the end of the file are zeros.
    bytes: u64,
    /// Where this file starts in the journal's history: positions handed out by
    /// [`Journal::end`] stay valid across a rewrite that drops the file's front.
    base: u64,
    fsync: bool,
}

struct Window {
    map: MmapMut,
    /// Where in the file the mapping starts.
    at: u64,
}

fn journal_error(path: &Path, reason: String) -> Error {
    Error::Journal {
        path: path.to_path_buf(),
        reason,
    }
}

fn open_rw(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

/// Maps `file` for writing.
#[allow(unsafe_code)]
fn map(file: &File, at: u64, len: u64) -> std::io::Result<MmapMut> {
    // SAFETY: the mapping is only ever used as a byte buffer and never outlives `file`. The
    // file lives in a journal directory this process holds an exclusive lock on, so no other
    // gateway writes or shortens it; a third party truncating it underneath us is outside
    // what the journal can defend against (as for any memory-mapped store).
    unsafe { MmapOptions::new().offset(at).len(len as usize).map_mut(file) }
}

impl Journal {
    /// Opens or creates the journal and returns the records in it. A torn last line (from a
    /// crash in the middle of a write) is cut off; damage anywhere else is an error.
    pub(crate) fn open(dir: &Path, fsync: bool) -> Result<(Journal, Vec<Record>)> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating journal directory", dir, e))?;
        let path = dir.join(FILE_NAME);
        let mut file = open_rw(&path).map_err(|e| Error::io("opening journal", &path, e))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(|e| Error::io("reading journal", &path, e))?;
        // The records end where the reserved zeros begin (JSON text never holds a NUL byte).
        let used = data.iter().position(|&b| b == 0).unwrap_or(data.len());
        let data_len = data.len();
        data.truncate(used);

        let mut records = Vec::new();
        let mut good_len = 0usize;
        let mut offset = 0usize;
        let mut line_no = 0usize;
        while offset < data.len() {
            line_no += 1;
            let Some(nl) = data[offset..].iter().position(|&b| b == b'\n') else {
                break; // torn: no newline
            };
            let line = &data[offset..offset + nl];
            let is_last = offset + nl + 1 >= data.len();
            let parsed = std::str::from_utf8(line)
                .map_err(|e| e.to_string())
                .and_then(|s| Record::from_json_line(s).map_err(|e| e.to_string()));
            match parsed {
                Ok(r) => records.push(r),
                Err(_) if is_last => break,
                Err(e) => return Err(journal_error(&path, format!("line {line_no} is damaged: {e}"))),
            }
            offset += nl + 1;
            good_len = offset;
        }
        if good_len < used {
            tracing::warn!(path = %path.display(), dropped = used - good_len, "cutting a torn record off the audit journal");
        }
        if good_len < data_len {
            file.set_len(good_len as u64).map_err(|e| Error::io("truncating journal", &path, e))?;
        }
        check_links(&path, &records)?;
        Ok((
            Journal {
                path,
                file,
                window: None,
                prepared: None,
                generation: 0,
                bytes: good_len as u64,
                base: 0,
                fsync,
            },
            records,
        ))
    }

    /// Copies a whole line in after the last one; with `fsync`, flushed to the disk before
    /// returning. An error leaves the journal as it was.
    pub(crate) fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let end = self.bytes + line.len() as u64;
        let w = match self.window.take() {
            Some(w) if w.at + w.map.len() as u64 >= end => w,
            _ => self.next_window(end)?,
        };
        let w = self.window.insert(w);
        let start = (self.bytes - w.at) as usize;
        w.map[start..start + line.len()].copy_from_slice(line);
        if self.fsync {
            if let Err(e) = w.map.flush_range(start, line.len()) {
                w.map[start..start + line.len()].fill(0);
                return Err(e);
            }
        }
        self.bytes = end;
        Ok(())
    }

    /// Maps a new window from the page holding the end of the records to past `end`,
    /// allocating the file that far first. Allocating, rather than only setting the length,
    /// makes the filesystem set the space aside now: a full disk is an error here instead of
    /// a fault in the middle of a copy.
    fn next_window(&mut self, end: u64) -> std::io::Result<Window> {
        let at = self.last_page();
        let len = (end - at).div_ceil(WINDOW) * WINDOW;
        let file_len = self.file.metadata()?.len();
        if let Some(p) = self.prepared.take() {
            let p_end = p.at + p.map.len() as u64;
            // The file could have been cut back since (a failed allocation below).
            if p.at <= at && p_end >= end && file_len >= p_end {
                return Ok(p);
            }
        }
        if file_len < at + len {
            self.allocate(file_len, at + len)?;
        }
        Ok(Window { map: map(&self.file, at, len)?, at })
    }

    fn allocate(&self, from: u64, to: u64) -> std::io::Result<()> {
        let grown = match rustix::fs::fallocate(&self.file, rustix::fs::FallocateFlags::empty(), from, to - from) {
            Ok(()) => Ok(()),
            // A filesystem without fallocate: write the zeros.
            Err(_) => {
                use std::os::unix::fs::FileExt as _;
                self.file.write_all_at(&vec![0u8; (to - from) as usize], from)
            }
        };
        if let Err(e) = grown.and_then(|()| if self.fsync { self.file.sync_all() } else { Ok(()) }) {
            let _ = self.file.set_len(from);
            return Err(e);
        }
        Ok(())
    }

    /// Where the page holding the end of the records starts: a window must start on a page.
    fn last_page(&self) -> u64 {
        let page = rustix::param::page_size() as u64;
        self.bytes / page * page
    }

    /// Where the next window should go, once the current one is half used and none is
    /// prepared yet. The caller maps it with [`NextWindow::prepare`] outside the chain's lock
    /// and hands it back with [`Journal::offer`].
    pub(crate) fn next_window_due(&self) -> Option<NextWindow> {
        if self.prepared.is_some() {
            return None;
        }
        let at = match &self.window {
            Some(w) => {
                let w_end = w.at + w.map.len() as u64;
                if w_end - self.bytes > WINDOW / 2 {
                    return None;
                }
                w_end.saturating_sub(OVERLAP).max(w.at)
            }
            None => self.last_page(),
        };
        let file = self.file.try_clone().ok()?;
        Some(NextWindow { file, at, generation: self.generation })
    }

    /// Keeps a window prepared for this file; one for a file since replaced is dropped.
    pub(crate) fn offer(&mut self, prepared: PreparedWindow) {
        if prepared.generation == self.generation && self.prepared.is_none() {
            self.prepared = Some(prepared.window);
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The position just past the last line, in the journal's history.
    pub(crate) fn end(&self) -> u64 {
        self.base + self.bytes
    }

    /// Replaces the journal, atomically, with one holding `keep` (the newest stored record)
    /// and then the lines from position `from` on (those not stored yet; none without it).
    pub(crate) fn rewrite(&mut self, keep: Option<&Record>, from: Option<u64>) -> Result<()> {
        let mut content = Vec::new();
        if let Some(r) = keep {
            content.extend_from_slice(r.to_json_line().as_bytes());
            content.push(b'\n');
        }
        let kept = content.len() as u64;
        if let Some(from) = from {
            let start = from.saturating_sub(self.base).min(self.bytes);
            let mut tail = vec![0; (self.bytes - start) as usize];
            {
                use std::os::unix::fs::FileExt as _;
                // The page cache is the mapping's: this reads what was copied in.
                self.file.read_exact_at(&mut tail, start)
            }
            .map_err(|e| Error::io("reading journal", &self.path, e))?;
            content.extend_from_slice(&tail);
        }
        self.window = None;
        self.prepared = None;
        self.generation += 1;
        let tmp = self.path.with_extension("jsonl.tmp");
        let write = || -> std::io::Result<File> {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
            f.write_all(&content)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            open_rw(&self.path)
        };
        self.file = write().map_err(|e| Error::io("rewriting journal", &self.path, e))?;
        self.base = from.map_or(0, |f| f.saturating_sub(kept));
        self.bytes = content.len() as u64;
        Ok(())
    }
}

/// A window to map ahead of the appends, with its own handle on the journal file.
pub(crate) struct NextWindow {
    file: File,
    at: u64,
    generation: u64,
}

pub(crate) struct PreparedWindow {
    window: Window,
    generation: u64,
}

impl NextWindow {
    /// Allocates the file under the window, maps it and faults every page in (one call for
    /// the lot, cheaper than a fault per page). Only grows the file: appends run meanwhile.
    pub(crate) fn prepare(self) -> std::io::Result<PreparedWindow> {
        let end = self.at + WINDOW;
        let file_len = self.file.metadata()?.len();
        if file_len < end {
            rustix::fs::fallocate(&self.file, rustix::fs::FallocateFlags::empty(), file_len, end - file_len)?;
        }
        let map = map(&self.file, self.at, WINDOW)?;
        // Kernels before 5.14 refuse the advice; the window still works, a fault per page.
        let _ = map.advise(memmap2::Advice::PopulateWrite);
        Ok(PreparedWindow { window: Window { map, at: self.at }, generation: self.generation })
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Leave only records behind; a crash leaves the zeros, which `open` cuts off.
        self.window = None;
        self.prepared = None;
        let _ = self.file.set_len(self.bytes);
    }
}

/// Within each stream, journal records must follow one another.
fn check_links(path: &Path, records: &[Record]) -> Result<()> {
    let mut last: std::collections::HashMap<&str, &Record> = std::collections::HashMap::new();
    for r in records {
        if r.computed_hash_at(r.seq) != r.hash {
            return Err(journal_error(path, format!("record {} seq {} does not match its hash", r.stream, r.seq)));
        }
        if let Some(prev) = last.get(r.stream.as_str()) {
            if r.seq != prev.seq + 1 || r.prev_hash != prev.hash {
                return Err(journal_error(
                    path,
                    format!("record {} seq {} does not follow seq {}", r.stream, r.seq, prev.seq),
                ));
            }
        }
        last.insert(&r.stream, r);
    }
    Ok(())
}

/// Holds an exclusive lock on the journal directory for as long as it lives, so two
/// processes never extend one chain.
pub(crate) struct DirLock {
    _file: File,
}

pub(crate) fn lock_dir(dir: &Path) -> Result<DirLock> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating journal directory", dir, e))?;
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("opening journal lock", &path, e))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|e| {
        journal_error(
            dir,
            format!("in use by another process ({e}); give each gateway its own journal_dir"),
        )
    })?;
    Ok(DirLock { _file: file })
}

/// The stream id: from config, else the one saved at first start, else a new one saved now.
pub(crate) fn stream_id(dir: &Path, configured: Option<&str>) -> Result<String> {
    if let Some(name) = configured {
        return Ok(name.to_owned());
    }
    let path = dir.join("stream");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("reading stream id", &path, e)),
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating journal directory", dir, e))?;
    let id = format!("gw-{}", hex::encode(rand::random::<[u8; 6]>()));
    std::fs::write(&path, format!("{id}\n")).map_err(|e| Error::io("writing stream id", &path, e))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{record_hash, GENESIS};

    fn rec(seq: u64, prev: [u8; 32]) -> Record {
        let event = format!(r#"{{"kind":"auth_failed","agent":"a{seq}","client":"c","target":"t"}}"#);
        let at = "2025-01-01T00:00:00.000000Z".to_owned();
        Record {
            hash: record_hash("s", seq, &at, &prev, &event),
            stream: "s".into(),
            seq,
            at,
            prev_hash: prev,
            kind: "auth_failed".into(),
            session: None,
            event,
        }
    }

    #[test]
    fn torn_tail_is_cut_and_damage_elsewhere_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, recs) = Journal::open(dir.path(), false).unwrap();
        assert!(recs.is_empty());
        let a = rec(1, GENESIS);
        let b = rec(2, a.hash);
        for r in [&a, &b] {
            j.write_line(format!("{}\n", r.to_json_line()).as_bytes()).unwrap();
        }
        j.write_line(b"{\"stream\":\"s\",\"se").unwrap();
        drop(j);
        let (_, recs) = Journal::open(dir.path(), false).unwrap();
        assert_eq!(recs, vec![a.clone(), b.clone()]);
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(text.ends_with("}\n"));

        let damaged = text.replacen("\"a1\"", "\"zz\"", 1);
        std::fs::write(dir.path().join(FILE_NAME), damaged).unwrap();
        let err = Journal::open(dir.path(), false).err().unwrap();
        assert!(err.to_string().contains("seq 1 does not match"), "{err}");
    }

    #[test]
    fn lines_survive_a_crash_and_the_reserved_zeros_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let (mut j, _) = Journal::open(dir.path(), false).unwrap();
        let mut recs = vec![rec(1, GENESIS)];
        for seq in 2..=20_000 {
            let prev = recs[recs.len() - 1].hash;
            recs.push(rec(seq, prev));
        }
        let mut text = String::new();
        for r in &recs {
            let line = format!("{}\n", r.to_json_line());
            j.write_line(line.as_bytes()).unwrap();
            text.push_str(&line);
        }
        // Past the first window, so the mapping moved at least once.
        assert!(text.len() as u64 > WINDOW);
        // A crash: no Drop, the file still ends in zeros.
        std::mem::forget(j);
        let on_disk = std::fs::read(&path).unwrap();
        assert!(on_disk.len() > text.len());
        assert_eq!(&on_disk[..text.len()], text.as_bytes());
        assert!(on_disk[text.len()..].iter().all(|&b| b == 0));

        let (j, back) = Journal::open(dir.path(), false).unwrap();
        assert_eq!(back, recs);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        drop(j);
        // A clean close leaves the records alone too.
        let (mut j, _) = Journal::open(dir.path(), false).unwrap();
        let next = rec(20_001, recs[recs.len() - 1].hash);
        j.write_line(format!("{}\n", next.to_json_line()).as_bytes()).unwrap();
        drop(j);
        let after = std::fs::read_to_string(&path).unwrap();
        assert_eq!(after, format!("{text}{}\n", next.to_json_line()));
    }

    #[test]
    fn appends_move_into_the_window_prepared_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), false).unwrap();
        let mut recs = vec![rec(1, GENESIS)];
        let mut prepared_at = Vec::new();
        let write = |j: &mut Journal, r: &Record| j.write_line(format!("{}\n", r.to_json_line()).as_bytes()).unwrap();
        write(&mut j, &recs[0]);
        while prepared_at.len() < 3 {
            let prev = recs[recs.len() - 1].hash;
            let r = rec(recs.len() as u64 + 1, prev);
            write(&mut j, &r);
            recs.push(r);
            if let Some(next) = j.next_window_due() {
                prepared_at.push(next.at);
                j.offer(next.prepare().unwrap());
                assert!(j.next_window_due().is_none(), "one prepared window at a time");
            }
            if let (Some(w), Some(&at)) = (&j.window, prepared_at.last()) {
                // Once the appends pass the old window, they write into the prepared one.
                if w.at == at {
                    assert!(j.prepared.is_none());
                }
            }
        }
        // Every prepared window but the newest was taken over, one window after another.
        assert!(prepared_at.windows(2).all(|p| p[1] > p[0] && p[1] - p[0] == WINDOW - OVERLAP));
        assert_eq!(j.window.as_ref().unwrap().at, prepared_at[1]);
        let text: String = recs.iter().map(|r| format!("{}\n", r.to_json_line())).collect();
        let on_disk = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(&on_disk[..text.len()], text.as_bytes());
        assert!(on_disk[text.len()..].iter().all(|&b| b == 0));

        // A prepared window for a file that has since been replaced is not used.
        let stale = j.next_window_due().or_else(|| {
            j.prepared = None;
            j.next_window_due()
        });
        let stale = stale.unwrap().prepare().unwrap();
        let last = recs[recs.len() - 1].clone();
        j.rewrite(Some(&last), None).unwrap();
        j.offer(stale);
        assert!(j.prepared.is_none());
        drop(j);
        let (_, back) = Journal::open(dir.path(), false).unwrap();
        assert_eq!(back, vec![last]);
    }

    #[test]
    fn rewrite_keeps_only_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), false).unwrap();
        let a = rec(1, GENESIS);
        let b = rec(2, a.hash);
        for r in [&a, &b] {
            j.write_line(format!("{}\n", r.to_json_line()).as_bytes()).unwrap();
        }
        j.rewrite(Some(&b), None).unwrap();
        let c = rec(3, b.hash);
        j.write_line(format!("{}\n", c.to_json_line()).as_bytes()).unwrap();
        drop(j);
        let (_, recs) = Journal::open(dir.path(), false).unwrap();
        assert_eq!(recs, vec![b, c]);
    }

    #[test]
    fn stream_id_is_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = stream_id(dir.path(), None).unwrap();
        assert!(a.starts_with("gw-"));
        assert_eq!(stream_id(dir.path(), None).unwrap(), a);
        assert_eq!(stream_id(dir.path(), Some("east")).unwrap(), "east");
    }
}
