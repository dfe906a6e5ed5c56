//! The listener and the state every session shares.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::cancel::Cancels;
use crate::catalog::{Catalog, Catalogs, KeyCheck, Keys};
use crate::masking::SessionMasks;
use std::collections::HashMap;
use crate::config::Config;
use crate::limiter::AuthLimiter;
use crate::session::Judged;
use crate::{tls, Error};

pub struct Shared {
    pub config: Config,
    pub policy: ArcSwap<policy::Policy>,
    pub analyzer: sql::Analyzer,
    pub(crate) cancels: Cancels,
    pub(crate) limiter: AuthLimiter,
    pub(crate) catalogs: Catalogs,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// Seeds decoy verifiers so unknown agents take the same path as known ones.
    pub(crate) decoy_secret: [u8; 32],
    pub(crate) decisions: quick_cache::sync::Cache<DecisionKey, Arc<Judged>>,
    /// Decisions by text shape (literals blanked): one entry serves every literal value.
    pub(crate) shaped: quick_cache::sync::Cache<DecisionKey, Arc<Judged>>,
    pub audit: Option<Arc<audit::AuditLog>>,
    pub approvals: Option<Arc<approvals::Approvals>>,
    pub(crate) operators: approvals::OperatorTokens,
    pub(crate) metrics: crate::ops::Metrics,
    /// Flips to true when the gateway is stopping.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
    /// Key of the `hash` masking strategy.
    pub(crate) mask_key: mask::HashKey,
    /// Masking per (target, agent), for the policy and catalog it was built from.
    masks: parking_lot::Mutex<HashMap<(String, String), MasksEntry>>,
}

struct MasksEntry {
    policy: usize,
    catalog: Arc<Catalog>,
    masks: Option<Arc<SessionMasks>>,
}

impl Shared {
    /// The masking an agent is under on a target; None when no mask rule applies. Built
    /// once per policy and catalog, since resolving rules against a catalog walks every column.
    pub(crate) fn session_masks(
        &self,
        policy: &Arc<policy::Policy>,
        principal: &policy::Principal,
        target: &str,
        catalog: &Arc<Catalog>,
    ) -> Option<Arc<SessionMasks>> {
        let at = Arc::as_ptr(policy) as usize;
        let key = (target.to_string(), principal.agent.clone());
        let mut map = self.masks.lock();
        if let Some(e) = map.get(&key).filter(|e| e.policy == at && Arc::ptr_eq(&e.catalog, catalog)) {
            return e.masks.clone();
        }
        let rules = policy.masks(principal, target);
        let masks = SessionMasks::new(&rules, catalog.clone(), self.mask_key.clone(), &self.analyzer).map(Arc::new);
        map.insert(key, MasksEntry { policy: at, catalog: catalog.clone(), masks: masks.clone() });
        masks
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct DecisionKey {
    pub policy_version: Box<str>,
    pub agent: Arc<str>,
    pub target: Arc<str>,
    pub text: Box<str>,
}

/// Looks a decision up without allocating; hashes exactly as `DecisionKey` does.
#[derive(Hash)]
pub(crate) struct DecisionKeyRef<'a> {
    pub policy_version: &'a str,
    pub agent: &'a str,
    pub target: &'a str,
    pub text: &'a str,
}

impl quick_cache::Equivalent<DecisionKey> for DecisionKeyRef<'_> {
    fn equivalent(&self, k: &DecisionKey) -> bool {
        self.text == &*k.text
            && self.agent == &*k.agent
            && self.target == &*k.target
            && self.policy_version == &*k.policy_version
    }
}

/// Loads the policy the config names.
pub fn server_policy(cfg: &Config) -> Result<policy::Policy, Error> {
    match (&cfg.policy.file, &cfg.policy.pack) {
        (Some(file), _) => policy::Policy::load(cfg.resolve(file)).map_err(|e| Error::Policy(e.to_string())),
        (None, Some(pack)) => {
            let params = serde_json::to_value(&cfg.policy.with)
                .ok()
                .and_then(|v| v.as_object().map(|o| o.clone().into_iter().collect()))
                .unwrap_or_default();
            policy::Policy::pack(pack, &params).map_err(|e| Error::Policy(e.to_string()))
        }
        (None, None) => Err(Error::Policy(
            "no policy configured: set [policy] file = \"…\" or pack = \"production\"".into(),
        )),
    }
}

