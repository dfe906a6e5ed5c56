//! One agent session, and the path of every statement through it:
//!
//! client frame → `wire` view → `sql` facts (cached) → `policy` decision → forward,
//! refuse, or run under a row limit → upstream responses → client.
//!
//! Two halves run side by side in one task. `Inbound` reads the agent's frames, judges
//! them and writes to the target. `Outbound` reads the target's frames and writes them to
//! the agent byte-exact, except where `Inbound` queued an `Expect` telling it to hold,
//! replace or drop a response. `Inbound` queues each expectation before it writes the
//! frames that will cause the response, so `Outbound` always knows what it is reading.
//!
//! A refusal never just skips a message: the gateway sends the target a statement that
//! fails to parse in its place, so the target's transaction state is exactly what the
//! failing statement would have left (an aborted transaction, an extended-protocol batch
//! discarded until Sync), and `Outbound` swaps the target's syntax error for the refusal.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{oneshot, Notify};

use policy::{Decision, Effect};
use sql::{Analysis, Operation, Statement};
use wire::{backend, frontend, Builder};

use crate::catalog::{Catalog, Catalogs};
use crate::conn::{BoxIo, Frames};
use crate::masking::{ResultMask, SessionMasks};
use crate::prepared::{Answers, Names};
use crate::server::{DecisionKey, DecisionKeyRef, Shared};
use crate::Error;

pub use policy::Principal;

/// Replaces a refused message at the target: it cannot parse, so it cannot do anything.
const POISON: &str = "drawbridge refused";

/// The target tells statement and portal names apart by their first 63 bytes only
/// (NAMEDATALEN - 1), so a longer name could stand for one object under two keys here.
const MAX_NAME: usize = 63;

#[derive(Default)]
pub struct SessionStats {
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
    pub statements: u64,
    pub refused: u64,
}

/// State both halves read.
struct Flags {
    /// Transaction status from the last ReadyForQuery.
    status: AtomicU8,
    /// The client encoding lets the gateway read SQL as the target will.
    encoding_safe: AtomicBool,
    /// standard_conforming_strings is on, as the gateway's parser assumes.
    strings_standard: AtomicBool,
    bytes_to_client: AtomicU64,
    /// The agent has said goodbye (Terminate or end of stream): the target closing is expected.
    client_done: AtomicBool,
    /// This session let through a statement that may change the schema: the number of the
    /// ReadyForQuery that answers it (0: none pending). The first idle ReadyForQuery from
    /// there on ends the change.
    schema_change_at: AtomicU64,
    /// Which batches the target has answered and which failed, in the numbering of
    /// `Inbound::ready_sent`.
    answers: Answers,
    /// CopyInResponse messages seen.
    copy_starts: AtomicU64,
    /// Woken when a COPY starts or an error arrives.
    copy_event: Notify,
}

/// However a session ends, a schema change it had under way is over (committed or rolled
/// back with its connection).
struct Settle<'a> {
    flags: &'a Flags,
    catalogs: &'a Catalogs,
    target: &'a str,
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        if self.flags.schema_change_at.swap(0, Ordering::SeqCst) != 0 {
            self.catalogs.change_ended(self.target);
        }
    }
}

/// `sql::encoding_is_safe` for a name as the target reports it.
pub fn encoding_is_safe(name: &[u8]) -> bool {
    std::str::from_utf8(name).is_ok_and(sql::encoding_is_safe)
}

/// A message's analysis and the decision on each statement.
pub struct Judged {
    pub analysis: Arc<Analysis>,
    pub decisions: Vec<Decision>,
    pub verdict: Verdict,
    /// `/metrics` counters of this message's decisions, bumped at every use.
    counters: Vec<Arc<AtomicU64>>,
    /// Each statement's facts as JSON, made once for the audit log (empty without one).
    facts: Vec<audit::Json>,
    /// Running it may change the schema (see `Catalog::may_change_schema`).
    schema_change: bool,
}

impl Judged {
    fn new(
        shared: &Shared,
        analysis: Arc<Analysis>,
        decisions: Vec<Decision>,
        verdict: Verdict,
        schema_change: bool,
    ) -> Arc<Judged> {
        let mut counters: Vec<_> = decisions
            .iter()
            .map(|d| shared.metrics.statement_counter(d.effect.name(), d.rules.first().map_or("", |r| r.as_str())))
            .collect();
        if counters.is_empty() {
            if let Verdict::Refuse(_) = verdict {
                counters.push(shared.metrics.statement_counter("deny", "unjudgeable"));
            }
        }
        let facts = match shared.audit {
            Some(_) => analysis
                .statements
                .iter()
                .map(audit::Json::summary)
                .collect(),
            None => Vec::new(),
        };
        Arc::new(Judged { analysis, decisions, verdict, counters, facts, schema_change })
    }

    fn count(&self) {
        for c in &self.counters {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Clone)]
pub enum Verdict {
    /// Run it; `limits[i]` is the affected-row limit of statement i, if any.
    Run { limits: Vec<Option<u64>> },
    /// Refuse it with this ErrorResponse.
    Refuse(Arc<Vec<u8>>),
    /// Run it only once an operator approves.
    Approve { rule: String, reason: String, approval: policy::file::Approval },
}

impl Verdict {
    fn limited(&self) -> bool {
        matches!(self, Verdict::Run { limits } if limits.iter().any(Option::is_some))
    }
}

fn refusal(code: &str, message: String, hint: Option<&str>) -> Verdict {
    Verdict::Refuse(Arc::new(Builder::error("ERROR", code, &message, hint)))
}

/// What `Outbound` must do with the target's next responses.
enum Expect {
    /// Forward everything through the next ReadyForQuery; sent at this time.
    Sync(Instant),
    /// Drop everything through the next ReadyForQuery (the gateway's own statements).
    Swallow,
    /// Forward everything before the next ReadyForQuery and drop that (the gateway's own Sync).
    Quiet,
    /// Forward until the next ErrorResponse and send this one instead.
    ReplaceError(Arc<Vec<u8>>),
    /// A simple Query under row limits: hold its CommandCompletes and ReadyForQuery, then
    /// report the rows each statement changed.
    Guard { limits: Vec<Option<u64>>, report: oneshot::Sender<GuardReport> },
    /// The extended-protocol Execute number `index` of this batch is under a row limit:
    /// hold its CommandComplete and report.
    GuardExecute { index: u32, limit: u64, report: oneshot::Sender<GuardReport> },
    /// Answer of the gateway's COMMIT after a guarded query: on success release what was
    /// held; on failure forward the error.
    Commit,
    /// Answer of the gateway's ROLLBACK after a guarded query: send `refusal` if given,
    /// then the ReadyForQuery.
    Rollback { refusal: Option<Arc<Vec<u8>>> },
    /// Write what was held now.
    Release,
    /// Forget what was held.
    DropHeld,
    /// Tell the caller the transaction status once everything before has been answered.
    Barrier(oneshot::Sender<u8>),
    /// Write this to the agent and end the session.
    Fatal(Vec<u8>),
    /// The next answered statement or Execute is this audited statement.
    Track(u64, Instant),
    /// Write these bytes to the agent now (a notice).
    Write(Vec<u8>),
}

impl Expect {
    /// Kinds `Outbound` must act on without waiting for the target to send anything.
    fn wakes(&self) -> bool {
        matches!(
            self,
            Expect::Release
                | Expect::DropHeld
                | Expect::Barrier(_)
                | Expect::Fatal(_)
                | Expect::Write(_)
                | Expect::GuardExecute { .. }
        )
    }
}

/// Expectations from `Inbound` to `Outbound`. Most wake nobody: `Outbound` reads them when
/// the target's answer arrives, and they were queued before the frames that cause it. This
/// keeps the common path free of wake-ups.
#[derive(Default)]
struct Mailbox {
    queue: parking_lot::Mutex<Queues>,
    notify: Notify,
    closed: AtomicBool,
}

#[derive(Default)]
struct Queues {
    expect: VecDeque<Expect>,
    slots: VecDeque<Slot>,
}

/// A result the target will send while masking is on: whose it is, so `Outbound` can mask
/// it with the right plan.
struct Slot {
    /// ReadyForQuery messages the target sends before this result.
    seq: u64,
    kind: SlotKind,
    masks: Arc<SessionMasks>,
    /// The statement that produces it; None when the gateway cannot know (EXECUTE of an
    /// unknown body).
    source: Option<(Arc<Analysis>, usize)>,
    /// Audit number.
    audit: Option<u64>,
    mask: Option<ResultMask>,
    copy: Option<mask::CopyRewriter>,
    /// A binary COPY of masked columns: its data is swallowed and an error sent instead.
    refused_copy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotKind {
    /// A statement of a simple Query: RowDescription, rows, completion.
    Statement,
    /// An Execute, preceded by the gateway's own Describe of its portal (`described` false
    /// until that answer arrives).
    Execute { described: bool },
    /// The agent's own Describe: its RowDescription or NoData.
    Describe,
}

impl Slot {
    fn statement(&self) -> Option<&Statement> {
        self.source.as_ref().and_then(|(a, i)| a.statements.get(*i))
    }
}

impl Mailbox {
    fn send(&self, e: Expect) {
        let wake = e.wakes();
        self.queue.lock().expect.push_back(e);
        if wake {
            self.notify.notify_one();
        }
    }

