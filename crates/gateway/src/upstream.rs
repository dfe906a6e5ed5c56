//! Connecting to a target as the gateway's own configured user. The agent never sees
//! these credentials; errors carry the target name and a cause fit for the gateway's log.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use wire::auth::{md5, scram};
use wire::backend::{self, Authentication};
use wire::Builder;

use crate::config::{Config, Target, UpstreamTls};
use crate::conn::{write_all, BoxIo, Frames};
use crate::{tls, Error};

/// A ready upstream session: the frames to replay to the agent and the server's key.
pub struct Upstream {
    pub frames: Frames<BoxIo>,
    /// ParameterStatus frames exactly as the server sent them.
    pub parameter_status: Vec<u8>,
    pub backend_key: (i32, i32),
    pub client_encoding_safe: bool,
}

/// Startup parameters an agent may pass through to the target. Anything else (notably
/// `options`, which can set a role or any setting) is dropped.
const PASSTHROUGH: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "extra_float_digits",
    "IntervalStyle",
    "search_path",
];

pub async fn connect(
    cfg: &Config,
    name: &str,
    target: &Target,
    client_params: &[(String, String)],
) -> Result<Upstream, Error> {
    let fail = |reason: String| Error::Upstream { target: name.to_string(), reason };
    let timeout = Duration::from_secs(cfg.server.connect_timeout_secs.max(1));
    let password = cfg.target_password(name, target)?;

    let work = async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| fail(format!("connect {}:{}: {}", target.host, target.port, e.kind())))?;
        tcp.set_nodelay(true)?;
        let io = negotiate_tls(tcp, target).await.map_err(|e| fail(e.to_string()))?;
        let mut frames = Frames::new(io, wire::MAX_MESSAGE_LEN);

        let mut params: Vec<(&str, &str)> =
            vec![("user", target.user.as_str()), ("database", target.database.as_str())];
        for (k, v) in client_params {
            if PASSTHROUGH.iter().any(|p| p.eq_ignore_ascii_case(k)) {
                params.push((k.as_str(), v.as_str()));
            }
        }
        write_all(&mut frames.io, &Builder::startup(&params)).await?;
        authenticate(&mut frames, target, password.as_deref()).await.map_err(|e| match e {
            Error::Upstream { reason, .. } => fail(reason),
            other => fail(other.to_string()),
        })?;

        let mut parameter_status = Vec::new();
        let mut backend_key = (0, 0);
        let mut client_encoding_safe = true;
        loop {
            let (h, frame) = frames.next().await?.ok_or_else(|| fail("closed during startup".into()))?;
            let body = h.body(&frame);
            match h.tag {
                backend::PARAMETER_STATUS => {
                    let (k, v) = backend::parameter_status(body)?;
                    if k == b"client_encoding" {
                        client_encoding_safe = crate::session::encoding_is_safe(v);
                    }
                    if k == b"standard_conforming_strings" && v != b"on" {
                        return Err(fail("standard_conforming_strings is off on the target".into()));
                    }
                    parameter_status.extend_from_slice(&frame);
                }
                backend::BACKEND_KEY_DATA => backend_key = backend::backend_key_data(body)?,
                backend::READY_FOR_QUERY => break,
                backend::NOTICE_RESPONSE => {}
                backend::ERROR_RESPONSE => return Err(fail(server_message(body))),
                other => return Err(fail(format!("unexpected message {:?} during startup", other as char))),
            }
        }
        Ok(Upstream { frames, parameter_status, backend_key, client_encoding_safe })
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| fail("connection timed out".into()))?
}

async fn negotiate_tls(mut tcp: TcpStream, target: &Target) -> Result<BoxIo, Error> {
    let connector = tls::connector(target.tls, target.tls_ca_file.as_deref())?;
    let Some(connector) = connector else { return Ok(Box::new(tcp)) };
    tcp.write_all(&Builder::ssl_request()).await?;
    let mut answer = [0u8; 1];
    tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut answer).await?;
    match answer[0] {
        b'S' => {
            let name = tls::server_name(&target.host)?;
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| Error::Tls(format!("handshake: {e}")))?;
            Ok(Box::new(stream))
        }
        b'N' if target.tls == UpstreamTls::Prefer => Ok(Box::new(tcp)),
        b'N' => Err(Error::Tls("server does not offer TLS".into())),
        _ => Err(Error::Tls("unexpected answer to SSLRequest".into())),
    }
}

async fn authenticate(
    frames: &mut Frames<BoxIo>,
    target: &Target,
    password: Option<&str>,
) -> Result<(), Error> {
    let upstream = |reason: &str| Error::Upstream { target: String::new(), reason: reason.to_string() };
    let need_password = || password.ok_or_else(|| upstream("server asks for a password and none is configured"));
    let mut scram_client: Option<scram::ClientExchange> = None;
    loop {
        let (h, frame) = frames.next().await?.ok_or_else(|| upstream("closed during authentication"))?;
        let body = h.body(&frame);
        match h.tag {
            backend::AUTHENTICATION => {}
            backend::ERROR_RESPONSE => return Err(upstream(&server_message(body))),
            backend::NEGOTIATE_PROTOCOL_VERSION => continue,
            _ => return Err(upstream("unexpected message during authentication")),
        }
        let reply = match backend::authentication(body)? {
            Authentication::Ok => return Ok(()),
            Authentication::Cleartext => Builder::password(need_password()?.as_bytes()),
            Authentication::Md5(salt) => {
                Builder::password(md5::password_response(&target.user, need_password()?, salt).as_bytes())
            }
            Authentication::Sasl(mechs) => {
                if !mechs.iter().any(|m| *m == b"SCRAM-SHA-256") {
                    return Err(upstream("server offers no SASL mechanism the gateway supports"));
                }
                let mut c = scram::ClientExchange::new(need_password()?);
                let first = c.client_first();
                scram_client = Some(c);
                Builder::sasl_initial("SCRAM-SHA-256", &first)
            }
            Authentication::SaslContinue(data) => {
                let c = scram_client.as_mut().ok_or_else(|| upstream("SASL out of order"))?;
                let fin = c.server_first(data).map_err(|e| upstream(&e.to_string()))?;
                Builder::sasl_response(&fin)
            }
            Authentication::SaslFinal(data) => {
                let c = scram_client.as_mut().ok_or_else(|| upstream("SASL out of order"))?;
                c.server_final(data).map_err(|e| upstream(&e.to_string()))?;
                continue;
            }
            Authentication::Other(code) => {
                return Err(upstream(&format!("unsupported authentication request {code}")))
            }
        };
        write_all(&mut frames.io, &reply).await?;
    }
}

/// The server's own words for the gateway's log ("SQLSTATE: message").
pub fn server_message(body: &[u8]) -> String {
    match backend::fields(body) {
        Ok(f) => {
            let get = |c| String::from_utf8_lossy(backend::field(&f, c).unwrap_or(b"")).into_owned();
            format!("{}: {}", get(b'C'), get(b'M'))
        }
        Err(_) => "malformed error response".into(),
    }
}

/// Sends a CancelRequest for an upstream backend key.
pub async fn cancel(target: &Target, key: (i32, i32)) -> Result<(), Error> {
    let mut tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
    tcp.write_all(&Builder::cancel_request(key.0, key.1)).await?;
    let mut sink = BytesMut::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read_buf(&mut tcp, &mut sink)).await;
    Ok(())
}