pub struct Gateway {
    pub shared: Arc<Shared>,
    listener: TcpListener,
    http: Option<TcpListener>,
}

impl Gateway {
    pub async fn bind(config: Config) -> Result<Gateway, Error> {
        let policy = server_policy(&config)?;
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(c), Some(k)) => Some(tls::acceptor(&config.resolve(c), &config.resolve(k))?),
            _ => None,
        };
        let audit = match &config.audit {
            Some(cfg) => Some(Arc::new(
                audit::AuditLog::open(cfg, &config.base_dir).map_err(|e| Error::Config(format!("audit: {e}")))?,
            )),
            None => None,
        };
        let operators = approvals::OperatorTokens::from_config(&config.operators)
            .map_err(|e| Error::Config(format!("operators: {e}")))?;
        let approvals = match &config.approvals {
            Some(cfg) => {
                let mut cfg = cfg.clone();
                cfg.sqlite_path = config.resolve(&cfg.sqlite_path);
                let service = tokio::task::spawn_blocking(move || approvals::Approvals::open(&cfg))
                    .await
                    .map_err(|e| Error::Config(format!("approvals: {e}")))?
                    .map_err(|e| Error::Config(format!("approvals: {e}")))?;
                let service = match &audit {
                    Some(log) => {
                        let log = log.clone();
                        service.with_event_sink(Arc::new(move |e: &approvals::ApprovalEvent| {
                            let approval = serde_json::to_value(e).unwrap_or_default();
                            if let Err(err) = log.append(audit::Event::Approval { session: None, approval }) {
                                tracing::error!(error = %err, "approval event could not be recorded");
                            }
                        }))
                    }
                    None => service,
                };
                let service = Arc::new(service);
                service.start();
                Some(service)
            }
            None => None,
        };
        let listener = TcpListener::bind(&config.server.listen)
            .await
            .map_err(|e| Error::Config(format!("listen {}: {e}", config.server.listen)))?;
        let http = match &config.http {
            Some(h) => Some(
                TcpListener::bind(&h.listen).await.map_err(|e| Error::Config(format!("http listen {}: {e}", h.listen)))?,
            ),
            None => None,
        };
        let mask_key = match &config.masking {
            Some(m) => load_mask_key(&config.resolve(&m.key_file))?,
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        let mask_key = mask::HashKey::new(&mask_key).map_err(|e| Error::Config(format!("masking key: {e}")))?;
        let limits = sql::Limits { max_bytes: config.server.max_statement_bytes, ..Default::default() };
        let shared = Shared {
            limiter: AuthLimiter::new(config.server.auth_failures_per_minute),
            analyzer: sql::Analyzer::new(limits),
            policy: ArcSwap::from_pointee(policy),
            cancels: Cancels::default(),
            catalogs: Catalogs::new(std::time::Duration::from_secs(config.server.key_check_secs)),
            tls,
            decoy_secret: rand::random(),
            decisions: quick_cache::sync::Cache::new(10_000),
            shaped: quick_cache::sync::Cache::new(10_000),
            audit,
            approvals,
            operators,
            metrics: Default::default(),
            stopping: tokio::sync::watch::Sender::new(false),
            mask_key,
            masks: Default::default(),
            config,
        };
        Ok(Gateway { shared: Arc::new(shared), listener, http })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.listener.local_addr()?)
    }

    /// Accepts agents until the process ends. A failing session never stops the others.
    pub async fn run(self) -> Result<(), Error> {
        info!(listen = %self.local_addr()?, "drawbridge listening");
        if let Some(http) = self.http {
            info!(listen = %http.local_addr()?, "http endpoints listening");
            let app = crate::ops::router(self.shared.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(http, app).await {
                    warn!(error = %e, "http endpoints stopped");
                }
            });
        }
        let shards = crate::shards::Shards::start(self.shared.config.server.workers)?;
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let shared = self.shared.clone();
            // Registered again on the session's own thread.
            let tcp = match tcp.into_std() {
                Ok(tcp) => tcp,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    continue;
                }
            };
            shards.spawn(async move {
                let tcp = match tokio::net::TcpStream::from_std(tcp) {
                    Ok(tcp) => tcp,
                    Err(e) => return warn!(error = %e, "accept failed"),
                };
                let _ = tcp.set_nodelay(true);
                crate::startup::serve_connection(shared, tcp, peer).await;
            });
        }
    }
}

