//! SCRAM-SHA-256 (RFC 5802, RFC 7677) the way PostgreSQL uses it: SASL mechanism
//! `SCRAM-SHA-256`, no channel binding, user name carried by the StartupMessage rather than by
//! SCRAM. [`ServerExchange`] checks agents against a stored [`Verifier`]; [`ClientExchange`]
//! logs the gateway in to the upstream server.
//!
//! Every message is parsed strictly: attributes in the order the RFC fixes, strict base64,
//! printable nonces, and each side's nonce checked against the other's. Any error ends the
//! exchange; later calls return [`AuthError::OutOfOrder`].

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::AuthError;

/// The SASL mechanism name to advertise in AuthenticationSASL and to expect in
/// SASLInitialResponse.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// PostgreSQL's default iteration count. [`Verifier::decoy`] uses it, so verifiers made with
/// [`Verifier::generate`] should too: a different count would tell a prober which users exist.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Lowest iteration count [`ClientExchange`] accepts from a server. Lower counts make the proof
/// a hostile upstream captures cheaper to brute-force; 4096 is PostgreSQL's default.
pub const MIN_ITERATIONS: u32 = 4096;

/// Highest iteration count [`ClientExchange`] accepts from a server, so a hostile upstream
/// cannot make the gateway spend unbounded CPU (1,000,000 rounds take well under a second in
/// release builds). Callers should still run [`ClientExchange::server_first`] off the async
/// executor.
pub const MAX_ITERATIONS: u32 = 1_000_000;

const SALT_LEN: usize = 16;
/// Random bytes in a nonce; 24 characters once in base64.
const NONCE_LEN: usize = 18;
const KEY_LEN: usize = 32;
/// Longest `e=` text kept from a server, so a hostile upstream cannot flood logs.
const MAX_SERVER_ERROR_LEN: usize = 128;

type Key = [u8; KEY_LEN];

/// A stored SCRAM-SHA-256 verifier in PostgreSQL's format:
/// `SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Key,
    server_key: Key,
    // Set only on decoys. Their keys are HMAC outputs, so no password is known to match; the
    // flag makes sure none ever does.
    decoy: bool,
}

impl Verifier {
    /// A verifier for `password` with a fresh random 16-byte salt. An iteration count of 0 is
    /// raised to 1.
    pub fn generate(password: &str, iterations: u32) -> Verifier {
        let mut salt = vec![0u8; SALT_LEN];
        rand::thread_rng().fill_bytes(&mut salt);
        Self::from_password(password, salt, iterations.max(1))
    }

    fn from_password(password: &str, salt: Vec<u8>, iterations: u32) -> Verifier {
        let salted = salted_password(password, &salt, iterations);
        Verifier {
            iterations,
            salt,
            stored_key: sha256(&hmac(&salted, &[b"Client Key"])),
            server_key: hmac(&salted, &[b"Server Key"]),
            decoy: false,
        }
    }

    /// Parses the string form. Strict: no surrounding whitespace, iterations at least 1, a
    /// non-empty salt, and 32-byte keys, all in canonical base64.
    pub fn parse(s: &str) -> Result<Verifier, AuthError> {
        let bad = AuthError::InvalidVerifier;
        let rest = s
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(bad("not a SCRAM-SHA-256 verifier"))?;
        let (params, keys) = rest.split_once('$').ok_or(bad("missing keys"))?;
        let (iterations, salt) = params.split_once(':').ok_or(bad("missing salt"))?;
        let (stored_key, server_key) = keys.split_once(':').ok_or(bad("missing ServerKey"))?;
        Ok(Verifier {
            iterations: parse_decimal(iterations)
                .filter(|&i| i > 0)
                .ok_or(bad("iteration count"))?,
            salt: decode_b64(salt)
                .filter(|s| !s.is_empty())
                .ok_or(bad("salt"))?,
            stored_key: decode_key(stored_key).ok_or(bad("StoredKey"))?,
            server_key: decode_key(server_key).ok_or(bad("ServerKey"))?,
            decoy: false,
        })
    }

