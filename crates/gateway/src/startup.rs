//! From accepted socket to a relaying session: TLS negotiation, the agent's SCRAM
//! authentication, target selection and the upstream connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{info, warn};

use wire::auth::scram::{ServerExchange, Verifier};
use wire::frontend::{self, Startup};
use wire::Builder;

use crate::conn::{write_all, BoxIo, Frames};
use crate::server::Shared;
use crate::session::{self, Principal, SessionStats};
use crate::{cancel, upstream, Error};

/// What the agent asked for in its startup packet.
struct Hello {
    params: Vec<(String, String)>,
    user: String,
    database: String,
    tls: bool,
}

pub async fn serve_connection(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let started = Instant::now();
    let auth_timeout = Duration::from_secs(shared.config.server.auth_timeout_secs.max(1));
    let mut frames = Frames::new(Box::new(tcp) as BoxIo, wire::MAX_STARTUP_LEN);

    let hello = match tokio::time::timeout(auth_timeout, handshake(&shared, &mut frames, peer)).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            warn!(client = %peer, error = %e, "startup failed");
            return;
        }
        Err(_) => {
            let _ = fatal(&mut frames.io, "08P01", "drawbridge: authentication timed out").await;
            return;
        }
    };

    let session_id: Arc<str> = format!("{:016x}", rand::random::<u64>()).into();
    let Some(target) = shared.config.targets.get(&hello.database) else {
        let msg = format!("drawbridge: unknown target \"{}\"", hello.database);
        let _ = fatal(&mut frames.io, "3D000", &msg).await;
        info!(client = %peer, agent = %hello.user, target = %hello.database, "unknown target");
        return;
    };
    let mut up = match upstream::connect(&shared.config, &hello.database, target, &hello.params).await {
        Ok(u) => u,
        Err(e) => {
            // The agent learns the target is down, not why: the cause may name hosts or users.
            warn!(client = %peer, agent = %hello.user, target = %hello.database, error = %e, "upstream unavailable");
            let msg = format!("drawbridge: target \"{}\" is unavailable", hello.database);
            let _ = fatal(&mut frames.io, "08006", &msg).await;
            return;
        }
    };
    let catalog = match shared.catalogs.get(&hello.database) {
        Some(c) => c,
        None => match shared.catalogs.load(&hello.database, &mut up.frames).await {
            Ok(c) => c,
            Err(e) => {
                warn!(target = %hello.database, error = %e, "catalog unavailable");
                let msg = format!("drawbridge: target \"{}\" is unavailable", hello.database);
                let _ = fatal(&mut frames.io, "08006", &msg).await;
                return;
            }
        },
    };

    let key = shared.cancels.register(cancel::Entry {
        target: hello.database.clone(),
        upstream_key: up.backend_key,
    });
    let mut greeting = Vec::with_capacity(up.parameter_status.len() + 32);
    greeting.extend_from_slice(&up.parameter_status);
    greeting.extend_from_slice(&Builder::backend_key_data(key.0, key.1));
    greeting.extend_from_slice(&Builder::ready_for_query(b'I'));
    if write_all(&mut frames.io, &greeting).await.is_err() {
        shared.cancels.remove(key);
        return;
    }

    let groups = shared.config.agents.get(&hello.user).map(|a| a.groups.clone()).unwrap_or_default();
    let opened = shared.record(audit::Event::SessionOpened {
        session: session_id.to_string(),
        agent: hello.user.clone(),
        groups: groups.clone(),
        target: hello.database.clone(),
        client: peer.to_string(),
        tls: hello.tls,
    });
    if opened.is_err() {
        let _ = fatal(&mut frames.io, "58030", "drawbridge: the audit log is unavailable; sessions are refused").await;
        shared.cancels.remove(key);
        return;
    }
    let principal = Principal { agent: hello.user.clone(), groups };
    shared.metrics.sessions_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    shared.metrics.sessions_active.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut stats = SessionStats::default();
    let client = Frames::with_buffer(frames.io, frames.buf, wire::MAX_MESSAGE_LEN);
    let result = session::run(
        shared.clone(),
        session_id.clone(),
        principal,
        hello.database.clone(),
        catalog,
        up.client_encoding_safe,
        client,
        up.frames,
        &mut stats,
    )
    .await;
    shared.cancels.remove(key);
    shared.metrics.sessions_active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    let end = match &result {
        Ok(()) => "closed".to_string(),
        Err(e) => e.to_string(),
    };
    let _ = shared.record(audit::Event::SessionClosed {
        session: session_id.to_string(),
        duration_ms: started.elapsed().as_millis() as u64,
        bytes_from_client: stats.bytes_from_client,
        bytes_to_client: stats.bytes_to_client,
        statements: stats.statements,
        refused: stats.refused,
        reason: end.clone(),
    });
    info!(
        session = %session_id,
        client = %peer,
        agent = %hello.user,
        target = %hello.database,
        tls = hello.tls,
        duration_ms = started.elapsed().as_millis() as u64,
        bytes_from_client = stats.bytes_from_client,
        bytes_to_client = stats.bytes_to_client,
        statements = stats.statements,
        refused = stats.refused,
        end = %end,
        "session"
    );
}

