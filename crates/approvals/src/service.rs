//! `Approvals`: the service the gateway and the HTTP API share.

use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{fingerprint, ApprovalEvent, Grant, Mode, NewGrant, NewRequest, Request, State};
use crate::store::{self, Filter, Store};
use crate::webhook::Notifier;

/// Receives every event, for the audit log. Called on a blocking-pool or async thread: keep it
/// quick (hand the event to a channel).
pub type EventSink = Arc<dyn Fn(&ApprovalEvent) + Send + Sync>;

/// How a held statement's wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Approved {
        by: Vec<String>,
    },
    Denied {
        reason: String,
        by: String,
    },
    /// Nobody decided in time, or the request was abandoned.
    Expired,
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    hold_timeout: chrono::Duration,
    retry_ttl: chrono::Duration,
    retry_uses: u32,
    max_grant_minutes: u32,
    poll: Duration,
}

/// Owns the store. The PostgreSQL client's destructor blocks on its own runtime, which panics on
/// an async worker, so a store dropped inside a runtime is dropped on a plain thread.
struct OwnedStore(Option<Box<dyn Store>>);

impl Drop for OwnedStore {
    fn drop(&mut self) {
        if let Some(store) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                if let Err(e) = std::thread::Builder::new()
                    .name("approvals-close".into())
                    .spawn(move || drop(store))
                {
                    tracing::warn!(error = %e, "could not close the approval store off the runtime");
                }
            }
        }
    }
}

pub struct Approvals {
    store: Arc<Mutex<OwnedStore>>,
    clock: Arc<dyn Clock>,
    timing: Timing,
    /// Bumped after every change made through this process; waiters re-read on change.
    changed: watch::Sender<u64>,
    /// Grants active or upcoming, refreshed on local changes and by `start`'s poller, so
    /// `active_exemptions` on the statement path never touches the store.
    grants: RwLock<Vec<Grant>>,
    sink: Option<EventSink>,
    notifier: Option<Notifier>,
}

fn secs(n: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX / 1000))
}

impl Approvals {
    /// Opens the configured store (blocking: call it before entering the runtime or inside
    /// `spawn_blocking`) and sets up webhooks.
    pub fn open(config: &Config) -> Result<Approvals> {
        config.validate()?;
        let store = store::open(config)?;
        let mut approvals = Approvals::from_store(store, config)?;
        approvals.notifier = Notifier::from_config(config)?;
        Ok(approvals)
    }

