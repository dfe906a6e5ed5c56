//! PostgreSQL's MD5 password response (AuthenticationMD5Password), for upstreams still set to
//! `md5`. Offered only toward the upstream; agents always authenticate with SCRAM.

use md5::{Digest, Md5};

/// `"md5" + md5hex(md5hex(password + user) + salt)`, the PasswordMessage body that answers
/// AuthenticationMD5Password with the given 4-byte salt.
pub fn password_response(user: &str, password: &str, salt: [u8; 4]) -> String {
    let inner = hex(&Md5::new()
        .chain_update(password.as_bytes())
        .chain_update(user.as_bytes())
        .finalize());
    let outer = Md5::new()
        .chain_update(inner.as_bytes())
        .chain_update(salt)
        .finalize();
    format!("md5{}", hex(&outer))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Read from pg_authid of a PostgreSQL 15 server after `SET password_encryption = 'md5';
    // CREATE ROLE alice PASSWORD 'secret'`: the stored form is "md5" + md5hex(password + user).
    const PG_STORED_ALICE: &str = "md54a0a68b43b6cd5cf266fa02f196e2371";

    #[test]
    fn inner_hash_matches_postgresql_stored_password() {
        let inner = hex(&Md5::new()
            .chain_update(b"secret")
            .chain_update(b"alice")
            .finalize());
        assert_eq!(format!("md5{inner}"), PG_STORED_ALICE);
    }

    #[test]
    fn response_matches_independent_computation() {
        // Expected value from an independent MD5 implementation:
        // md5hex(b"4a0a68b43b6cd5cf266fa02f196e2371" + bytes([0x01, 0x02, 0x03, 0x04])).
        let got = password_response("alice", "secret", [1, 2, 3, 4]);
        assert_eq!(got, EXPECTED_ALICE_1234);
        assert_eq!(got.len(), 35);
    }

    #[test]
    fn salt_user_and_password_all_matter() {
        let base = password_response("alice", "secret", [1, 2, 3, 4]);
        assert_ne!(base, password_response("alice", "secret", [1, 2, 3, 5]));
        assert_ne!(base, password_response("alicf", "secret", [1, 2, 3, 4]));
        assert_ne!(base, password_response("alice", "secreu", [1, 2, 3, 4]));
    }

    const EXPECTED_ALICE_1234: &str = "md598a0412b9c31436fc53776e863350083";
}