    /// A verifier that no password matches, the same for the same `user` and `secret`, so an
    /// unknown user goes through the same exchange as a known one and learns only that the
    /// login failed. `secret` should be random per process (or per deployment, so that several
    /// gateways answer alike). Uses [`DEFAULT_ITERATIONS`] and a 16-byte salt, like
    /// [`Verifier::generate`].
    pub fn decoy(user: &str, secret: &[u8; 32]) -> Verifier {
        let derive = |label: &[u8]| {
            hmac(
                secret,
                &[b"drawbridge scram decoy\0", label, b"\0", user.as_bytes()],
            )
        };
        Verifier {
            iterations: DEFAULT_ITERATIONS,
            salt: derive(b"salt")[..SALT_LEN].to_vec(),
            stored_key: derive(b"stored key"),
            server_key: derive(b"server key"),
            decoy: true,
        }
    }

    /// The PBKDF2 iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

// The keys are password equivalents for an attacker who also sees an exchange; keep them out
// of logs.
impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

/// The server side of one SCRAM exchange, checking a client against a [`Verifier`].
pub struct ServerExchange {
    verifier: Verifier,
    server_nonce: String,
    state: ServerState,
}

enum ServerState {
    Initial,
    SentFirst {
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Finished,
}

impl ServerExchange {
    pub fn new(verifier: Verifier) -> Self {
        Self::with_nonce(verifier, random_nonce())
    }

    fn with_nonce(verifier: Verifier, server_nonce: String) -> Self {
        ServerExchange {
            verifier,
            server_nonce,
            state: ServerState::Initial,
        }
    }

    /// Takes the client-first-message (the data of SASLInitialResponse) and returns the
    /// server-first-message (the data of AuthenticationSASLContinue). Accepts the GS2 flags
    /// `n` and `y`; `p=` (channel binding) and an authorization identity are refused.
    pub fn client_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, ServerState::Initial) {
            return Err(AuthError::OutOfOrder);
        }
        self.state = ServerState::Finished;
        let msg = utf8(msg)?;
        let (gs2_header, bare) = split_gs2_header(msg)?;
        let mut attrs = bare.split(',');
        let first = attrs.next().unwrap_or_default();
        if first.starts_with("m=") {
            return Err(AuthError::Malformed("mandatory extension not supported"));
        }
        // PostgreSQL takes the user name from the StartupMessage and ignores this one.
        attr(Some(first), b'n', "expected n=<user>")?;
        let client_nonce = attr(attrs.next(), b'r', "expected r=<nonce>")?;
        if !is_printable(client_nonce) {
            return Err(AuthError::Malformed("nonce is not printable"));
        }
        check_extensions(attrs)?;

        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.state = ServerState::SentFirst {
            gs2_header: gs2_header.to_owned(),
            client_first_bare: bare.to_owned(),
            server_first,
            nonce,
        };
        Ok(reply)
    }