impl Shared {
    /// Stops the gateway: held statements are answered, and the audit log is drained and
    /// sealed with a last signed checkpoint.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
        if let Some(log) = &self.audit {
            log.close();
        }
    }

    /// Appends to the audit log, if there is one. `Err` means the record was not kept and
    /// the configured policy is to refuse rather than run unrecorded.
    pub(crate) fn record(&self, event: audit::Event) -> Result<(), ()> {
        let Some(log) = &self.audit else { return Ok(()) };
        match log.append(event) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "audit record could not be written");
                match self.config.audit.as_ref().map(|c| c.on_failure) {
                    Some(audit::OnFailure::Allow) => Ok(()),
                    _ => Err(()),
                }
            }
        }
    }

    /// The catalog that may bound writes by unique keys on `target`; None means guard the
    /// write. When the keys are due a check, it starts in the background and this write is
    /// guarded.
    pub(crate) fn key_catalog(self: &Arc<Self>, target: &str) -> Option<Arc<Catalog>> {
        match self.catalogs.settled(target) {
            Keys::Trusted(c) => Some(c),
            Keys::CheckDue => {
                let shared = self.clone();
                let target = target.to_owned();
                tokio::spawn(async move { shared.check_keys(&target).await });
                None
            }
            Keys::Unknown => None,
        }
    }

    async fn check_keys(&self, name: &str) {
        let work = async {
            let target = self.config.targets.get(name).ok_or_else(|| Error::Config(format!("unknown target {name}")))?;
            // Named, so a DBA can tell the gateway's own session in pg_stat_activity.
            let params = [("application_name".to_owned(), "drawbridge key check".to_owned())];
            let mut up = crate::upstream::connect(&self.config, name, target, &params).await?;
            let checked = self.catalogs.check_keys(name, &mut up.frames).await;
            let _ = crate::conn::write_all(&mut up.frames.io, &wire::Builder::terminate()).await;
            checked
        };
        let limit = std::time::Duration::from_secs(self.config.server.connect_timeout_secs.max(1) * 3);
        let counts = &self.metrics.key_checks;
        let counter = match tokio::time::timeout(limit, work).await {
            Ok(Ok(None)) => None,
            Ok(Ok(Some(KeyCheck::Confirmed))) => Some(&counts.confirmed),
            Ok(Ok(Some(KeyCheck::Changed))) => Some(&counts.changed),
            Ok(Err(e)) => {
                warn!(target = name, error = %e, "checking unique keys failed; key-bounded writes stay guarded");
                Some(&counts.failed)
            }
            Err(_) => {
                warn!(target = name, "checking unique keys timed out; key-bounded writes stay guarded");
                Some(&counts.failed)
            }
        };
        if let Some(c) = counter {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.catalogs.check_ended(name);
    }

    /// Records what happened after a recorded statement (its outcome, what was masked). The
    /// statement has run by then, so a failure is only logged.
    pub(crate) fn record_later(&self, event: audit::Event) {
        let _ = self.record(event);
    }

    /// Re-reads the policy; on error the old one stays in force.
    pub fn reload_policy(&self) -> Result<(), Error> {
        let fresh = server_policy(&self.config)?;
        self.policy.store(Arc::new(fresh));
        self.decisions.clear();
        self.shaped.clear();
        Ok(())
    }
}

/// Reads the masking key (hex), creating a random one (mode 0600) when the file is missing.
fn load_mask_key(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    let bad = |what: &str| Error::Config(format!("masking key {}: {what}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = text.trim();
            if text.len() < 32 || text.len() % 2 != 0 {
                return Err(bad("must be at least 16 bytes of hex"));
            }
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| bad("not hex")))
                .collect()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let key: [u8; 32] = rand::random();
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| bad(&e.to_string()))?;
            f.write_all(format!("{hex}\n").as_bytes()).map_err(|e| bad(&e.to_string()))?;
            Ok(key.to_vec())
        }
        Err(e) => Err(bad(&e.to_string())),
    }
}
