//! Password authentication as PostgreSQL speaks it: SCRAM-SHA-256 (both ends) and the MD5
//! challenge response (client end only). Pure logic: callers move the bytes.
//!
//! Passwords are used as raw UTF-8 bytes. PostgreSQL runs SASLprep first and falls back to the
//! raw bytes when that fails; the two agree for every ASCII password, and for most others, but a
//! non-ASCII password that SASLprep would rewrite (compatibility characters, non-NFKC forms)
//! gives a different key here.

pub mod md5;
pub mod scram;

/// Everything that can go wrong in an authentication exchange. Messages name what was wrong,
/// never a password, key or proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A SCRAM message that does not follow the grammar, in the way named.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// A stored verifier string that is not `SCRAM-SHA-256$<i>:<salt>$<StoredKey>:<ServerKey>`.
    #[error("invalid SCRAM verifier: {0}")]
    InvalidVerifier(&'static str),
    /// The client asked for channel binding (`p=`), which is not offered.
    #[error("SCRAM channel binding is not supported")]
    ChannelBinding,
    /// The server's iteration count is outside the accepted range.
    #[error("SCRAM iteration count {got} outside the accepted range {min}..={max}")]
    IterationCount { got: u32, min: u32, max: u32 },
    /// The method was called at the wrong step of the exchange, or after a failure.
    #[error("SCRAM message out of order")]
    OutOfOrder,
    /// The client's proof did not match the verifier.
    #[error("password authentication failed")]
    WrongPassword,
    /// The server's signature did not match: it does not know the password.
    #[error("SCRAM server signature does not verify")]
    ServerSignature,
    /// The server ended the exchange with `e=<value>`.
    #[error("SCRAM server reported an error: {0}")]
    ServerError(String),
}