    /// Takes the client-final-message (the data of SASLResponse) and returns the
    /// server-final-message `v=<signature>` (the data of AuthenticationSASLFinal) when the
    /// proof matches. A wrong password gives [`AuthError::WrongPassword`].
    pub fn client_final(&mut self, msg: &[u8]) -> Result<Vec<u8>, AuthError> {
        let ServerState::SentFirst {
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, ServerState::Finished)
        else {
            return Err(AuthError::OutOfOrder);
        };
        let msg = utf8(msg)?;
        // The proof is the last attribute, and no attribute value may contain a comma.
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(AuthError::Malformed("expected p=<proof> last"))?;
        let proof = decode_key(proof).ok_or(AuthError::Malformed("proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attr(attrs.next(), b'c', "expected c=<channel binding>")?;
        if decode_b64(binding).as_deref() != Some(gs2_header.as_bytes()) {
            return Err(AuthError::Malformed(
                "channel binding does not match the GS2 header",
            ));
        }
        if attr(attrs.next(), b'r', "expected r=<nonce>")? != nonce {
            return Err(AuthError::Malformed("nonce does not match"));
        }
        check_extensions(attrs)?;

        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = hmac(&self.verifier.stored_key, &[auth_message.as_bytes()]);
        let client_key = xor(&proof, &client_signature);
        let matches = sha256(&client_key).ct_eq(&self.verifier.stored_key)
            & !Choice::from(u8::from(self.verifier.decoy));
        if !bool::from(matches) {
            return Err(AuthError::WrongPassword);
        }
        let server_signature = hmac(&self.verifier.server_key, &[auth_message.as_bytes()]);
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

impl fmt::Debug for ServerExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerExchange").finish_non_exhaustive()
    }
}

/// The client side of one SCRAM exchange, logging in to an upstream server.
pub struct ClientExchange {
    password: String,
    user: String,
    gs2_header: &'static str,
    nonce: String,
    state: ClientState,
}

enum ClientState {
    Initial,
    SentFirst,
    SentFinal { server_signature: Key },
    Finished,
}

impl ClientExchange {
    pub fn new(password: &str) -> Self {
        Self::with_nonce(password, "", "n,,", random_nonce())
    }

    fn with_nonce(password: &str, user: &str, gs2_header: &'static str, nonce: String) -> Self {
        ClientExchange {
            password: password.to_owned(),
            user: user.to_owned(),
            gs2_header,
            nonce,
            state: ClientState::Initial,
        }
    }

    fn client_first_bare(&self) -> String {
        format!("n={},r={}", self.user, self.nonce)
    }

    /// The client-first-message `n,,n=,r=<nonce>`, the data of SASLInitialResponse. The user
    /// name is left empty: PostgreSQL takes it from the StartupMessage. Calling it again
    /// restarts the exchange.
    pub fn client_first(&mut self) -> Vec<u8> {
        self.state = ClientState::SentFirst;
        format!("{}{}", self.gs2_header, self.client_first_bare()).into_bytes()
    }

    /// Takes the server-first-message (AuthenticationSASLContinue) and returns the
    /// client-final-message (SASLResponse). Runs PBKDF2 with the server's iteration count,
    /// which must lie in [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`]; that can take a while, so
    /// async callers should run it on a blocking thread.
    pub fn server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, ClientState::SentFirst) {
            return Err(AuthError::OutOfOrder);
        }
        self.state = ClientState::Finished;
        let server_first = utf8(msg)?;
        let mut attrs = server_first.split(',');
        let first = attrs.next().unwrap_or_default();
        if first.starts_with("m=") {
            return Err(AuthError::Malformed("mandatory extension not supported"));
        }
        let nonce = attr(Some(first), b'r', "expected r=<nonce>")?;
        if !is_printable(nonce)
            || nonce.len() <= self.nonce.len()
            || !nonce.starts_with(&self.nonce)
        {
            return Err(AuthError::Malformed(
                "server nonce does not extend the client nonce",
            ));
        }
        let salt = decode_b64(attr(attrs.next(), b's', "expected s=<salt>")?)
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::Malformed("salt"))?;
        let iterations = parse_decimal(attr(attrs.next(), b'i', "expected i=<iterations>")?)
            .ok_or(AuthError::Malformed("iteration count"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(AuthError::IterationCount {
                got: iterations,
                min: MIN_ITERATIONS,
                max: MAX_ITERATIONS,
            });
        }
        check_extensions(attrs)?;

        let salted = salted_password(&self.password, &salt, iterations);
        let client_key = hmac(&salted, &[b"Client Key"]);
        let without_proof = format!("c={},r={nonce}", B64.encode(self.gs2_header));
        let auth_message = format!(
            "{},{server_first},{without_proof}",
            self.client_first_bare()
        );
        let client_signature = hmac(&sha256(&client_key), &[auth_message.as_bytes()]);
        let proof = xor(&client_key, &client_signature);
        let server_key = hmac(&salted, &[b"Server Key"]);
        self.state = ClientState::SentFinal {
            server_signature: hmac(&server_key, &[auth_message.as_bytes()]),
        };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Takes the server-final-message (AuthenticationSASLFinal) and checks the server's
    /// signature, which proves the server knows the verifier.
    pub fn server_final(&mut self, msg: &[u8]) -> Result<(), AuthError> {
        let ClientState::SentFinal { server_signature } =
            std::mem::replace(&mut self.state, ClientState::Finished)
        else {
            return Err(AuthError::OutOfOrder);
        };
        let msg = utf8(msg)?;
        let mut attrs = msg.split(',');
        let first = attrs.next().unwrap_or_default();
        if let Some(error) = first.strip_prefix("e=") {
            let shown: String = error
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_SERVER_ERROR_LEN)
                .collect();
            return Err(AuthError::ServerError(shown));
        }
        let verifier = decode_key(attr(Some(first), b'v', "expected v=<signature>")?)
            .ok_or(AuthError::Malformed("server signature"))?;
        check_extensions(attrs)?;
        if !bool::from(verifier.ct_eq(&server_signature)) {
            return Err(AuthError::ServerSignature);
        }
        Ok(())
    }
}