    fn slot(&self, s: Slot) {
        self.queue.lock().slots.push_back(s);
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    fn drain_into(&self, out: &mut VecDeque<Expect>, slots: &mut VecDeque<Slot>) {
        let mut q = self.queue.lock();
        if !q.expect.is_empty() {
            out.append(&mut q.expect);
        }
        if !q.slots.is_empty() {
            slots.append(&mut q.slots);
        }
    }
}

#[derive(Debug)]
enum GuardReport {
    /// Within the limit; the rows changed.
    Within { rows: Option<u64> },
    /// Over the limit (or a count the gateway could not read): must not stand.
    Over { rows: Option<u64>, limit: u64 },
    /// The statement failed or was skipped; the target already undid it.
    Failed,
}

/// Protocol-level prepared statements and portals as the gateway judged them.
enum Prepared {
    /// With the audit number of the Parse that judged it, and — for a statement that needs
    /// approval — its text and (for a portal) the Bind's parameters, since approval is asked
    /// for each execution with the values it will run with.
    /// `param_types`: the types Parse declared, when any is not left to the server.
    Allowed { judged: Arc<Judged>, id: u64, approval: Option<Arc<Approvable>>, param_types: Option<Arc<[u32]>> },
    /// Refused here: the target never saw it, so the name is still free there.
    Refused(Arc<Vec<u8>>),
    /// Made by SQL `PREPARE` (one namespace with Parse at the target). Its body is judged
    /// at each `EXECUTE`; a Bind to it is refused.
    BySql,
}

struct Approvable {
    text: String,
    params: Option<Vec<u8>>,
}

impl Approvable {
    /// What operators see and what a retry-mode approval is bound to.
    fn describe(&self) -> String {
        match &self.params {
            None => self.text.clone(),
            Some(p) => {
                let hex: String = p.iter().map(|b| format!("{b:02x}")).collect();
                format!("{}\n-- with Bind parameters (hex): {hex}", self.text)
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    shared: Arc<Shared>,
    session: Arc<str>,
    principal: Principal,
    target: String,
    catalog: Arc<Catalog>,
    encoding_safe: bool,
    client: Frames<BoxIo>,
    server: Frames<BoxIo>,
    stats: &mut SessionStats,
) -> Result<(), Error> {
    let flags = Flags {
        status: AtomicU8::new(b'I'),
        encoding_safe: AtomicBool::new(encoding_safe),
        strings_standard: AtomicBool::new(true),
        bytes_to_client: AtomicU64::new(0),
        client_done: AtomicBool::new(false),
        schema_change_at: AtomicU64::new(0),
        answers: Answers::default(),
        copy_starts: AtomicU64::new(0),
        copy_event: Notify::new(),
    };
    let _settle = Settle { flags: &flags, catalogs: &shared.catalogs, target: &target };
    let (client_r, client_w) = tokio::io::split(client.io);
    let (server_r, server_w) = tokio::io::split(server.io);
    let mailbox = Mailbox::default();

    let mut inbound = Inbound {
        shared: &shared,
        agent: principal.agent.as_str().into(),
        principal: &principal,
        target: target.as_str().into(),
        catalog,
        flags: &flags,
        client: Frames::with_buffer(client_r, client.buf, wire::MAX_MESSAGE_LEN),
        server: server_w,
        out: Vec::with_capacity(16 * 1024),
        expect: &mailbox,
        statements: HashMap::new(),
        portals: HashMap::new(),
        batch_open: false,
        copy_in: None,
        names: Names::default(),
        settings_at: None,
        unnamed_batch: 0,
        masks: None,
        masks_policy: 0,
        ready_sent: 0,
        batch_executes: 0,
        stats: SessionStats::default(),
        session: session.clone(),
        next_statement: 0,
    };
    let mut outbound = Outbound {
        flags: &flags,
        target: &target,
        server: Frames::with_buffer(server_r, server.buf, wire::MAX_MESSAGE_LEN),
        client: client_w,
        expect: &mailbox,
        queue: VecDeque::new(),
        out: Vec::with_capacity(16 * 1024),
        held: Vec::new(),
        batch: Batch::default(),
        shared: &shared,
        session,
        tracking: VecDeque::new(),
        slots: VecDeque::new(),
        ready_seen: 0,
        strict_from: None,
        outcomes: Vec::new(),
        outcomes_due: Box::pin(tokio::time::sleep(Duration::ZERO)),
    };

    let result = {
        let a = inbound.run();
        let b = outbound.run();
        tokio::pin!(a, b);
        tokio::select! {
            biased;
            r = &mut b => r,
            r = &mut a => {
                // Let queued answers (a refusal, a FATAL) reach the agent before closing.
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut b).await;
                r
            }
        }
    };
    outbound.record_outcomes();
    *stats = std::mem::take(&mut inbound.stats);
    stats.bytes_to_client = flags.bytes_to_client.load(Ordering::Relaxed);
    result
}

/// Agent → target.
struct Inbound<'a> {
    shared: &'a Arc<Shared>,
    agent: Arc<str>,
    principal: &'a Principal,
    target: Arc<str>,
    catalog: Arc<Catalog>,
    flags: &'a Flags,
    client: Frames<ReadHalf<BoxIo>>,
    server: WriteHalf<BoxIo>,
    /// Frames to write to the target at the end of this read.
    out: Vec<u8>,
    expect: &'a Mailbox,
    statements: HashMap<Vec<u8>, Prepared>,
    /// Each portal with the batch its Bind was sent in.
    portals: HashMap<Vec<u8>, (u64, Prepared)>,
    /// Extended-protocol messages have been sent since the last Sync.
    batch_open: bool,
    /// A COPY FROM STDIN was forwarded in this batch when this many COPYs had started, and
    /// the agent has not ended its data yet.
    copy_in: Option<(u64, u64)>,
    /// The statement names the target may hold, and the bodies `EXECUTE name` may run.
    names: Names,
    /// An Execute that may change how SQL is read was forwarded when this many answers
    /// had been asked for; its effect is unknown until the target answers a later Sync.
    settings_at: Option<u64>,
    /// The batch (answers asked for before it) of the latest Parse of the unnamed statement.
    unnamed_batch: u64,
    /// The masking this agent is under, for the policy version it was built from.
    masks: Option<Arc<SessionMasks>>,
    /// Address of the policy `masks` was built from.
    masks_policy: usize,
    /// Query and Sync messages written to the target: each gets one ReadyForQuery.
    ready_sent: u64,
    /// Executes forwarded since the last Sync.
    batch_executes: u32,
    stats: SessionStats,
    session: Arc<str>,
    /// Audit number of the next statement.
    next_statement: u64,
}

impl Inbound<'_> {
    async fn run(&mut self) -> Result<(), Error> {
        let r = self.relay().await;
        self.flags.client_done.store(true, Ordering::Relaxed);
        self.expect.close();
        if let Err(Error::Protocol(e)) = &r {
            let msg = format!("drawbridge: invalid message from client: {e}");
            self.send(Expect::Fatal(Builder::error("FATAL", "08P01", &msg, None)));
        }
        r
    }

    async fn relay(&mut self) -> Result<(), Error> {
        let idle = self.shared.config.server.idle_timeout_secs;
        loop {
            while let Some(h) = self.client.complete()? {
                let frame = self.client.buf.split_to(h.total);
                self.stats.bytes_from_client += h.total as u64;
                if !self.message(h.tag, &frame).await? {
                    self.flush().await?;
                    return Ok(());
                }
            }
            self.flush().await?;
            let more = if idle > 0 {
                match tokio::time::timeout(Duration::from_secs(idle), self.client.fill()).await {
                    Ok(r) => r?,
                    Err(_) => {
                        let msg = "drawbridge: terminating connection due to idle timeout";
                        self.send(Expect::Fatal(Builder::error("FATAL", "57P05", msg, None)));
                        return Ok(());
                    }
                }
            } else {
                self.client.fill().await?
            };
            if !more {
                if !self.client.buf.is_empty() {
                    return Err(Error::Protocol(wire::Error::Malformed("truncated frame")));
                }
                return Ok(());
            }
        }
    }

    fn send(&self, e: Expect) {
        self.expect.send(e);
    }