/// Runs startup and authentication. `Ok(None)` when the connection ends without a session
/// (a cancel request, a failed login already answered).
async fn handshake(shared: &Shared, frames: &mut Frames<BoxIo>, peer: SocketAddr) -> Result<Option<Hello>, Error> {
    let mut tls = false;
    let params = loop {
        let Some(packet) = frames.next_startup().await? else { return Ok(None) };
        match Startup::parse(&packet) {
            Ok(Startup::Ssl) if !tls => {
                if !frames.buf.is_empty() {
                    return Err(Error::Protocol(wire::Error::Malformed("data after SSLRequest")));
                }
                match &shared.tls {
                    Some(acceptor) => {
                        frames.io.write_all(b"S").await?;
                        let io = std::mem::replace(&mut frames.io, Box::new(tokio::io::duplex(1).0));
                        let stream = acceptor.accept(io).await.map_err(|e| Error::Tls(e.to_string()))?;
                        frames.io = Box::new(stream);
                        tls = true;
                    }
                    None => frames.io.write_all(b"N").await?,
                }
            }
            Ok(Startup::GssEnc) if !tls => frames.io.write_all(b"N").await?,
            Ok(Startup::Cancel { pid, key }) => {
                if let Some(entry) = shared.cancels.lookup((pid, key)) {
                    if let Some(t) = shared.config.targets.get(&entry.target) {
                        if let Err(e) = upstream::cancel(t, entry.upstream_key).await {
                            warn!(target = %entry.target, error = %e, "cancel failed");
                        }
                    }
                }
                return Ok(None);
            }
            Ok(Startup::Params(p)) => break p,
            Ok(_) => return Err(Error::Protocol(wire::Error::Malformed("repeated encryption request"))),
            Err(e) => {
                let _ = fatal(&mut frames.io, "08P01", &format!("drawbridge: {e}")).await;
                return Err(e.into());
            }
        }
    };

    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(user) = get("user") else {
        fatal(&mut frames.io, "28000", "drawbridge: no user name in startup packet").await?;
        return Ok(None);
    };
    if get("replication").is_some_and(|v| v != "false" && v != "off" && v != "0") {
        // The replication protocol carries no SQL the gateway could judge.
        fatal(&mut frames.io, "28000", "drawbridge: replication connections are not allowed").await?;
        return Ok(None);
    }
    let database = get("database").unwrap_or_else(|| user.clone());

    if shared.limiter.blocked(peer.ip()) {
        fatal(&mut frames.io, "28P01", "drawbridge: too many failed authentication attempts; try again later").await?;
        return Ok(None);
    }
    if !authenticate(shared, frames, &user).await? {
        shared.limiter.failed(peer.ip());
        shared.metrics.auth_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = shared.record(audit::Event::AuthFailed {
            agent: user.clone(),
            client: peer.to_string(),
            target: database.clone(),
        });
        info!(client = %peer, agent = %user, "authentication failed");
        let msg = format!("password authentication failed for user \"{user}\"");
        fatal(&mut frames.io, "28P01", &msg).await?;
        return Ok(None);
    }
    Ok(Some(Hello { params, user, database, tls }))
}

/// SCRAM-SHA-256 against the agent's verifier. An unknown agent gets a decoy verifier so
/// both failures look and take the same.
async fn authenticate(shared: &Shared, frames: &mut Frames<BoxIo>, user: &str) -> Result<bool, Error> {
    let verifier = shared
        .config
        .agents
        .get(user)
        .and_then(|a| Verifier::parse(&a.verifier).ok())
        .unwrap_or_else(|| Verifier::decoy(user, &shared.decoy_secret));
    let mut exchange = ServerExchange::new(verifier);
    frames.io.write_all(&Builder::auth_sasl(&["SCRAM-SHA-256"])).await?;

    let initial = expect_password(frames).await?;
    let (mech, data) = frontend::sasl_initial(&initial[5..])?;
    if mech != b"SCRAM-SHA-256" {
        return Ok(false);
    }
    let Ok(server_first) = exchange.client_first(data) else { return Ok(false) };
    frames.io.write_all(&Builder::auth_sasl_continue(&server_first)).await?;

    let response = expect_password(frames).await?;
    match exchange.client_final(&response[5..]) {
        Ok(server_final) => {
            let mut out = Builder::auth_sasl_final(&server_final);
            out.extend_from_slice(&Builder::auth_ok());
            frames.io.write_all(&out).await?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

async fn expect_password(frames: &mut Frames<BoxIo>) -> Result<BytesMut, Error> {
    match frames.next().await? {
        Some((h, frame)) if h.tag == frontend::PASSWORD => Ok(frame),
        Some(_) => Err(Error::Protocol(wire::Error::Malformed("expected a password message"))),
        None => Err(Error::Protocol(wire::Error::Malformed("closed during authentication"))),
    }
}

pub async fn fatal(io: &mut BoxIo, code: &str, message: &str) -> Result<(), Error> {
    io.write_all(&Builder::error("FATAL", code, message, None)).await?;
    io.flush().await?;
    Ok(())
}