impl fmt::Debug for ClientExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientExchange").finish_non_exhaustive()
    }
}

/// Splits `<flag>,<authzid>,` off a client-first-message.
fn split_gs2_header(msg: &str) -> Result<(&str, &str), AuthError> {
    let (flag, rest) = msg
        .split_once(',')
        .ok_or(AuthError::Malformed("missing GS2 header"))?;
    match flag {
        "n" | "y" => {}
        _ if flag.starts_with("p=") => return Err(AuthError::ChannelBinding),
        _ => return Err(AuthError::Malformed("channel binding flag")),
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or(AuthError::Malformed("missing GS2 header"))?;
    if !authzid.is_empty() {
        return Err(AuthError::Malformed("authorization identity not supported"));
    }
    Ok(msg.split_at(msg.len() - bare.len()))
}

/// The value of attribute `name` in `part`, or `Malformed(what)`.
fn attr<'a>(part: Option<&'a str>, name: u8, what: &'static str) -> Result<&'a str, AuthError> {
    match part {
        Some(p) if p.as_bytes().first() == Some(&name) && p.as_bytes().get(1) == Some(&b'=') => {
            Ok(&p[2..])
        }
        _ => Err(AuthError::Malformed(what)),
    }
}

/// Optional extensions after the known attributes are ignored, but must still look like
/// `<letter>=<value>`.
fn check_extensions<'a>(rest: impl Iterator<Item = &'a str>) -> Result<(), AuthError> {
    for part in rest {
        match part.as_bytes() {
            [name, b'=', ..] if name.is_ascii_alphabetic() => {}
            _ => return Err(AuthError::Malformed("unexpected attribute")),
        }
    }
    Ok(())
}

fn utf8(msg: &[u8]) -> Result<&str, AuthError> {
    std::str::from_utf8(msg).map_err(|_| AuthError::Malformed("not UTF-8"))
}

/// RFC 5802 `printable`: visible ASCII except the comma.
fn is_printable(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Plain decimal digits only: no sign, no whitespace, no overflow.
fn parse_decimal(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    B64.decode(s).ok()
}

fn decode_key(s: &str) -> Option<Key> {
    decode_b64(s)?.try_into().ok()
}

fn random_nonce() -> String {
    let mut bytes = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut bytes);
    B64.encode(bytes)
}

fn salted_password(password: &str, salt: &[u8], iterations: u32) -> Key {
    pbkdf2::pbkdf2_hmac_array::<Sha256, KEY_LEN>(password.as_bytes(), salt, iterations)
}

