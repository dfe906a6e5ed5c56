//! Operator bearer tokens: creation and lookup. Only SHA-256 hashes are ever configured.

use std::collections::HashMap;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::Operators;
use crate::error::{Error, Result};

/// Every operator token starts with this, so a secret of another kind (an agent's password)
/// is refused before any lookup.
pub const TOKEN_PREFIX: &str = "dbop_";

/// A new random token and its hex SHA-256, for `drawbridge operator new`.
pub fn generate_token() -> (String, String) {
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    );
    let hash = hash_token(&token);
    (token, hash)
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Maps token hashes to operator names.
#[derive(Debug, Clone, Default)]
pub struct OperatorTokens {
    by_hash: HashMap<[u8; 32], String>,
}

impl OperatorTokens {
    pub fn from_config(operators: &Operators) -> Result<Self> {
        let mut by_hash = HashMap::new();
        for (name, op) in operators {
            let raw = hex::decode(op.token_sha256.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    Error::Config(format!(
                        "operators.{name}.token_sha256 is not 64 hex digits"
                    ))
                })?;
            if let Some(other) = by_hash.insert(raw, name.clone()) {
                return Err(Error::Config(format!(
                    "operators {other} and {name} share a token"
                )));
            }
        }
        Ok(OperatorTokens { by_hash })
    }

    /// For tests and embedding: name → token hash (hex).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let operators: Operators = pairs
            .into_iter()
            .map(|(n, h)| {
                (
                    n.to_owned(),
                    crate::config::Operator {
                        token_sha256: h.to_owned(),
                    },
                )
            })
            .collect();
        Self::from_config(&operators)
    }

    /// The operator a presented token belongs to.
    pub fn authenticate(&self, token: &str) -> Option<&str> {
        if !token.starts_with(TOKEN_PREFIX) {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // The map finds the candidate; the final comparison doesn't short-circuit.
        let (stored, name) = self.by_hash.get_key_value(&digest)?;
        bool::from(stored.ct_eq(&digest)).then_some(name.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}