    /// A service over an already-open store; no webhooks unless `with_notifier` is used.
    /// Blocking (it loads the grants), like `open`.
    pub fn from_store(mut store: Box<dyn Store>, config: &Config) -> Result<Approvals> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let grants = store
            .list_grants(None)?
            .into_iter()
            .filter(|g| g.revoked.is_none())
            .collect();
        Ok(Approvals {
            store: Arc::new(Mutex::new(OwnedStore(Some(store)))),
            clock,
            timing: Timing {
                hold_timeout: secs(config.hold_timeout_secs),
                retry_ttl: secs(config.retry_ttl_secs),
                retry_uses: config.retry_uses.max(1),
                max_grant_minutes: config.max_grant_minutes,
                poll: Duration::from_secs(1),
            },
            changed: watch::channel(0).0,
            grants: RwLock::new(grants),
            sink: None,
            notifier: None,
        })
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_event_sink(mut self, sink: EventSink) -> Self {
        self.sink = Some(sink);
        self
    }

    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// How often waiters and the background task look at the store for changes made elsewhere.
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.timing.poll = every;
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Starts the background task that records expiries and refreshes the grant cache (it sees
    /// changes made by other gateways sharing the store). It stops when the service is dropped.
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self.timing.poll;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                if let Err(e) = this.sweep().await {
                    tracing::warn!(error = %e, "approval expiry sweep failed");
                }
                if let Err(e) = this.refresh_grants().await {
                    tracing::warn!(error = %e, "refreshing approval grants failed");
                }
            }
        })
    }

    async fn run_store<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Store) -> Result<T> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        // The stores block (and the PostgreSQL client runs its own runtime): keep them off the
        // async workers.
        tokio::task::spawn_blocking(move || {
            let mut guard = store.lock();
            match guard.0.as_deref_mut() {
                Some(s) => f(s),
                None => Err(Error::Store("store is closed".into())),
            }
        })
        .await
        .map_err(|e| Error::Store(format!("store task failed: {e}")))?
    }

    fn emit(&self, event: &ApprovalEvent) {
        tracing::info!(id = event.id(), event = ?event, "approval event");
        if let Some(sink) = &self.sink {
            sink(event);
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    async fn update(
        &self,
        id: &str,
        change: impl FnMut(&mut Request) -> Result<ApprovalEvent> + Send + 'static,
    ) -> Result<Request> {
        let id = id.to_owned();
        let mut change = change;
        let (request, event) = self
            .run_store(move |s| s.update_request(&id, &mut change))
            .await?;
        self.emit(&event);
        Ok(request)
    }

    /// Opens a request. In retry mode a pending request for the same agent, target and text is
    /// returned instead of a new one, so an agent retrying before the decision doesn't pile up
    /// requests.
    pub async fn request(&self, new: NewRequest) -> Result<Request> {
        let now = self.now();
        if new.mode == Mode::Retry {
            let fp = fingerprint(&new.agent, &new.target, &new.statement);
            let open = self
                .run_store(move |s| {
                    let ids = s.find_by_fingerprint(&fp, Mode::Retry, State::Pending)?;
                    let mut found = Vec::new();
                    for id in ids {
                        found.extend(s.get_request(&id)?);
                    }
                    Ok(found)
                })
                .await?;
            if let Some(existing) = open.into_iter().find(|r| !r.is_due(now)) {
                return Ok(existing);
            }
        }
        let ttl = match new.mode {
            Mode::Hold => self.timing.hold_timeout,
            Mode::Retry => self.timing.retry_ttl,
        };
        let (request, event) = Request::new(new, now, ttl, self.timing.retry_uses)?;
        let stored = request.clone();
        self.run_store(move |s| s.insert_request(&stored)).await?;
        self.emit(&event);
        if let Some(n) = &self.notifier {
            n.notify(&request);
        }
        Ok(request)
    }

    /// Waits for the decision on a held statement. Wakes at once on a decision made through
    /// this process and polls the store for decisions made by other gateways. When `timeout`
    /// or the request's deadline passes first, the request is expired.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Outcome> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.changed.subscribe();
        loop {
            changes.borrow_and_update();
            let key = id.to_owned();
            let request = self
                .run_store(move |s| s.get_request(&key))
                .await?
                .ok_or_else(|| Error::NotFound(id.to_owned()))?;
            match request.state {
                State::Approved | State::Consumed => {
                    return Ok(Outcome::Approved {
                        by: request.approvals.into_iter().map(|a| a.operator).collect(),
                    })
                }
                State::Denied => {
                    let (by, reason) = request
                        .denial
                        .map(|d| (d.operator, d.reason))
                        .unwrap_or_default();
                    return Ok(Outcome::Denied { reason, by });
                }
                State::Expired => return Ok(Outcome::Expired),
                State::Pending => {}
            }
            let reason = if request.is_due(self.now()) {
                Some("no decision before the deadline")
            } else if tokio::time::Instant::now() >= deadline {
                Some("wait timed out")
            } else {
                None
            };
            if let Some(reason) = reason {
                match self.abandon(id, reason).await {
                    Ok(_) => return Ok(Outcome::Expired),
                    // Decided in the meantime: read it again.
                    Err(Error::IllegalTransition { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(self.timing.poll) => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Hold mode: the approved statement ran.
    pub async fn consume_held(&self, id: &str) -> Result<Request> {
        let now = self.now();
        self.update(id, move |r| {
            if r.mode != Mode::Hold {
                return Err(Error::Invalid(format!("{} is not a held request", r.id)));
            }
            r.consume(now)
        })
        .await
    }

    /// Ends a live request nobody will act on any more (client gone, wait given up).
    pub async fn abandon(&self, id: &str, reason: &str) -> Result<Request> {
        let now = self.now();
        let reason = reason.to_owned();
        self.update(id, move |r| r.expire(&reason, now)).await
    }

    /// Retry mode: when an approved, unexpired request with uses left matches this statement,
    /// uses one run of it (atomically, also across gateways sharing the store) and returns it.
    pub async fn try_consume(
        &self,
        agent: &str,
        target: &str,
        statement: &str,
    ) -> Result<Option<Request>> {
        let fp = fingerprint(agent, target, statement);
        let (agent, target, statement) =
            (agent.to_owned(), target.to_owned(), statement.to_owned());
        let now = self.now();
        let consumed = self
            .run_store(move |s| {
                for id in s.find_by_fingerprint(&fp, Mode::Retry, State::Approved)? {
                    let mut change = |r: &mut Request| {
                        if r.agent != agent || r.target != target || r.statement != statement {
                            return Err(Error::Invalid("fingerprint collision".into()));
                        }
                        r.consume(now)
                    };
                    match s.update_request(&id, &mut change) {
                        Ok(done) => return Ok(Some(done)),
                        // Used up, expired or revoked since the lookup: try the next one.
                        Err(
                            Error::IllegalTransition { .. }
                            | Error::Invalid(_)
                            | Error::NotFound(_),
                        ) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Ok(None)
            })
            .await?;
        Ok(consumed.map(|(request, event)| {
            self.emit(&event);
            request
        }))
    }

    /// Rules `agent` is exempt from on `target` right now, from the in-memory grant cache.
    pub fn active_exemptions(&self, agent: &str, target: &str, now: DateTime<Utc>) -> Vec<String> {
        let mut rules: Vec<String> = self
            .grants
            .read()
            .iter()
            .filter(|g| g.applies_to(agent, target, now))
            .flat_map(|g| g.rules.iter().cloned())
            .collect();
        rules.sort();
        rules.dedup();
        rules
    }

    /// Reloads the grant cache from the store.
    pub async fn refresh_grants(&self) -> Result<()> {
        let now = self.now();
        let grants = self
            .run_store(move |s| {
                Ok(s.list_grants(None)?
                    .into_iter()
                    .filter(|g| g.revoked.is_none() && g.until > now)
                    .collect::<Vec<_>>())
            })
            .await?;
        *self.grants.write() = grants;
        Ok(())
    }

    /// Records the expiry of every live request whose deadline passed; returns how many.
    pub async fn sweep(&self) -> Result<usize> {
        let now = self.now();
        let expired = self
            .run_store(move |s| {
                let mut events = Vec::new();
                for id in s.due(now)? {
                    match s.update_request(&id, &mut |r| {
                        if !r.is_due(now) {
                            return Err(Error::IllegalTransition {
                                id: r.id.clone(),
                                state: r.state,
                                action: "expire",
                            });
                        }
                        r.expire("deadline passed", now)
                    }) {
                        Ok((_, event)) => events.push(event),
                        Err(Error::IllegalTransition { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(events)
            })
            .await?;
        for event in &expired {
            self.emit(event);
        }
        Ok(expired.len())
    }

    pub async fn approve(&self, id: &str, operator: &str) -> Result<Request> {
        let now = self.now();
        let ttl = self.timing;
        let operator = operator.to_owned();
        self.update(id, move |r| {
            let grant_ttl = match r.mode {
                Mode::Hold => ttl.hold_timeout,
                Mode::Retry => ttl.retry_ttl,
            };
            r.approve(&operator, now, grant_ttl)
        })
        .await
    }

    pub async fn deny(&self, id: &str, operator: &str, reason: &str) -> Result<Request> {
        let now = self.now();
        let (operator, reason) = (operator.to_owned(), reason.to_owned());
        self.update(id, move |r| r.deny(&operator, &reason, now))
            .await
    }

    /// The request, with a passed deadline recorded as expiry first.
    pub async fn get(&self, id: &str) -> Result<Request> {
        let key = id.to_owned();
        let request = self
            .run_store(move |s| s.get_request(&key))
            .await?
            .ok_or_else(|| Error::NotFound(id.to_owned()))?;
        let now = self.now();
        if request.is_due(now) {
            match self
                .update(id, move |r| r.expire("deadline passed", now))
                .await
            {
                Ok(r) => return Ok(r),
                Err(Error::IllegalTransition { .. }) => {}
                Err(e) => return Err(e),
            }
            let key = id.to_owned();
            return self
                .run_store(move |s| s.get_request(&key))
                .await?
                .ok_or_else(|| Error::NotFound(id.to_owned()));
        }
        Ok(request)
    }

    pub async fn list(&self, filter: Filter) -> Result<Vec<Request>> {
        self.sweep().await?;
        self.run_store(move |s| s.list_requests(&filter)).await
    }

    pub async fn grant(&self, new: NewGrant, operator: &str) -> Result<Grant> {
        let (grant, event) = Grant::new(new, operator, self.now(), self.timing.max_grant_minutes)?;
        let stored = grant.clone();
        self.run_store(move |s| s.insert_grant(&stored)).await?;
        self.grants.write().push(grant.clone());
        self.emit(&event);
        Ok(grant)
    }

    pub async fn revoke_grant(&self, id: &str, operator: &str) -> Result<Grant> {
        let now = self.now();
        let (key, operator) = (id.to_owned(), operator.to_owned());
        let (grant, event) = self
            .run_store(move |s| s.update_grant(&key, &mut |g| g.revoke(&operator, now)))
            .await?;
        self.grants.write().retain(|g| g.id != grant.id);
        self.emit(&event);
        Ok(grant)
    }

    /// Grants active now, or all grants ever made when `all`.
    pub async fn grants(&self, all: bool) -> Result<Vec<Grant>> {
        let now = self.now();
        self.run_store(move |s| s.list_grants(if all { None } else { Some(now) }))
            .await
    }
}