fn hmac(key: &Key, parts: &[&[u8]]) -> Key {
    // HMAC zero-pads keys shorter than its 64-byte block, so padding here yields the same MAC
    // and lets us use the infallible fixed-size constructor.
    let mut block = [0u8; 64];
    block[..KEY_LEN].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as Mac>::new(&block.into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

fn xor(a: &Key, b: &Key) -> Key {
    std::array::from_fn(|i| a[i] ^ b[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 section 3: user "user", password "pencil".
    const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                    p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    // Read from pg_authid of a PostgreSQL 15 server after `CREATE ROLE x PASSWORD 'secret'`.
    const PG_VERIFIER_SECRET: &str = "SCRAM-SHA-256$4096:SSK3xaCVndf270OLWFm/xA==$\
        ot60BiKpzIEzlFvD87m1eMsXeCA+JZlClAj9vUH2ahE=:Sr99Cst1z91mURpCfmoSgT8BnZP+5HqpMFiR/jDnzPU=";

    fn rfc_verifier() -> Verifier {
        Verifier::from_password("pencil", B64.decode(RFC_SALT).unwrap(), 4096)
    }

    /// Runs a whole exchange; the error of the first failing step.
    fn login(verifier: Verifier, password: &str) -> Result<(), AuthError> {
        let mut server = ServerExchange::new(verifier);
        let mut client = ClientExchange::new(password);
        let server_first = server.client_first(&client.client_first())?;
        let client_final = client.server_first(&server_first)?;
        let server_final = server.client_final(&client_final)?;
        client.server_final(&server_final)
    }

    /// A server exchange that has already answered `client_first` for client nonce "abc".
    fn server_after_first() -> ServerExchange {
        let mut server = ServerExchange::with_nonce(rfc_verifier(), "XYZ".into());
        server.client_first(b"n,,n=,r=abc").unwrap();
        server
    }

    /// A client exchange with nonce "abc" that has sent its first message.
    fn client_after_first() -> ClientExchange {
        let mut client = ClientExchange::with_nonce("pencil", "", "n,,", "abc".into());
        client.client_first();
        client
    }

    #[test]
    fn rfc7677_client_side() {
        let mut client =
            ClientExchange::with_nonce("pencil", "user", "n,,", RFC_CLIENT_NONCE.into());
        assert_eq!(client.client_first(), RFC_CLIENT_FIRST.as_bytes());
        let client_final = client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(client_final).unwrap(), RFC_CLIENT_FINAL);
        client.server_final(RFC_SERVER_FINAL.as_bytes()).unwrap();
    }

    #[test]
    fn rfc7677_server_side() {
        let mut server = ServerExchange::with_nonce(rfc_verifier(), RFC_SERVER_NONCE.into());
        let server_first = server.client_first(RFC_CLIENT_FIRST.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(server_first).unwrap(), RFC_SERVER_FIRST);
        let server_final = server.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(server_final).unwrap(), RFC_SERVER_FINAL);
    }

    #[test]
    fn client_first_has_empty_user_and_fresh_nonce() {
        let a = String::from_utf8(ClientExchange::new("pw").client_first()).unwrap();
        let b = String::from_utf8(ClientExchange::new("pw").client_first()).unwrap();
        let nonce = a.strip_prefix("n,,n=,r=").unwrap();
        assert_eq!(nonce.len(), 24);
        assert!(is_printable(nonce));
        assert_ne!(a, b);
    }

    #[test]
    fn round_trip_with_generated_verifier() {
        let verifier = Verifier::generate("correct horse", DEFAULT_ITERATIONS);
        assert_eq!(verifier.iterations(), DEFAULT_ITERATIONS);
        assert_eq!(verifier.salt.len(), SALT_LEN);
        login(verifier, "correct horse").unwrap();
    }

    #[test]
    fn generated_salts_differ() {
        let a = Verifier::generate("same", DEFAULT_ITERATIONS);
        let b = Verifier::generate("same", DEFAULT_ITERATIONS);
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.stored_key, b.stored_key);
    }

    #[test]
    fn wrong_password_rejected_and_exchange_ends() {
        let mut server = ServerExchange::new(Verifier::generate("right", DEFAULT_ITERATIONS));
        let mut client = ClientExchange::new("wrong");
        let server_first = server.client_first(&client.client_first()).unwrap();
        let client_final = client.server_first(&server_first).unwrap();
        assert!(matches!(
            server.client_final(&client_final),
            Err(AuthError::WrongPassword)
        ));
        assert!(matches!(
            server.client_final(&client_final),
            Err(AuthError::OutOfOrder)
        ));
    }

    #[test]
    fn non_ascii_password_round_trips() {
        login(
            Verifier::generate("pässwörd ✓", DEFAULT_ITERATIONS),
            "pässwörd ✓",
        )
        .unwrap();
        assert!(matches!(
            login(
                Verifier::generate("pässwörd ✓", DEFAULT_ITERATIONS),
                "passwort ✓"
            ),
            Err(AuthError::WrongPassword)
        ));
    }

    #[test]
    fn postgresql_verifier_accepts_its_password() {
        let verifier = Verifier::parse(PG_VERIFIER_SECRET).unwrap();
        assert_eq!(verifier.iterations(), 4096);
        assert_eq!(verifier.to_string(), PG_VERIFIER_SECRET);
        login(verifier.clone(), "secret").unwrap();
        assert!(matches!(
            login(verifier, "Secret"),
            Err(AuthError::WrongPassword)
        ));
    }

    #[test]
    fn postgresql_verifier_matches_recomputed_keys() {
        let pg = Verifier::parse(PG_VERIFIER_SECRET).unwrap();
        let ours = Verifier::from_password("secret", pg.salt.clone(), pg.iterations);
        assert_eq!(ours, pg);
    }

    #[test]
    fn decoy_never_accepts() {
        let secret = [7u8; 32];
        for password in ["", "secret", "pencil", "alice"] {
            assert!(matches!(
                login(Verifier::decoy("alice", &secret), password),
                Err(AuthError::WrongPassword)
            ));
        }
    }

    #[test]
    fn decoy_flag_rejects_even_the_right_proof() {
        let mut verifier = Verifier::generate("known", DEFAULT_ITERATIONS);
        login(verifier.clone(), "known").unwrap();
        verifier.decoy = true;
        assert!(matches!(
            login(verifier, "known"),
            Err(AuthError::WrongPassword)
        ));
    }

    #[test]
    fn decoy_is_deterministic_and_looks_like_a_real_verifier() {
        let secret = [7u8; 32];
        let a = Verifier::decoy("alice", &secret);
        assert_eq!(a, Verifier::decoy("alice", &secret));
        assert_ne!(a, Verifier::decoy("bob", &secret));
        assert_ne!(a, Verifier::decoy("alice", &[8u8; 32]));
        let real = Verifier::generate("x", DEFAULT_ITERATIONS);
        assert_eq!(a.iterations(), real.iterations());
        assert_eq!(a.salt.len(), real.salt.len());

        // The server-first-message has the same shape for a decoy and a real user.
        let first = |v: Verifier| {
            let msg = ServerExchange::with_nonce(v, "S".into())
                .client_first(b"n,,n=,r=abc")
                .unwrap();
            String::from_utf8(msg).unwrap()
        };
        let (decoy_first, real_first) = (first(a), first(real));
        assert_eq!(decoy_first.len(), real_first.len());
        assert!(decoy_first.starts_with("r=abcS,s=") && decoy_first.ends_with(",i=4096"));
    }

    #[test]
    fn verifier_string_round_trip() {
        let v = Verifier::generate("pw", 5000);
        let s = v.to_string();
        assert!(s.starts_with("SCRAM-SHA-256$5000:"));
        assert_eq!(Verifier::parse(&s).unwrap(), v);
    }

    #[test]
    fn generate_raises_zero_iterations() {
        assert_eq!(Verifier::generate("pw", 0).iterations(), 1);
    }

    #[test]
    fn malformed_verifiers_rejected() {
        let key = B64.encode([1u8; 32]);
        let short = B64.encode([1u8; 31]);
        let cases = [
            String::new(),
            "md54a0a68b43b6cd5cf266fa02f196e2371".into(),
            format!("SCRAM-SHA-1$4096:c2FsdA==${key}:{key}"),
            format!("scram-sha-256$4096:c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${key}"),
            format!("SCRAM-SHA-256$4096${key}:{key}"),
            format!("SCRAM-SHA-256$0:c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$-1:c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$+4096:c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$99999999999:c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$4096:${key}:{key}"),
            format!("SCRAM-SHA-256$4096:c2FsdA=${key}:{key}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${short}:{key}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{short}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}$"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}\n"),
            format!(" SCRAM-SHA-256$4096:c2FsdA==${key}:{key}"),
        ];
        for case in &cases {
            assert!(
                matches!(Verifier::parse(case), Err(AuthError::InvalidVerifier(_))),
                "accepted {case:?}"
            );
        }
        assert!(Verifier::parse(&format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}")).is_ok());
    }

    #[test]
    fn server_accepts_y_flag_and_extensions() {
        let mut server = ServerExchange::new(rfc_verifier());
        let mut client = ClientExchange::with_nonce("pencil", "", "y,,", "abc".into());
        let first = client.client_first();
        assert!(first.starts_with(b"y,,n=,r=abc"));
        let server_first = server.client_first(&first).unwrap();
        let client_final = client.server_first(&server_first).unwrap();
        assert!(client_final.starts_with(b"c=eSws,"));
        let server_final = server.client_final(&client_final).unwrap();
        client.server_final(&server_final).unwrap();

        let mut server = ServerExchange::new(rfc_verifier());
        assert!(server.client_first(b"n,,n=someone,r=abc,x=ext").is_ok());
    }

    #[test]
    fn malformed_client_first_rejected() {
        let cases: &[&[u8]] = &[
            b"",
            b"n",
            b"n,",
            b"n,,",
            b"x,,n=,r=abc",
            b"N,,n=,r=abc",
            b"n,a=bob,n=,r=abc",
            b"n,,m=ext,n=,r=abc",
            b"n,,r=abc,n=",
            b"n,,n=",
            b"n,,n=,r=",
            b"n,,n=,r=a b",
            b"n,,n=,r=abc,",
            b"n,,n=,r=abc,1=x",
            b"n,,n=,r=abc,x",
            b"n,,n=,s=abc",
            b"n,,n=,r=\xff\xfe",
        ];
        for case in cases {
            let mut server = ServerExchange::new(rfc_verifier());
            assert!(
                matches!(server.client_first(case), Err(AuthError::Malformed(_))),
                "accepted {:?}",
                String::from_utf8_lossy(case)
            );
            // A failed step ends the exchange.
            assert!(matches!(
                server.client_first(b"n,,n=,r=abc"),
                Err(AuthError::OutOfOrder)
            ));
        }
    }

    #[test]
    fn channel_binding_request_rejected() {
        let mut server = ServerExchange::new(rfc_verifier());
        assert!(matches!(
            server.client_first(b"p=tls-server-end-point,,n=,r=abc"),
            Err(AuthError::ChannelBinding)
        ));
    }

    #[test]
    fn malformed_client_final_rejected() {
        let proof = B64.encode([0u8; 32]);
        let cases = [
            String::new(),
            "c=biws,r=abcXYZ".into(),
            format!("c=biws,r=abcXYZ,p={proof},x=1"),
            format!("c=eSws,r=abcXYZ,p={proof}"),
            format!("c=biwsbiws,r=abcXYZ,p={proof}"),
            format!("c=biw,r=abcXYZ,p={proof}"),
            format!("c=,r=abcXYZ,p={proof}"),
            format!("r=abcXYZ,c=biws,p={proof}"),
            format!("c=biws,r=abcXY,p={proof}"),
            format!("c=biws,r=abcXYZW,p={proof}"),
            format!("c=biws,r=abc,p={proof}"),
            format!("c=biws,p={proof}"),
            format!("c=biws,r=abcXYZ,,p={proof}"),
            "c=biws,r=abcXYZ,p=!!!!".into(),
            format!("c=biws,r=abcXYZ,p={}", B64.encode([0u8; 31])),
            format!("c=biws,r=abcXYZ,p={}", B64.encode([0u8; 33])),
            "c=biws,r=abcXYZ,p=".into(),
        ];
        for case in &cases {
            let mut server = server_after_first();
            assert!(
                matches!(
                    server.client_final(case.as_bytes()),
                    Err(AuthError::Malformed(_))
                ),
                "accepted {case:?}"
            );
        }
        // Well-formed but wrong proof.
        let mut server = server_after_first();
        assert!(matches!(
            server.client_final(format!("c=biws,r=abcXYZ,p={proof}").as_bytes()),
            Err(AuthError::WrongPassword)
        ));
    }

    #[test]
    fn server_steps_out_of_order_rejected() {
        let mut server = ServerExchange::new(rfc_verifier());
        assert!(matches!(
            server.client_final(RFC_CLIENT_FINAL.as_bytes()),
            Err(AuthError::OutOfOrder)
        ));
        let mut server = server_after_first();
        assert!(matches!(
            server.client_first(b"n,,n=,r=abc"),
            Err(AuthError::OutOfOrder)
        ));
    }

    #[test]
    fn malformed_server_first_rejected() {
        let cases = [
            "",
            "r=abcXYZ,s=c2FsdA==",
            "r=abc,s=c2FsdA==,i=4096",
            "r=abXYZ,s=c2FsdA==,i=4096",
            "r=xabcXYZ,s=c2FsdA==,i=4096",
            "r=abcX Z,s=c2FsdA==,i=4096",
            "m=x,r=abcXYZ,s=c2FsdA==,i=4096",
            "s=c2FsdA==,r=abcXYZ,i=4096",
            "r=abcXYZ,i=4096,s=c2FsdA==",
            "r=abcXYZ,s=,i=4096",
            "r=abcXYZ,s=c2FsdA=,i=4096",
            "r=abcXYZ,s=c2FsdA==,i=",
            "r=abcXYZ,s=c2FsdA==,i=+4096",
            "r=abcXYZ,s=c2FsdA==,i=-4096",
            "r=abcXYZ,s=c2FsdA==,i=4096x",
            "r=abcXYZ,s=c2FsdA==,i=99999999999",
            "r=abcXYZ,s=c2FsdA==,i=4096,",
            "r=abcXYZ,s=c2FsdA==,i=4096,7=x",
        ];
        for case in cases {
            let mut client = client_after_first();
            assert!(
                matches!(
                    client.server_first(case.as_bytes()),
                    Err(AuthError::Malformed(_))
                ),
                "accepted {case:?}"
            );
            assert!(matches!(
                client.server_first(b"r=abcXYZ,s=c2FsdA==,i=4096"),
                Err(AuthError::OutOfOrder)
            ));
        }
        let mut client = client_after_first();
        assert!(client
            .server_first(b"r=abcXYZ,s=c2FsdA==,i=4096,x=ext")
            .is_ok());
    }

    #[test]
    fn iteration_bounds_enforced_on_client() {
        for (count, ok) in [
            (0, false),
            (1, false),
            (MIN_ITERATIONS - 1, false),
            (MIN_ITERATIONS, true),
            (MAX_ITERATIONS + 1, false),
            (u32::MAX, false),
        ] {
            let mut client = client_after_first();
            let got = client.server_first(format!("r=abcXYZ,s=c2FsdA==,i={count}").as_bytes());
            if ok {
                assert!(got.is_ok(), "{count} rejected");
            } else {
                assert!(
                    matches!(got, Err(AuthError::IterationCount { got, .. }) if got == count),
                    "{count} accepted"
                );
            }
        }
    }

    #[test]
    fn server_final_checks_signature() {
        let run = |server_final: &str| {
            let mut client =
                ClientExchange::with_nonce("pencil", "user", "n,,", RFC_CLIENT_NONCE.into());
            client.client_first();
            client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
            client.server_final(server_final.as_bytes())
        };
        assert!(run(RFC_SERVER_FINAL).is_ok());
        assert!(run(&format!("{RFC_SERVER_FINAL},x=ext")).is_ok());
        assert!(matches!(
            run(&format!("v={}", B64.encode([0u8; 32]))),
            Err(AuthError::ServerSignature)
        ));
        for bad in [
            "",
            "v=",
            "v=!!!",
            "x=abc",
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ] {
            assert!(
                matches!(run(bad), Err(AuthError::Malformed(_))),
                "accepted {bad:?}"
            );
        }
        assert!(matches!(
            run("e=invalid-proof"),
            Err(AuthError::ServerError(e)) if e == "invalid-proof"
        ));
        let long = format!("e={}\n", "x".repeat(1000));
        assert!(matches!(
            run(&long),
            Err(AuthError::ServerError(e)) if e.len() == MAX_SERVER_ERROR_LEN
        ));
    }

    #[test]
    fn client_steps_out_of_order_rejected() {
        let mut client = ClientExchange::new("pw");
        assert!(matches!(
            client.server_first(RFC_SERVER_FIRST.as_bytes()),
            Err(AuthError::OutOfOrder)
        ));
        assert!(matches!(
            client.server_final(RFC_SERVER_FINAL.as_bytes()),
            Err(AuthError::OutOfOrder)
        ));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let v = Verifier::parse(PG_VERIFIER_SECRET).unwrap();
        let shown = format!(
            "{v:?} {:?} {:?}",
            ServerExchange::new(v.clone()),
            ClientExchange::new("hunter2")
        );
        assert!(!shown.contains(&B64.encode(v.stored_key)));
        assert!(!shown.contains(&B64.encode(v.server_key)));
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("iterations: 4096"));
    }
}