    async fn flush(&mut self) -> Result<(), Error> {
        if !self.out.is_empty() {
            self.ready_sent += ready_answers(&self.out);
            self.server.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Handles one client frame; `false` ends the session.
    async fn message(&mut self, tag: u8, frame: &[u8]) -> Result<bool, Error> {
        let body = &frame[5..];
        if matches!(tag, frontend::QUERY | frontend::FUNCTION_CALL) && self.batch_open {
            // The target skips a Query in a batch that has failed, without answering it, so
            // it would not end the batch as counted here. End the batch with a Sync first;
            // its ReadyForQuery is the gateway's own.
            self.send(Expect::Quiet);
            self.sync_frame(&Builder::sync());
        }
        if matches!(tag, frontend::PARSE | frontend::BIND | frontend::EXECUTE | frontend::DESCRIBE | frontend::CLOSE) {
            self.batch_open = true;
        }
        match tag {
            frontend::QUERY => self.query(frame, frontend::query(body)?).await?,
            frontend::PARSE => {
                let p = frontend::parse(body)?;
                if self.refuse_long_names(&[p.name]) {
                    return Ok(true);
                }
                let param_types = p.param_types().any(|t| t != 0).then(|| p.param_types().collect());
                self.parse(frame, p.name, p.query, param_types).await?;
            }
            frontend::BIND => {
                let b = frontend::bind(body)?;
                let batch = self.batch();
                if self.refuse_long_names(&[b.portal, b.statement]) {
                    return Ok(true);
                }
                if b.statement.is_empty() && !self.ran_since(self.unnamed_batch).await? {
                    self.refuse_in_batch(unnamed_uncertain());
                    self.portals.insert(b.portal.to_vec(), (batch, Prepared::Refused(unnamed_uncertain())));
                    return Ok(true);
                }
                let judged = match self.statements.get(b.statement) {
                    Some(Prepared::Allowed { judged, id, approval, param_types }) => Prepared::Allowed {
                        judged: judged.clone(),
                        id: *id,
                        param_types: param_types.clone(),
                        approval: approval.as_ref().map(|a| {
                            let params = body.get(b.portal.len() + b.statement.len() + 2..).map(<[u8]>::to_vec);
                            Arc::new(Approvable { text: a.text.clone(), params })
                        }),
                    },
                    Some(Prepared::Refused(r)) => Prepared::Refused(r.clone()),
                    Some(Prepared::BySql) => Prepared::Refused(sql_prepared_bind()),
                    None => Prepared::Refused(unknown_statement()),
                };
                match &judged {
                    Prepared::Allowed { .. } => self.out.extend_from_slice(frame),
                    Prepared::Refused(r) => self.refuse_in_batch(r.clone()),
                    Prepared::BySql => self.refuse_in_batch(unknown_statement()),
                }
                self.portals.insert(b.portal.to_vec(), (batch, judged));
            }
            frontend::EXECUTE => self.execute(frame, frontend::execute(body)?).await?,
            frontend::CLOSE => {
                let (kind, name) = frontend::target(body, "Close")?;
                if self.refuse_long_names(&[name]) {
                    return Ok(true);
                }
                if kind == b'S' {
                    self.statements.remove(name);
                    if !name.is_empty() {
                        self.names.settle(&self.flags.answers);
                        let batch = self.batch();
                        self.names.freed(Some(name), batch, &self.flags.answers);
                    }
                } else {
                    self.portals.remove(name);
                }
                self.out.extend_from_slice(frame);
            }
            frontend::DESCRIBE => {
                if self.refuse_long_names(&[frontend::target(body, "Describe")?.1]) {
                    return Ok(true);
                }
                if let Some(m) = self.masking() {
                    self.push_slot(SlotKind::Describe, &m, None, None);
                }
                self.out.extend_from_slice(frame);
            }
            frontend::SYNC => {
                // The target ignores Sync in copy-in mode; counted, it would shift every
                // later answer by one.
                if !self.copy_started().await? {
                    self.send(Expect::Sync(Instant::now()));
                    self.sync_frame(frame);
                }
            }
            frontend::COPY_DONE | frontend::COPY_FAIL => {
                self.copy_in = None;
                self.out.extend_from_slice(frame);
            }
            frontend::FUNCTION_CALL => {
                // Calls a function by OID with no SQL to judge.
                let r = refusal("42501", "drawbridge: the fast-path function call protocol is not allowed".into(), None);
                self.refuse_query(r);
            }
            frontend::TERMINATE => {
                self.out.extend_from_slice(frame);
                return Ok(false);
            }
            // Describe, Flush, COPY data, and anything unknown (the target rejects it).
            _ => self.out.extend_from_slice(frame),
        }
        Ok(true)
    }

    /// Simple protocol: judge every statement; run all or none.
    async fn query(&mut self, frame: &[u8], text: &[u8]) -> Result<(), Error> {
        if !self.settings_settled().await? {
            self.stats.refused += 1;
            self.refuse_query(Verdict::Refuse(settings_unsettled()));
            return Ok(());
        }
        // Frees the target has carried out: `EXECUTE name` is judged against fewer bodies.
        self.names.settle(&self.flags.answers);
        let judged = self.judge(text);
        self.stats.statements += judged.analysis.statements.len() as u64;
        if copies_in(&judged.analysis) > 1 {
            // Only the latest COPY's start is followed (see `copy_started`).
            self.stats.refused += 1;
            let msg = "drawbridge: blocked: send each COPY FROM STDIN in a query of its own";
            self.refuse_query(Verdict::Refuse(blocked(msg)));
            return Ok(());
        }
        let ids = match self.record(&judged, text, "simple") {
            Ok(ids) => ids,
            Err(r) => {
                self.refuse_query(r);
                return Ok(());
            }
        };
        if let Some(r) = self.masking_refusal(&judged, &ids) {
            self.stats.refused += 1;
            self.refuse_query(r);
            return Ok(());
        }
        if !matches!(judged.verdict, Verdict::Refuse(_)) {
            self.before_schema_change(&judged);
        }
        // The batch the Query runs in, when it goes out as it came.
        let mut batch = None;
        match &judged.verdict {
            Verdict::Refuse(r) => {
                self.stats.refused += 1;
                let r = r.clone();
                self.refuse_query(Verdict::Refuse(r));
                return Ok(());
            }
            Verdict::Approve { rule, reason, approval } => {
                if let Some(r) = self.seek_approval(&judged, &sql_text(text), rule, reason, approval).await? {
                    self.stats.refused += 1;
                    self.refuse_query(Verdict::Refuse(r));
                    return Ok(());
                }
                let now = Instant::now();
                for id in &ids {
                    self.send(Expect::Track(*id, now));
                }
                self.send(Expect::Sync(now));
                batch = Some(self.batch());
                self.forward_query(frame, &judged, &ids);
            }
            v if v.limited() && !self.single_rows(&judged, &[]) => self.guarded_query(frame, &judged, &ids).await?,
            Verdict::Run { .. } => {
                let now = Instant::now();
                for id in &ids {
                    self.send(Expect::Track(*id, now));
                }
                self.send(Expect::Sync(Instant::now()));
                batch = Some(self.batch());
                self.forward_query(frame, &judged, &ids);
            }
        }
        self.remember_sql_prepares(&judged.analysis, batch);
        if changes_session_settings(&judged.analysis) {
            // A setting that changes how SQL is read (client_encoding,
            // standard_conforming_strings) must be seen before the next message is judged.
            self.flush().await?;
            self.barrier().await;
        }
        Ok(())
    }

    /// The masking this agent is under now (rebuilt when the policy changes).
    fn masking(&mut self) -> Option<Arc<SessionMasks>> {
        let policy = self.shared.policy.load();
        let at = Arc::as_ptr(&policy) as usize;
        if at != self.masks_policy {
            self.masks_policy = at;
            let now = self.shared.session_masks(&policy, self.principal, &self.target, &self.catalog);
            // Once on, masking stays on (masking nothing) so `Outbound` keeps a slot for
            // every result it reads.
            self.masks = match (now, self.masks.take()) {
                (None, Some(_)) => Some(Arc::new(SessionMasks::inert(self.catalog.clone(), self.shared.mask_key.clone()))),
                (now, _) => now,
            };
        }
        self.masks.clone()
    }

    /// With `unresolved: refuse`, a statement whose result cannot be traced while it reads
    /// sensitive data is refused.
    fn masking_refusal(&mut self, judged: &Judged, ids: &[u64]) -> Option<Verdict> {
        let m = self.masking()?;
        let msg = judged.analysis.statements.iter().find_map(|s| m.refusal(s))?;
        // The statements were recorded as allowed by policy; the outcome says why they did not run.
        self.record_guarded(ids, Instant::now(), None, Some(msg.clone()));
        Some(refusal("42501", msg, None))
    }

    /// Tells `Outbound` which result the target will send next and how to mask it.
    fn push_slot(&self, kind: SlotKind, masks: &Arc<SessionMasks>, source: Option<(Arc<Analysis>, usize)>, audit: Option<u64>) {
        self.expect.slot(Slot {
            seq: self.batch(),
            kind,
            masks: masks.clone(),
            source,
            audit,
            mask: None,
            copy: None,
            refused_copy: false,
        });
    }

    /// The statement whose rows statement `i` returns: itself, or for `EXECUTE name` the
    /// body prepared under that name when there is exactly one.
    fn source_of(&self, analysis: &Arc<Analysis>, i: usize) -> Option<(Arc<Analysis>, usize)> {
        let s = analysis.statements.get(i)?;
        match &s.executes {
            None => Some((analysis.clone(), i)),
            Some(name) => {
                let body = self.names.only_body(name)?;
                Some((Arc::new(Analysis { statements: vec![body.clone()] }), 0))
            }
        }
    }

    /// Writes the agent's Query, telling `Outbound` about each statement's result first.
    fn forward_query(&mut self, frame: &[u8], judged: &Judged, ids: &[u64]) {
        if let Some(m) = self.masking() {
            for i in 0..judged.analysis.statements.len() {
                let source = self.source_of(&judged.analysis, i);
                self.push_slot(SlotKind::Statement, &m, source, ids.get(i).copied());
            }
        }
        if copies_in(&judged.analysis) > 0 {
            self.copy_forwarded();
        }
        self.out.extend_from_slice(frame);
    }

    /// Forwards an Execute whose outcome `Outbound` records from the target's answer (a
    /// row-limited one is recorded by its guard instead).
    fn forward_tracked_execute(&mut self, frame: &[u8], portal: &[u8], judged: &Judged, audit: Option<u64>) {
        if let Some(id) = audit {
            self.send(Expect::Track(id, Instant::now()));
        }
        self.forward_execute(frame, portal, judged, audit);
    }

    /// Writes an Execute; under masking, preceded by the gateway's own Describe of the
    /// portal, since the agent may not have asked for one and the plan needs it.
    fn forward_execute(&mut self, frame: &[u8], portal: &[u8], judged: &Judged, audit: Option<u64>) {
        if judged.analysis.statements.iter().any(|s| s.changes_lexing || s.has(Operation::Discard)) {
            self.settings_at = Some(self.batch());
        }
        if copies_in(&judged.analysis) > 0 {
            self.copy_forwarded();
        }
        if let Some(m) = self.masking() {
            let source = self.source_of(&judged.analysis, 0);
            self.push_slot(SlotKind::Execute { described: false }, &m, source, audit);
            self.out.extend_from_slice(&Builder::describe(b'P', portal));
        }
        self.out.extend_from_slice(frame);
    }

    /// Called before forwarding a statement that will run. One that may change the schema
    /// (the columns masking resolves against, the unique keys that bound a write) stops every
    /// session from trusting a catalog to bound a write until this session's transaction has
    /// ended; then the catalog is invalidated (`Catalogs::change_ended`), once, since a load
    /// made before the commit still sees the old schema.
    fn before_schema_change(&self, judged: &Judged) {
        if !judged.schema_change {
            return;
        }
        // Answered by the next Query or Sync written after what is queued now.
        let answer = self.batch() + 1;
        if self.flags.schema_change_at.swap(answer, Ordering::SeqCst) == 0 {
            self.shared.catalogs.change_began();
        }
    }

    /// Whether every row-limited statement of the message changes at most one row, so no
    /// guard is needed: its WHERE pins a unique key (see `Catalog::at_most_one_row`),
    /// judged against a catalog no schema change has overtaken.
    fn single_rows(&self, judged: &Judged, param_types: &[u32]) -> bool {
        let Verdict::Run { limits } = &judged.verdict else { return false };
        let limited = || limits.iter().zip(&judged.analysis.statements).filter(|(limit, _)| limit.is_some());
        // Only a write that could skip the guard asks for the catalog (and so for a key check).
        if !limited().all(|(limit, s)| *limit != Some(0) && s.pinned.is_some()) {
            return false;
        }
        let Some(catalog) = self.shared.key_catalog(&self.target) else { return false };
        let bounded = limited().all(|(_, s)| s.pinned.as_ref().is_some_and(|p| catalog.at_most_one_row(p, param_types)));
        if bounded {
            self.shared.metrics.writes_bounded_by_key.fetch_add(1, Ordering::Relaxed);
        }
        bounded
    }

    /// Records each statement and its decision before anything is forwarded; returns their
    /// audit numbers. `Err` is the refusal to send when the record could not be kept.
    fn record(&mut self, judged: &Judged, raw: &[u8], protocol: &str) -> Result<Vec<u64>, Verdict> {
        if self.shared.audit.is_none() {
            return Ok(Vec::new());
        }
        let text = sql_text(raw);
        let mut ids = Vec::with_capacity(judged.analysis.statements.len().max(1));
        let mut events = Vec::with_capacity(ids.capacity());
        let pairs = judged.analysis.statements.iter().zip(&judged.decisions).zip(&judged.facts);
        let single = judged.analysis.statements.len() == 1;
        for ((stmt, d), facts) in pairs {
            // One statement: the whole text (its analysis may come from another text of the
            // same shape, whose ranges differ).
            let part = if single { &text[..] } else { text.get(stmt.start..stmt.end).unwrap_or(&text) };
            events.push((part, facts.clone(), d.effect.name(), d.rules.clone(), d.reason.clone(), d.max_rows));
        }
        if events.is_empty() {
            // Unparseable or unjudgeable text: the refusal itself is the decision.
            let reason = match &judged.verdict {
                Verdict::Refuse(bytes) => refusal_message(bytes),
                Verdict::Approve { reason, .. } => reason.clone(),
                Verdict::Run { .. } => "nothing to judge".into(),
            };
            let effect = match judged.verdict {
                Verdict::Refuse(_) => "deny",
                Verdict::Approve { .. } => "require_approval",
                Verdict::Run { .. } => "allow",
            };
            events.push((&text[..], null_json(), effect, vec![], reason, None));
        }
        for (part, facts, effect, rules, reason, max_rows) in events {
            let id = self.next_statement;
            self.next_statement += 1;
            let event = audit::Event::Statement {
                session: self.session.as_ref().to_owned(),
                statement: id,
                protocol: protocol.into(),
                text: sql::redact_secrets(part).into_owned(),
                params: None,
                facts,
                effect: effect.into(),
                rules,
                reason,
                max_rows,
            };
            if self.shared.record(event).is_err() {
                self.stats.refused += 1;
                return Err(refusal("58030", "drawbridge: the audit log is unavailable; statement refused".into(), None));
            }
            ids.push(id);
        }
        Ok(ids)
    }

    /// Records the outcome of a statement the gateway itself ran under a row limit.
    fn record_guarded(&self, ids: &[u64], started: Instant, rows: Option<u64>, error: Option<String>) {
        for id in ids {
            self.shared.record_later(audit::Event::Outcome {
                session: self.session.as_ref().to_owned(),
                statement: *id,
                tag: None,
                rows,
                duration_us: started.elapsed().as_micros() as u64,
                error: error.clone(),
                rows_seen: None,
            });
        }
    }

    /// The batch the next message joins: the ReadyForQuery answers asked for before it.
    fn batch(&self) -> u64 {
        self.ready_sent + ready_answers(&self.out)
    }

    /// Refuses the message when one of its statement or portal names is too long.
    fn refuse_long_names(&mut self, names: &[&[u8]]) -> bool {
        let long = names.iter().any(|n| n.len() > MAX_NAME);
        if long {
            self.refuse_in_batch(blocked("drawbridge: blocked: statement and portal names are limited to 63 bytes"));
        }
        long
    }

    /// Notes a COPY FROM STDIN about to be forwarded, before its answer can arrive.
    fn copy_forwarded(&mut self) {
        let batch = self.batch();
        self.copy_in = Some((self.flags.copy_starts.load(Ordering::SeqCst), batch));
    }

    /// Whether the target is in copy-in mode for the COPY last forwarded: it answered with
    /// CopyInResponse, not with an error in its batch (the COPY failed or was skipped).
    async fn copy_started(&mut self) -> Result<bool, Error> {
        let Some((starts, batch)) = self.copy_in else {
            return Ok(false);
        };
        // The target sends an error at once but may hold other answers back.
        self.out.extend_from_slice(&Builder::flush());
        self.flush().await?;
        loop {
            let event = self.flags.copy_event.notified();
            if self.flags.copy_starts.load(Ordering::SeqCst) > starts {
                return Ok(true);
            }
            if self.flags.answers.failed_since(batch) {
                self.copy_in = None;
                return Ok(false);
            }
            event.await;
        }
    }

    /// Ends the extended-protocol batch with `frame`, a Sync.
    fn sync_frame(&mut self, frame: &[u8]) {
        self.out.extend_from_slice(frame);
        self.batch_executes = 0;
        self.batch_open = false;
    }

    fn refuse_query(&mut self, verdict: Verdict) {
        if let Verdict::Refuse(r) = verdict {
            self.send(Expect::ReplaceError(r));
            self.send(Expect::Sync(Instant::now()));
            self.out.extend_from_slice(&Builder::query(POISON));
        }
    }

    /// Extended protocol: make the target fail here, so it discards the batch until Sync.
    fn refuse_in_batch(&mut self, r: Arc<Vec<u8>>) {
        self.stats.refused += 1;
        self.send(Expect::ReplaceError(r));
        self.out.extend_from_slice(&Builder::parse(b"", POISON, &[]));
    }

    async fn parse(
        &mut self,
        frame: &[u8],
        name: &[u8],
        text: &[u8],
        param_types: Option<Arc<[u32]>>,
    ) -> Result<(), Error> {
        if !self.settings_settled().await? {
            self.refuse_in_batch(settings_unsettled());
            return Ok(());
        }
        if name.is_empty() {
            self.unnamed_batch = self.batch();
        }
        // Only named statements need it: the unnamed one is parsed afresh for most queries.
        let text_key = if name.is_empty() {
            None
        } else {
            self.names.settle(&self.flags.answers);
            match self.names.parse_key(name, text) {
                Some(k) => Some(k),
                None => {
                    self.refuse_in_batch(name_in_use(name));
                    return Ok(());
                }
            }
        };
        let judged = self.judge(text);
        self.stats.statements += judged.analysis.statements.len() as u64;
        // A statement that needs approval is parsed as usual; approval is asked at each
        // Execute, with the parameters it will run with.
        let approval = matches!(judged.verdict, Verdict::Approve { .. })
            .then(|| Arc::new(Approvable { text: sql_text(text).into_owned(), params: None }));
        let verdict = judged.verdict.clone();
        let entry = match self.record(&judged, text, "extended") {
            Err(Verdict::Refuse(r)) => {
                self.refuse_in_batch(r.clone());
                Prepared::Refused(r)
            }
            Err(_) => Prepared::Refused(unknown_statement()),
            Ok(ids) => match verdict {
                Verdict::Refuse(r) => {
                    self.refuse_in_batch(r.clone());
                    Prepared::Refused(r)
                }
                _ if let Some(Verdict::Refuse(r)) = self.masking_refusal(&judged, &ids) => {
                    self.refuse_in_batch(r.clone());
                    Prepared::Refused(r)
                }
                _ => {
                    self.out.extend_from_slice(frame);
                    self.remember_sql_prepares(&judged.analysis, None);
                    if let Some(key) = text_key {
                        // SQL `EXECUTE name` runs it too.
                        self.names.parsed(name, key, &judged.analysis.statements);
                    }
                    Prepared::Allowed { judged, id: ids.first().copied().unwrap_or(u64::MAX), approval, param_types }
                }
            },
        };
        self.statements.insert(name.to_vec(), entry);
        Ok(())
    }

    /// Asks operators about a statement a `require_approval` rule caught. `None`: approved,
    /// run it. `Some`: the refusal to send (retry mode's pending notice, a denial, expiry).
    async fn seek_approval(
        &mut self,
        judged: &Judged,
        text: &str,
        rule: &str,
        reason: &str,
        spec: &policy::file::Approval,
    ) -> Result<Option<Arc<Vec<u8>>>, Error> {
        let Some(service) = self.shared.approvals.clone() else {
            return Ok(Some(Arc::new(Builder::error(
                "ERROR",
                "42501",
                &format!("drawbridge: approval required by rule {rule}: {reason}"),
                Some("this gateway has no approval workflow configured, so the statement was refused"),
            ))));
        };
        let unavailable = |e: approvals::Error| {
            tracing::error!(error = %e, "approvals unavailable");
            Some(Arc::new(Builder::error(
                "ERROR",
                "42501",
                &format!("drawbridge: approval required by rule {rule}, but approvals are unavailable; statement refused"),
                None,
            )))
        };
        let mode = match spec.mode {
            policy::file::ApprovalMode::Hold => approvals::Mode::Hold,
            policy::file::ApprovalMode::Retry => approvals::Mode::Retry,
        };
        if mode == approvals::Mode::Retry {
            match service.try_consume(&self.principal.agent, &self.target, text).await {
                Ok(Some(_)) => return Ok(None),
                Ok(None) => {}
                Err(e) => return Ok(unavailable(e)),
            }
        }
        let facts = judged.analysis.statements.first().map(|s| serde_json::to_value(s).unwrap_or_default()).unwrap_or_default();
        let request = approvals::NewRequest {
            agent: self.principal.agent.clone(),
            groups: self.principal.groups.clone(),
            target: self.target.to_string(),
            statement: text.to_string(),
            facts,
            rule: rule.to_string(),
            mode,
            min_approvals: spec.min_approvals,
            uses: None,
        };
        let req = match service.request(request).await {
            Ok(r) => r,
            Err(e) => return Ok(unavailable(e)),
        };
        let how = format!("an operator approves it with: drawbridge approvals approve {}", req.id);
        if mode == approvals::Mode::Retry {
            let msg = format!("drawbridge: approval required by rule {rule}: {reason}; approval {} is pending", req.id);
            let hint = format!("{how}; then send the same statement again");
            return Ok(Some(Arc::new(Builder::error("ERROR", "42501", &msg, Some(&hint)))));
        }
        let notice = format!("drawbridge: statement held for approval {} by rule {rule}: {reason}", req.id);
        self.send(Expect::Write(Builder::notice(&notice, Some(&how))));
        let timeout = Duration::from_secs(self.shared.config.approvals.as_ref().map_or(300, |c| c.hold_timeout_secs));
        let mut stopping = self.shared.stopping.subscribe();
        let outcome = tokio::select! {
            o = service.wait(&req.id, timeout) => match o {
                Ok(o) => o,
                Err(e) => return Ok(unavailable(e)),
            },
            _ = stopping.wait_for(|s| *s) => {
                let msg = format!(
                    "drawbridge: the gateway is stopping; the held statement did not run (approval {} stays pending)",
                    req.id
                );
                self.send(Expect::Fatal(Builder::error("FATAL", "57P01", &msg, None)));
                return Err(Error::Timeout);
            }
        };
        Ok(match outcome {
            approvals::Outcome::Approved { .. } => match service.consume_held(&req.id).await {
                Ok(_) => None,
                Err(e) => unavailable(e),
            },
            approvals::Outcome::Denied { reason: why, by } => Some(Arc::new(Builder::error(
                "ERROR",
                "42501",
                &format!("drawbridge: approval {} for rule {rule} was denied by {by}: {why}", req.id),
                None,
            ))),
            approvals::Outcome::Expired => Some(Arc::new(Builder::error(
                "ERROR",
                "42501",
                &format!("drawbridge: approval {} for rule {rule} expired without a decision", req.id),
                None,
            ))),
        })
    }

    async fn execute(&mut self, frame: &[u8], e: frontend::Execute<'_>) -> Result<(), Error> {
        if self.refuse_long_names(&[e.portal]) {
            return Ok(());
        }
        // A Bind that failed at the target left an older portal of the name there (one kept
        // across a savepoint rollback, a holdable cursor).
        if let Some(bound) = self.portals.get(e.portal).map(|(b, _)| *b) {
            if !self.ran_since(bound).await? {
                self.refuse_in_batch(portal_uncertain());
                return Ok(());
            }
        }
        let (judged, id, param_types) = match self.portals.get(e.portal).map(|(_, p)| p) {
            Some(Prepared::Allowed { judged, id, approval, param_types }) => {
                if let (Some(a), Verdict::Approve { rule, reason, approval: spec }) = (approval.clone(), judged.verdict.clone()) {
                    let judged = judged.clone();
                    let audit = self.shared.audit.as_ref().map(|_| *id);
                    self.before_schema_change(&judged);
                    self.flush().await?;
                    match self.seek_approval(&judged, &a.describe(), &rule, &reason, &spec).await? {
                        Some(r) => self.refuse_in_batch(r),
                        None => {
                            self.batch_executes += 1;
                            self.forward_tracked_execute(frame, e.portal, &judged, audit);
                        }
                    }
                    return Ok(());
                }
                (judged.clone(), *id, param_types.clone())
            }
            Some(Prepared::Refused(r)) => {
                let r = r.clone();
                self.refuse_in_batch(r);
                return Ok(());
            }
            // Portals hold Allowed or Refused only.
            Some(Prepared::BySql) | None => {
                self.refuse_in_batch(unknown_statement());
                return Ok(());
            }
        };
        let limit = match &judged.verdict {
            Verdict::Run { limits } => match limits.iter().flatten().min() {
                Some(_) if self.single_rows(&judged, param_types.as_deref().unwrap_or_default()) => None,
                limit => limit.copied(),
            },
            // An approved statement runs as approved; a refused one never got a portal.
            Verdict::Refuse(_) | Verdict::Approve { .. } => None,
        };
        self.before_schema_change(&judged);
        let index = self.batch_executes;
        self.batch_executes += 1;
        let audit = (self.shared.audit.is_some() && id != u64::MAX).then_some(id);
        let Some(limit) = limit else {
            self.forward_tracked_execute(frame, e.portal, &judged, audit);
            return Ok(());
        };
        if e.max_rows != 0 {
            let msg = "drawbridge: a row-limited statement must be executed in one go (Execute row count 0)";
            self.refuse_in_batch(Arc::new(Builder::error("ERROR", "42501", msg, None)));
            return Ok(());
        }
        // Nothing commits before Sync, so a statement over its limit can still be undone by
        // failing the batch.
        let (report, rx) = oneshot::channel();
        let started = Instant::now();
        self.send(Expect::GuardExecute { index, limit, report });
        self.forward_execute(frame, e.portal, &judged, audit);
        self.out.extend_from_slice(&Builder::flush());
        self.flush().await?;
        let ids = [id];
        match rx.await {
            Ok(GuardReport::Within { rows }) => {
                self.record_guarded(&ids, started, rows, None);
                self.send(Expect::Release)
            }
            Ok(GuardReport::Over { rows, limit }) => {
                self.record_guarded(&ids, started, rows, Some(format!("over the row limit of {limit}; rolled back")));
                self.send(Expect::DropHeld);
                self.refuse_in_batch(over_limit(&judged, rows, limit));
            }
            Ok(GuardReport::Failed) | Err(_) => self.record_guarded(&ids, started, None, Some("failed".into())),
        }
        Ok(())
    }

    /// Runs a simple Query whose statements have row limits so that nothing stands if any
    /// statement changes more rows than allowed.
    async fn guarded_query(&mut self, frame: &[u8], judged: &Judged, ids: &[u64]) -> Result<(), Error> {
        let Verdict::Run { limits } = &judged.verdict else { return Ok(()) };
        if judged.analysis.statements.iter().any(|s| s.transaction.is_some()) {
            let msg = "drawbridge: a row-limited statement cannot share a query with transaction control; send them separately";
            self.refuse_query(refusal("42501", msg.into(), None));
            return Ok(());
        }
        self.flush().await?;
        let status = self.barrier().await;
        if status == b'E' {
            // The target refuses everything in a failed transaction anyway.
            self.send(Expect::Sync(Instant::now()));
            self.forward_query(frame, judged, ids);
            return Ok(());
        }
        let autocommit = status == b'I';
        if autocommit {
            self.send(Expect::Swallow);
            self.out.extend_from_slice(&Builder::query("BEGIN"));
        }
        let (report, rx) = oneshot::channel();
        let started = Instant::now();
        self.send(Expect::Guard { limits: limits.clone(), report });
        self.forward_query(frame, judged, ids);
        self.flush().await?;
        let report = rx.await.unwrap_or(GuardReport::Failed);
        match &report {
            GuardReport::Within { rows } => self.record_guarded(ids, started, *rows, None),
            GuardReport::Over { rows, limit } => self.record_guarded(
                ids,
                started,
                *rows,
                Some(format!("over the row limit of {limit}; rolled back")),
            ),
            GuardReport::Failed => self.record_guarded(ids, started, None, Some("failed".into())),
        }
        match (autocommit, report) {
            (true, GuardReport::Within { .. }) => {
                self.send(Expect::Commit);
                self.out.extend_from_slice(&Builder::query("COMMIT"));
            }
            (true, GuardReport::Over { rows, limit }) => {
                self.stats.refused += 1;
                self.send(Expect::Rollback { refusal: Some(over_limit(judged, rows, limit)) });
                self.out.extend_from_slice(&Builder::query("ROLLBACK"));
            }
            (true, GuardReport::Failed) => {
                self.send(Expect::Rollback { refusal: None });
                self.out.extend_from_slice(&Builder::query("ROLLBACK"));
            }
            (false, GuardReport::Within { .. }) | (false, GuardReport::Failed) => self.send(Expect::Release),
            (false, GuardReport::Over { rows, limit }) => {
                // Inside the agent's transaction: leave it aborted, as a failing statement would.
                self.stats.refused += 1;
                self.send(Expect::DropHeld);
                self.refuse_query(Verdict::Refuse(over_limit(judged, rows, limit)));
            }
        }
        Ok(())
    }

    /// Before more SQL text is judged: an Execute that may have changed how the target reads
    /// SQL (client_encoding, standard_conforming_strings) must have been answered, which
    /// needs a Sync after it. False: none was sent yet, so the text cannot be judged.
    async fn settings_settled(&mut self) -> Result<bool, Error> {
        let Some(at) = self.settings_at else { return Ok(true) };
        if self.batch() <= at {
            return Ok(false);
        }
        self.settings_at = None;
        self.flush().await?;
        self.barrier().await;
        Ok(true)
    }

    /// Whether what the gateway sent in `batch` took effect at the target. In the same batch
    /// it did, or the caller's message is skipped with it. A later batch waits for the
    /// answers so far: no error may have come since (a Parse or Bind after an error in its
    /// batch is skipped, leaving an older statement or portal of its name at the target).
    async fn ran_since(&mut self, batch: u64) -> Result<bool, Error> {
        if self.batch() == batch {
            return Ok(true);
        }
        // Flush: the target may hold answers to this batch's earlier messages back until Sync.
        self.out.extend_from_slice(&Builder::flush());
        self.flush().await?;
        self.barrier().await;
        Ok(!self.flags.answers.failed_since(batch))
    }

    /// Waits until every earlier message has been answered; returns the transaction status.
    async fn barrier(&mut self) -> u8 {
        let (tx, rx) = oneshot::channel();
        self.send(Expect::Barrier(tx));
        rx.await.unwrap_or(b'E')
    }

    /// Notes the PREPAREs and DEALLOCATEs of forwarded SQL. `batch`: the simple Query's, whose
    /// statements run in it; `None` for a Parse, whose statements run at some later Execute.
    fn remember_sql_prepares(&mut self, analysis: &Analysis, batch: Option<u64>) {
        for s in &analysis.statements {
            if let Some(name) = &s.prepares {
                self.names.prepared(name, s, batch.is_some());
                self.statements.insert(name.as_bytes().to_vec(), Prepared::BySql);
            }
            // DEALLOCATE frees names made by Parse too. The gateway forgets them only once
            // the target has answered without an error (an earlier statement may fail).
            match &s.deallocates {
                Some(Some(name)) => {
                    self.statements.remove(name.as_bytes());
                }
                Some(None) => {
                    self.statements.clear();
                    if s.has(Operation::Discard) {
                        self.portals.clear();
                    }
                }
                None => {}
            }
            if let (Some(name), Some(batch)) = (&s.deallocates, batch) {
                self.names.freed(name.as_deref().map(str::as_bytes), batch, &self.flags.answers);
            }
        }
    }

    /// Analysis and decisions for one message's SQL text.
    fn judge(&self, raw: &[u8]) -> Arc<Judged> {
        let judged = self.judge_uncounted(raw);
        judged.count();
        judged
    }

    fn judge_uncounted(&self, raw: &[u8]) -> Arc<Judged> {
        if !self.flags.encoding_safe.load(Ordering::Relaxed) {
            return unjudgeable(self.shared, "drawbridge: this client_encoding is not supported; use UTF8");
        }
        if !self.flags.strings_standard.load(Ordering::Relaxed) {
            return unjudgeable(self.shared, "drawbridge: standard_conforming_strings must be on; reconnect to reset it");
        }
        let text = sql_text(raw);
        let policy = self.shared.policy.load();
        // An operator's grant exempts this agent from named rules for a while; such
        // decisions are personal and short-lived, so they bypass the cache.
        let exempt = match &self.shared.approvals {
            Some(a) => a.active_exemptions(&self.principal.agent, &self.target, chrono::Utc::now()),
            None => Vec::new(),
        };
        let key = DecisionKeyRef { policy_version: policy.version(), agent: &self.agent, target: &self.target, text: &text };
        let mut shape_ok = true;
        let shape = if exempt.is_empty() {
            if let Some(j) = self.shared.decisions.get(&key) {
                return j;
            }
            let shape = self.shared.analyzer.shape_of(&text);
            if let Some(shape) = &shape {
                let key = DecisionKeyRef { text: shape, ..key };
                if let Some(j) = self.shared.shaped.get(&key) {
                    return j;
                }
            }
            shape
        } else {
            None
        };
        let analysis = match self.shared.analyzer.analyze_shaped(&text) {
            // Only a shape whose facts held for every literal value may key a decision.
            Ok((a, shareable)) if shareable == shape => a,
            Ok((a, _)) => {
                shape_ok = false;
                a
            }
            Err(e) => return Judged::new(self.shared, Arc::default(), vec![], analysis_refusal(&e), false),
        };
        let ctx = policy::Context {
            principal: self.principal,
            target: &self.target,
            now: chrono::Utc::now(),
            catalog: Some(self.catalog.as_ref()),
            exempt: &exempt,
        };
        let mut cacheable = exempt.is_empty();
        let mut decisions = Vec::with_capacity(analysis.statements.len());
        let mut countable = Vec::with_capacity(analysis.statements.len());
        // PREPAREs earlier in this same message, visible to its later EXECUTEs.
        let mut here: HashMap<&str, Vec<&Statement>> = HashMap::new();
        for stmt in &analysis.statements {
            let mut d = policy.evaluate(stmt, &ctx);
            let mut counts = stmt.rows_countable;
            if let Some(name) = &stmt.prepares {
                // PREPARE changes no rows; its body's limit is enforced at each EXECUTE.
                d.max_rows = None;
                here.entry(name.as_str()).or_default().push(stmt);
            }
            if let Some(name) = &stmt.executes {
                // EXECUTE runs a body judged at PREPARE; judge it again now (policy and row
                // limits may have changed). Where the gateway saw several PREPAREs of the
                // name it cannot tell which one the target kept, so every candidate must pass.
                cacheable = false;
                let candidates: Vec<&Statement> = match here.get(name.as_str()) {
                    Some(v) => v.clone(),
                    None => self.names.bodies(name).collect(),
                };
                if candidates.is_empty() {
                    d = Decision {
                        effect: Effect::Deny,
                        rules: vec!["unknown-prepared-statement".into()],
                        reason: format!("prepared statement \"{name}\" was not prepared through this gateway"),
                        max_rows: None,
                        cacheable: false,
                        approval: None,
                    };
                }
                for body in candidates {
                    d = combine(d, policy.evaluate(body, &ctx));
                    counts &= body.rows_countable;
                }
            }
            cacheable &= d.cacheable;
            decisions.push(d);
            countable.push(counts);
        }
        let verdict = verdict_of(&decisions, &countable);
        let schema_change = analysis.statements.iter().any(|s| self.catalog.may_change_schema(s));
        let judged = Judged::new(self.shared, analysis, decisions, verdict, schema_change);
        if cacheable {
            // A shared shape serves single statements only: a multi-statement message's audit
            // record slices its text by statement ranges, which differ between literal values.
            let by_shape = shape.filter(|_| shape_ok && judged.analysis.statements.len() == 1);
            let key = DecisionKey {
                policy_version: policy.version().into(),
                agent: self.agent.clone(),
                target: self.target.clone(),
                text: by_shape.as_deref().unwrap_or(&text).into(),
            };
            if by_shape.is_some() {
                self.shared.shaped.insert(key, judged.clone());
            } else {
                self.shared.decisions.insert(key, judged.clone());
            }
        }
        judged
    }
}

/// SQL text for analysis. Valid UTF-8 is used as is; other bytes (a LATIN1 or SQL_ASCII
/// client) are read one byte per character, which keeps every ASCII quote, comment and
/// separator where the target's lexer sees it.
fn sql_text(raw: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(raw) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(raw.iter().map(|&b| b as char).collect()),
    }
}

/// How many statements of `a` read COPY data from the agent.
fn copies_in(a: &Analysis) -> usize {
    a.statements.iter().filter(|s| s.has(Operation::CopyFrom)).count()
}

fn changes_session_settings(a: &Analysis) -> bool {
    a.statements.iter().any(|s| {
        s.has(Operation::Set)
            || s.has(Operation::Reset)
            || s.has(Operation::Discard)
            || s.functions.iter().any(|f| f.name == "set_config")
    })
}

/// Both decisions must hold: the more severe effect wins; between two of the same effect
/// the one with the tighter row limit leads, so a refusal over the limit names its rule.
fn combine(a: Decision, b: Decision) -> Decision {
    let b_leads = match (b.effect.cmp(&a.effect), a.max_rows, b.max_rows) {
        (std::cmp::Ordering::Greater, _, _) => true,
        (std::cmp::Ordering::Equal, None, Some(_)) => true,
        (std::cmp::Ordering::Equal, Some(x), Some(y)) => y < x,
        _ => false,
    };
    let (mut lead, other) = if b_leads { (b, a) } else { (a, b) };
    if lead.effect == other.effect {
        for r in other.rules {
            if !lead.rules.contains(&r) {
                lead.rules.push(r);
            }
        }
        lead.max_rows = match (lead.max_rows, other.max_rows) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
    }
    lead.cacheable &= other.cacheable;
    lead
}

/// The verdict on a message; `countable[i]` says whether statement i's command tag counts
/// every row it changes.
fn verdict_of(decisions: &[Decision], countable: &[bool]) -> Verdict {
    if let Some(d) = decisions.iter().find(|d| d.effect == Effect::Deny) {
        let rule = d.rules.first().map(String::as_str).unwrap_or("default-deny");
        return refusal("42501", format!("drawbridge: blocked by rule {rule}: {}", d.reason), None);
    }
    // Several statements may each ask for approval: the strictest ask wins (most
    // approvers; hold over retry), so one statement cannot soften another's rule.
    let strictness = |d: &&Decision| {
        d.approval.as_ref().map_or((1, 1), |a| (a.min_approvals, u32::from(a.mode == policy::file::ApprovalMode::Hold)))
    };
    if let Some(d) = decisions.iter().filter(|d| d.effect == Effect::RequireApproval).max_by_key(strictness) {
        return Verdict::Approve {
            rule: d.rules.first().cloned().unwrap_or_default(),
            reason: d.reason.clone(),
            approval: d.approval.clone().unwrap_or(policy::file::Approval {
                mode: policy::file::ApprovalMode::Hold,
                min_approvals: 1,
            }),
        };
    }
    let mut limits = Vec::with_capacity(decisions.len());
    for (d, counts) in decisions.iter().zip(countable) {
        // The policy refuses such a statement by itself; this also covers an EXECUTE, whose
        // limit and countability come from several bodies.
        if d.max_rows.is_some() && !counts {
            let rule = d.rules.first().map(String::as_str).unwrap_or("");
            return refusal("42501", format!("drawbridge: blocked by rule {rule}: {}", policy::UNCOUNTABLE), None);
        }
        limits.push(d.max_rows);
    }
    Verdict::Run { limits }
}

fn null_json() -> audit::Json {
    audit::Json(Box::default())
}

/// The message text of an ErrorResponse the gateway built.
fn refusal_message(frame: &[u8]) -> String {
    frame
        .get(5..)
        .and_then(|b| backend::fields(b).ok())
        .and_then(|f| backend::field(&f, b'M').map(|m| String::from_utf8_lossy(m).into_owned()))
        .unwrap_or_default()
}

fn unjudgeable(shared: &Shared, message: &str) -> Arc<Judged> {
    Judged::new(shared, Arc::default(), vec![], refusal("42501", message.into(), None), false)
}

fn analysis_refusal(e: &sql::Error) -> Verdict {
    let code = match e {
        sql::Error::Syntax(_) => "42601",
        sql::Error::TooLarge { .. } => "54000",
        sql::Error::TooDeep { .. } => "54001",
        sql::Error::Unsupported(_) => "0A000",
        _ => "42501",
    };
    refusal(code, format!("drawbridge: {e}"), None)
}

/// An ErrorResponse for a message the gateway does not pass on.
fn blocked(msg: &str) -> Arc<Vec<u8>> {
    Arc::new(Builder::error("ERROR", "42501", msg, None))
}

fn name_in_use(name: &[u8]) -> Arc<Vec<u8>> {
    let msg = format!(
        "drawbridge: blocked: prepared statement name \"{}\" was already used in this session for other text; use a new name",
        String::from_utf8_lossy(name)
    );
    Arc::new(Builder::error("ERROR", "42P05", &msg, None))
}

fn settings_unsettled() -> Arc<Vec<u8>> {
    blocked("drawbridge: blocked: a statement that changes client_encoding or standard_conforming_strings must be followed by Sync before more SQL is sent")
}

fn unnamed_uncertain() -> Arc<Vec<u8>> {
    blocked("drawbridge: blocked: an error may have skipped the last Parse of the unnamed statement; parse it again")
}

fn sql_prepared_bind() -> Arc<Vec<u8>> {
    blocked("drawbridge: blocked: this statement was made by SQL PREPARE; run it with EXECUTE")
}

fn portal_uncertain() -> Arc<Vec<u8>> {
    blocked("drawbridge: blocked: an error came after this portal was bound, so the gateway cannot tell which portal the target holds; bind it again")
}

fn unknown_statement() -> Arc<Vec<u8>> {
    blocked("drawbridge: blocked: the prepared statement or portal is unknown to the gateway")
}

fn over_limit(judged: &Judged, rows: Option<u64>, limit: u64) -> Arc<Vec<u8>> {
    let rule = judged
        .decisions
        .iter()
        .find(|d| d.max_rows.is_some())
        .and_then(|d| d.rules.first().cloned())
        .unwrap_or_default();
    let changed = rows.map_or("an uncounted number of".to_string(), |r| r.to_string());
    let msg = format!(
        "drawbridge: blocked by rule {rule}: statement changed {changed} rows, over the limit of {limit}; it was rolled back"
    );
    Arc::new(Builder::error("ERROR", "42501", &msg, None))
}

/// Execute completions and errors seen since the last ReadyForQuery.
#[derive(Default)]
struct Batch {
    completions: u32,
    failed: bool,
    /// CommandComplete tags of a guarded simple Query, in order.
    tags: Vec<Option<u64>>,
}

/// What to do with one frame from the target.
enum Action {
    Forward,
    Drop,
    Hold,
    Write(Arc<Vec<u8>>),
    /// Rewrite the frame through the current masking plan.
    Mask,
}

/// Target → agent.
struct Outbound<'a> {
    flags: &'a Flags,
    target: &'a str,
    server: Frames<ReadHalf<BoxIo>>,
    client: WriteHalf<BoxIo>,
    expect: &'a Mailbox,
    queue: VecDeque<Expect>,
    out: Vec<u8>,
    held: Vec<u8>,
    batch: Batch,
    shared: &'a Arc<Shared>,
    session: Arc<str>,
    /// Audited statements forwarded and not yet answered, oldest first.
    tracking: VecDeque<(u64, Instant)>,
    /// Results to mask, in the order the target sends them.
    slots: VecDeque<Slot>,
    /// ReadyForQuery messages read from the target.
    ready_seen: u64,
    /// The ReadyForQuery count from which every result has a slot: masking was on when it
    /// was asked for (and stays on, see `Inbound::masking`), so a result without one is an error.
    strict_from: Option<u64>,
    /// Outcomes of audited statements not yet recorded: written as one record when there are
    /// `OUTCOMES_MAX`, when the oldest has waited `OUTCOMES_WAIT`, or when the session ends.
    outcomes: Vec<audit::StatementOutcome>,
    outcomes_due: Pin<Box<tokio::time::Sleep>>,
}

/// A chained record costs several times what one more outcome in it does, and a statement's
/// outcome (unlike the statement) need not be durable before anything else happens.
const OUTCOMES_MAX: usize = 32;
const OUTCOMES_WAIT: Duration = Duration::from_millis(100);

impl Outbound<'_> {
    async fn run(&mut self) -> Result<(), Error> {
        loop {
            if self.immediate().await? {
                return Ok(());
            }
            if self.expect.closed.load(Ordering::Acquire) && self.queue.is_empty() {
                self.expect.drain_into(&mut self.queue, &mut self.slots);
                if self.queue.is_empty() {
                    return Ok(());
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = self.expect.notify.notified() => {}
                () = &mut self.outcomes_due, if !self.outcomes.is_empty() => self.record_outcomes(),
                r = self.server.fill() => {
                    if !r? {
                        if self.flags.client_done.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let msg = format!("drawbridge: connection to target \"{}\" was lost", self.target);
                        self.client.write_all(&Builder::error("FATAL", "08006", &msg, None)).await?;
                        return Err(Error::Upstream { target: self.target.into(), reason: "closed the connection".into() });
                    }
                    self.frames().await?;
                }
            }
        }
    }

    /// Runs expectations at the front that need no response; `true` ends the session.
    async fn immediate(&mut self) -> Result<bool, Error> {
        loop {
            self.immediate_in_batch();
            match self.queue.front() {
                // The batch already failed, so the target skips the guarded Execute and will
                // send nothing for it.
                Some(Expect::GuardExecute { .. }) if self.batch.failed => {
                    if let Some(Expect::GuardExecute { report, .. }) = self.queue.pop_front() {
                        let _ = report.send(GuardReport::Failed);
                    }
                }
                Some(Expect::Fatal(_)) => {
                    if let Some(Expect::Fatal(bytes)) = self.queue.pop_front() {
                        self.out.extend_from_slice(&bytes);
                        self.write_out().await?;
                    }
                    return Ok(true);
                }
                _ => break,
            }
        }
        self.write_out().await?;
        Ok(false)
    }

    async fn write_out(&mut self) -> Result<(), Error> {
        if !self.out.is_empty() {
            self.client.write_all(&self.out).await?;
            self.flags.bytes_to_client.fetch_add(self.out.len() as u64, Ordering::Relaxed);
            self.out.clear();
        }
        Ok(())
    }

    /// Handles every complete frame in the buffer. Runs of forwarded frames are written as
    /// one slice of the read buffer; the usual case copies nothing.
    async fn frames(&mut self) -> Result<(), Error> {
        // Everything the frames in this read answer was queued before they were sent; the
        // expectations that wake nobody (statements to track) apply from the first frame.
        self.immediate_in_batch();
        let mut pos = 0;
        let mut run_start = 0;
        while let Some(h) = wire::peek(&self.server.buf[pos..], wire::MAX_MESSAGE_LEN)? {
            if pos + h.total > self.server.buf.len() {
                self.server.buf.reserve(pos + h.total - self.server.buf.len());
                break;
            }
            let action = self.decide(h.tag, pos, h.total)?;
            if !matches!(action, Action::Forward) {
                self.out.extend_from_slice(&self.server.buf[run_start..pos]);
                match action {
                    Action::Hold => {
                        let frame = &self.server.buf[pos..pos + h.total];
                        self.held.extend_from_slice(frame);
                    }
                    Action::Write(bytes) => self.out.extend_from_slice(&bytes),
                    Action::Mask => self.mask_frame(h.tag, pos, h.total)?,
                    Action::Drop | Action::Forward => {}
                }
                run_start = pos + h.total;
            }
            pos += h.total;
            if h.tag == backend::READY_FOR_QUERY || h.tag == backend::COMMAND_COMPLETE {
                // Expectations such as Release may now apply before the next frame.
                self.out.extend_from_slice(&self.server.buf[run_start..pos]);
                run_start = pos;
                self.immediate_in_batch();
            }
        }
        if self.out.is_empty() {
            if run_start < pos {
                let n = pos - run_start;
                self.client.write_all(&self.server.buf[run_start..pos]).await?;
                self.flags.bytes_to_client.fetch_add(n as u64, Ordering::Relaxed);
            }
        } else {
            self.out.extend_from_slice(&self.server.buf[run_start..pos]);
            self.write_out().await?;
        }
        self.server.consume(pos);
        Ok(())
    }

    /// Expectations at the front that only change what is written next (the caller writes).
    fn immediate_in_batch(&mut self) {
        self.expect.drain_into(&mut self.queue, &mut self.slots);
        loop {
            match self.queue.front_mut() {
                Some(Expect::Release) => self.out.append(&mut self.held),
                Some(Expect::DropHeld) => self.held.clear(),
                Some(Expect::Track(id, at)) => self.tracking.push_back((*id, *at)),
                Some(Expect::Write(bytes)) => self.out.append(bytes),
                Some(Expect::Barrier(_)) => {
                    if let Some(Expect::Barrier(tx)) = self.queue.pop_front() {
                        let _ = tx.send(self.flags.status.load(Ordering::Relaxed));
                    }
                    continue;
                }
                _ => break,
            }
            self.queue.pop_front();
        }
    }

    fn body(&self, pos: usize, total: usize) -> &[u8] {
        &self.server.buf[pos + 5..pos + total]
    }

    fn decide(&mut self, tag: u8, pos: usize, total: usize) -> Result<Action, Error> {
        self.decide_frame(tag, pos, total, false)
    }

    /// `again`: this ReadyForQuery was seen already (it is being given to the next
    /// expectation), so it is not counted twice.
    fn decide_frame(&mut self, tag: u8, pos: usize, total: usize, again: bool) -> Result<Action, Error> {
        match tag {
            backend::PARAMETER_STATUS => {
                let (k, v) = backend::parameter_status(self.body(pos, total))?;
                if k == b"client_encoding" {
                    self.flags.encoding_safe.store(encoding_is_safe(v), Ordering::Relaxed);
                } else if k == b"standard_conforming_strings" {
                    self.flags.strings_standard.store(v == b"on", Ordering::Relaxed);
                }
                return Ok(Action::Forward);
            }
            backend::NOTICE_RESPONSE => return Ok(Action::Forward),
            b'A' => return Ok(Action::Forward), // NotificationResponse
            _ => {}
        }
        if tag == backend::READY_FOR_QUERY && !again {
            // Counted always: a slot names the ReadyForQuery count its result follows.
            self.ready_seen += 1;
            self.flags.answers.ready(self.ready_seen);
        }
        match tag {
            backend::ERROR_RESPONSE => {
                self.flags.answers.error(self.ready_seen);
                self.flags.copy_event.notify_one();
            }
            backend::COPY_IN_RESPONSE => {
                self.flags.copy_starts.fetch_add(1, Ordering::SeqCst);
                self.flags.copy_event.notify_one();
            }
            _ => {}
        }
        let mut drop_completion = false;
        if self.strict_from.is_some() || !self.slots.is_empty() {
            match self.masking(tag, pos, total)? {
                Masking::Act(a) => return Ok(a),
                Masking::DropCompletion => drop_completion = true,
                Masking::Continue => {}
            }
        }
        let is_completion = matches!(tag, backend::COMMAND_COMPLETE | backend::EMPTY_QUERY | backend::PORTAL_SUSPENDED);
        let rows = if tag == backend::COMMAND_COMPLETE {
            backend::command_tag(self.body(pos, total)).ok().map(backend::tag_rows)
        } else {
            None
        };
        if tag == backend::ERROR_RESPONSE {
            self.batch.failed = true;
        }
        if !self.tracking.is_empty() {
            let guarded = match self.queue.front() {
                Some(Expect::Guard { .. }) => tag == backend::COMMAND_COMPLETE,
                Some(Expect::GuardExecute { index, .. }) => is_completion && self.batch.completions == *index,
                _ => false,
            };
            if (is_completion || tag == backend::ERROR_RESPONSE) && !guarded {
                self.record_outcome(tag, pos, total);
            }
            if tag == backend::READY_FOR_QUERY {
                // Whatever was not answered was skipped after an error.
                self.tracking.clear();
            }
        }
        if tag == backend::READY_FOR_QUERY {
            let status = backend::ready_for_query(self.body(pos, total))?;
            self.flags.status.store(status, Ordering::Relaxed);
            let at = self.flags.schema_change_at.load(Ordering::SeqCst);
            if at != 0 && self.ready_seen >= at && status == b'I' {
                // Inbound may have let another change through meanwhile; then that one's
                // answer ends it instead.
                if self.flags.schema_change_at.compare_exchange(at, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    self.shared.catalogs.change_ended(self.target);
                }
            }
        }

        let action = match self.queue.front_mut() {
            None | Some(Expect::Sync(_)) => Action::Forward,
            Some(Expect::Swallow) => Action::Drop,
            Some(Expect::Quiet) if tag == backend::READY_FOR_QUERY => Action::Drop,
            Some(Expect::Quiet) => Action::Forward,
            Some(Expect::ReplaceError(r)) if tag == backend::ERROR_RESPONSE => {
                let r = r.clone();
                self.queue.pop_front();
                Action::Write(r)
            }
            Some(Expect::ReplaceError(_)) if tag == backend::READY_FOR_QUERY => {
                // The batch had already failed, so the target skipped the refused message
                // without an error of its own; the ReadyForQuery belongs to what follows.
                self.queue.pop_front();
                return self.decide_frame(tag, pos, total, true);
            }
            Some(Expect::ReplaceError(_)) => Action::Forward,
            Some(Expect::Guard { .. }) if tag == backend::COMMAND_COMPLETE => {
                self.batch.tags.push(rows.flatten());
                Action::Hold
            }
            Some(Expect::Guard { limits, .. }) if tag == backend::READY_FOR_QUERY => {
                let report = guard_report(limits, &self.batch);
                if let Some(Expect::Guard { report: tx, .. }) = self.queue.pop_front() {
                    let _ = tx.send(report);
                }
                self.batch = Batch::default();
                return Ok(Action::Hold);
            }
            Some(Expect::Guard { .. }) => Action::Forward,
            Some(Expect::GuardExecute { index, limit, .. }) => {
                let (index, limit) = (*index, *limit);
                let mine = is_completion && self.batch.completions == index;
                if is_completion {
                    self.batch.completions += 1;
                }
                if tag == backend::ERROR_RESPONSE || tag == backend::READY_FOR_QUERY || mine {
                    let report = match (tag, rows) {
                        (backend::COMMAND_COMPLETE, Some(Some(n))) if n <= limit => GuardReport::Within { rows: Some(n) },
                        (backend::COMMAND_COMPLETE, r) => GuardReport::Over { rows: r.flatten(), limit },
                        (backend::EMPTY_QUERY, _) => GuardReport::Within { rows: None },
                        (backend::PORTAL_SUSPENDED, _) => GuardReport::Over { rows: None, limit },
                        _ => GuardReport::Failed,
                    };
                    let hold = tag == backend::COMMAND_COMPLETE;
                    if let Some(Expect::GuardExecute { report: tx, .. }) = self.queue.pop_front() {
                        let _ = tx.send(report);
                    }
                    if hold {
                        return Ok(Action::Hold);
                    }
                    if tag == backend::READY_FOR_QUERY {
                        return self.after_ready();
                    }
                }
                return Ok(Action::Forward);
            }
            Some(Expect::Commit) => match tag {
                backend::ERROR_RESPONSE => {
                    self.held.clear();
                    Action::Forward
                }
                backend::READY_FOR_QUERY => {
                    // The held ReadyForQuery (last, six bytes) said "in transaction";
                    // the COMMIT's own one is the truth now.
                    let keep = self.held.len().saturating_sub(6);
                    self.out.extend_from_slice(&self.held[..keep]);
                    self.held.clear();
                    Action::Forward
                }
                _ => Action::Drop,
            },
            Some(Expect::Rollback { refusal }) => match tag {
                backend::READY_FOR_QUERY => {
                    self.held.clear();
                    if let Some(r) = refusal.take() {
                        self.out.extend_from_slice(&r);
                    }
                    Action::Forward
                }
                _ => Action::Drop,
            },
            // Immediate kinds are handled before frames are read.
            Some(_) => Action::Forward,
        };
        if is_completion && !matches!(self.queue.front(), Some(Expect::GuardExecute { .. })) {
            self.batch.completions += 1;
        }
        if tag == backend::READY_FOR_QUERY {
            if let Some(Expect::Sync(sent)) = self.queue.pop_front() {
                self.shared.metrics.latency.observe(sent.elapsed());
            }
            self.batch = Batch::default();
        }
        if drop_completion && matches!(action, Action::Forward) {
            return Ok(Action::Drop);
        }
        Ok(action)
    }

    /// Masking's part in handling one frame. Result frames (RowDescription, NoData,
    /// DataRow, COPY out) are decided here; completions, errors and ReadyForQuery also
    /// retire slots and go on through the usual handling.
    fn masking(&mut self, tag: u8, pos: usize, total: usize) -> Result<Masking, Error> {
        if self.strict_from.is_none() {
            self.strict_from = self.slots.front().map(|s| s.seq);
        }
        if tag == backend::READY_FOR_QUERY {
            while self.slots.front().is_some_and(|s| s.seq < self.ready_seen) {
                self.retire_slot();
            }
            return Ok(Masking::Continue);
        }
        let is_result = matches!(tag, backend::ROW_DESCRIPTION | b'n' | backend::DATA_ROW | backend::COPY_OUT_RESPONSE | b'd' | b'c');
        let current = self.slots.front().is_some_and(|s| s.seq == self.ready_seen);
        if !current {
            if is_result && self.strict_from.is_some_and(|s| self.ready_seen >= s) {
                // Rows the gateway cannot attribute to a statement: never pass them unmasked.
                let msg = "drawbridge: a result could not be matched to its statement; the session is closed so that nothing unmasked reaches the agent";
                self.out.extend_from_slice(&Builder::error("FATAL", "XX000", msg, None));
                return Err(Error::Upstream { target: self.target.into(), reason: "unattributed result under masking".into() });
            }
            return Ok(Masking::Continue);
        }
        let body = &self.server.buf[pos + 5..pos + total];
        let Some(slot) = self.slots.front_mut() else { return Ok(Masking::Continue) };
        Ok(match tag {
            backend::ROW_DESCRIPTION | b'n' => {
                let plan = |slot: &Slot| -> Result<Option<ResultMask>, Error> {
                    if tag != backend::ROW_DESCRIPTION {
                        return Ok(None);
                    }
                    let fields = backend::row_description(body)?;
                    Ok(slot.masks.plan(slot.statement(), &fields))
                };
                match slot.kind {
                    SlotKind::Describe => {
                        self.slots.pop_front();
                        Masking::Act(Action::Forward)
                    }
                    SlotKind::Execute { described: false } => {
                        slot.mask = plan(slot)?;
                        slot.kind = SlotKind::Execute { described: true };
                        Masking::Act(Action::Drop)
                    }
                    SlotKind::Statement => {
                        slot.mask = plan(slot)?;
                        Masking::Act(Action::Forward)
                    }
                    SlotKind::Execute { described: true } => Masking::Act(Action::Forward),
                }
            }
            backend::DATA_ROW => match &slot.mask {
                Some(m) if !m.plan.is_passthrough() => Masking::Act(Action::Mask),
                _ => Masking::Act(Action::Forward),
            },
            backend::COPY_OUT_RESPONSE => {
                let (format, cols) = backend::copy_out_response(body)?;
                let Some(m) = slot.masks.copy_plan(slot.statement(), cols.len()) else {
                    return Ok(Masking::Act(Action::Forward));
                };
                let options = slot.statement().and_then(|s| s.copy.as_ref());
                match (format, options) {
                    (0, Some(o)) if !o.binary && o.encoding.is_none() => {
                        let f = copy_format(o);
                        slot.copy = Some(mask::CopyRewriter::new(m.plan.clone(), f));
                        slot.mask = Some(m);
                        Masking::Act(Action::Forward)
                    }
                    _ => {
                        slot.refused_copy = true;
                        let msg = format!(
                            "drawbridge: blocked by rule {}: this COPY format cannot be masked; use COPY … TO STDOUT in text or CSV format",
                            m.audit.first().map_or("masking", |a| a.rule.as_str())
                        );
                        Masking::Act(Action::Write(Arc::new(Builder::error("ERROR", "42501", &msg, None))))
                    }
                }
            }
            b'd' if slot.refused_copy => Masking::Act(Action::Drop),
            b'd' if slot.copy.is_some() => Masking::Act(Action::Mask),
            b'c' if slot.refused_copy => Masking::Act(Action::Drop),
            b'd' | b'c' => Masking::Act(Action::Forward),
            backend::COMMAND_COMPLETE | backend::EMPTY_QUERY | backend::PORTAL_SUSPENDED | backend::ERROR_RESPONSE => {
                let refused = slot.refused_copy && tag == backend::COMMAND_COMPLETE;
                self.retire_slot();
                if refused { Masking::DropCompletion } else { Masking::Continue }
            }
            _ => Masking::Continue,
        })
    }

    /// Rewrites a DataRow or CopyData frame at `pos` through the current slot's plan into
    /// `out`. A frame the masker cannot read is not passed on: the session ends.
    fn mask_frame(&mut self, tag: u8, pos: usize, total: usize) -> Result<(), Error> {
        let frame = &self.server.buf[pos..pos + total];
        let Some(slot) = self.slots.front_mut() else { return Ok(()) };
        let result = match (tag, slot.mask.as_mut(), slot.copy.as_mut()) {
            (backend::DATA_ROW, Some(m), _) => mask::rewrite_data_row_tally(&m.plan, frame, &mut self.out, &mut m.tally).map(|_| ()),
            (b'd', Some(m), Some(copy)) => {
                let start = self.out.len();
                self.out.extend_from_slice(&[b'd', 0, 0, 0, 0]);
                match copy.rewrite(&frame[5..], &mut self.out) {
                    Ok(stats) => {
                        let len = (self.out.len() - start - 1) as u32;
                        self.out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
                        m.tally.rows += 1;
                        // COPY reports masked values per line; count them against the
                        // first masked column.
                        if let Some(first) = m.audit.first() {
                            if let Some(c) = m.tally.per_column.get_mut(first.position) {
                                *c += u64::from(stats.masked);
                            }
                        }
                        Ok(())
                    }
                    Err(e) => {
                        self.out.truncate(start);
                        Err(e)
                    }
                }
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            let msg = format!("drawbridge: a result value could not be masked ({e}); the session is closed so that nothing unmasked reaches the agent");
            self.out.extend_from_slice(&Builder::error("FATAL", "XX000", &msg, None));
            return Err(Error::Upstream { target: self.target.into(), reason: format!("masking: {e}") });
        }
        Ok(())
    }

    /// Drops the front slot, recording what it masked.
    fn retire_slot(&mut self) {
        let Some(slot) = self.slots.pop_front() else { return };
        let Some(columns) = slot.mask.as_ref().and_then(ResultMask::masked_columns) else { return };
        let values: u64 = columns.iter().map(|c| c.values).sum();
        self.shared.metrics.masked_values.fetch_add(values, Ordering::Relaxed);
        self.shared.record_later(audit::Event::Masked { session: self.session.as_ref().to_owned(), statement: slot.audit, columns });
    }

    fn record_outcome(&mut self, tag: u8, pos: usize, total: usize) {
        let Some((id, started)) = self.tracking.pop_front() else { return };
        let body = self.body(pos, total);
        let (command, error) = match tag {
            backend::COMMAND_COMPLETE => (backend::command_tag(body).ok().map(str::to_owned), None),
            backend::ERROR_RESPONSE => (None, Some(crate::upstream::server_message(body))),
            _ => (None, None),
        };
        let rows = command.as_deref().and_then(backend::tag_rows);
        let duration_us = started.elapsed().as_micros() as u64;
        self.outcomes.push(audit::StatementOutcome { statement: id, tag: command, rows, duration_us, error });
        if self.outcomes.len() == 1 {
            self.outcomes_due.as_mut().reset(tokio::time::Instant::now() + OUTCOMES_WAIT);
        } else if self.outcomes.len() >= OUTCOMES_MAX {
            self.record_outcomes();
        }
    }

    fn record_outcomes(&mut self) {
        if !self.outcomes.is_empty() {
            let outcomes = std::mem::take(&mut self.outcomes);
            self.shared.record_later(audit::Event::Outcomes { session: self.session.as_ref().to_owned(), outcomes });
        }
    }

    fn after_ready(&mut self) -> Result<Action, Error> {
        // A ReadyForQuery ended the batch while an Execute guard was pending; the
        // expectation for the Sync that caused it is next.
        let action = match self.queue.front() {
            Some(Expect::Swallow | Expect::Quiet) => Action::Drop,
            _ => Action::Forward,
        };
        self.queue.pop_front();
        self.batch = Batch::default();
        Ok(action)
    }
}

/// Masking's verdict on one frame.
enum Masking {
    /// Do this with the frame.
    Act(Action),
    /// Handle it as usual, then drop it (the completion of a refused COPY).
    DropCompletion,
    /// Handle it as usual.
    Continue,
}

/// Query and Sync frames in `buf` (whole frames): each is answered by one ReadyForQuery.
fn ready_answers(buf: &[u8]) -> u64 {
    let mut n = 0;
    let mut pos = 0;
    while let Some(len) = buf.get(pos + 1..pos + 5) {
        if matches!(buf[pos], frontend::QUERY | frontend::SYNC) {
            n += 1;
        }
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        pos += 1 + len.max(4);
    }
    n
}

fn copy_format(o: &sql::CopyOptions) -> mask::CopyFormat {
    let byte = |s: &Option<String>, default: u8| s.as_deref().and_then(|s| s.bytes().next()).unwrap_or(default);
    if o.csv {
        mask::CopyFormat::Csv {
            delimiter: byte(&o.delimiter, b','),
            quote: byte(&o.quote, b'"'),
            escape: byte(&o.escape, byte(&o.quote, b'"')),
            null: o.null.as_deref().unwrap_or("").as_bytes().into(),
            header: o.header,
        }
    } else {
        mask::CopyFormat::Text {
            delimiter: byte(&o.delimiter, b'\t'),
            null: o.null.as_deref().unwrap_or("\\N").as_bytes().into(),
            header: o.header,
        }
    }
}

fn guard_report(limits: &[Option<u64>], batch: &Batch) -> GuardReport {
    if batch.failed {
        return GuardReport::Failed;
    }
    let total = batch.tags.iter().flatten().sum();
    for (i, limit) in limits.iter().enumerate() {
        let Some(limit) = *limit else { continue };
        match batch.tags.get(i).copied().flatten() {
            Some(n) if n <= limit => {}
            rows => return GuardReport::Over { rows, limit },
        }
    }
    GuardReport::Within { rows: Some(total) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_client_encodings() {
        assert!(encoding_is_safe(b"UTF8"));
        assert!(encoding_is_safe(b"LATIN1"));
        assert!(!encoding_is_safe(b"SJIS"));
        assert!(!encoding_is_safe(b"big5"));
    }

    #[test]
    fn non_utf8_text_keeps_ascii_structure() {
        let raw = b"SELECT '\xe9'; DROP TABLE t";
        let t = sql_text(raw);
        assert_eq!(t.len(), raw.len() + 1);
        assert!(t.ends_with("; DROP TABLE t"));
    }

    fn decision(effect: Effect, rule: &str, max_rows: Option<u64>) -> Decision {
        Decision { effect, rules: vec![rule.into()], reason: String::new(), max_rows, cacheable: true, approval: None }
    }

    #[test]
    fn combine_keeps_the_severest_and_the_tightest_limit_first() {
        let c = combine(decision(Effect::Allow, "all", None), decision(Effect::Allow, "row-limit", Some(10)));
        assert_eq!((c.rules[0].as_str(), c.max_rows), ("row-limit", Some(10)));
        let c = combine(decision(Effect::Allow, "a", Some(5)), decision(Effect::Allow, "b", Some(10)));
        assert_eq!((c.rules[0].as_str(), c.max_rows), ("a", Some(5)));
        let c = combine(decision(Effect::Allow, "a", Some(5)), decision(Effect::Deny, "no", None));
        assert_eq!((c.effect, c.rules.clone()), (Effect::Deny, vec!["no".to_string()]));
    }

    #[test]
    fn guard_reports() {
        let b = Batch { tags: vec![Some(3), Some(10)], ..Default::default() };
        assert!(matches!(guard_report(&[None, Some(10)], &b), GuardReport::Within { rows: Some(13) }));
        assert!(matches!(guard_report(&[Some(2), None], &b), GuardReport::Over { rows: Some(3), limit: 2 }));
        let missing = Batch { tags: vec![None], ..Default::default() };
        assert!(matches!(guard_report(&[Some(5)], &missing), GuardReport::Over { rows: None, .. }));
        let failed = Batch { failed: true, ..Default::default() };
        assert!(matches!(guard_report(&[Some(5)], &failed), GuardReport::Failed));
    }
}
