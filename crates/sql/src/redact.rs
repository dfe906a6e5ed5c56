//! Secrets out of statement text before it is recorded anywhere: the literal after
//! `PASSWORD`, an option named `password`, and connection strings that carry one.

use std::borrow::Cow;

use pg_query::protobuf::Token;

const PLACEHOLDER: &str = "'[redacted]'";

/// The text with secret literals replaced. Text that mentions a password but cannot be
/// scanned is withheld whole: better no text than a leaked secret.
pub fn redact_secrets(text: &str) -> Cow<'_, str> {
    if !contains_ascii_ci(text, b"pass") {
        return Cow::Borrowed(text);
    }
    let Ok(scan) = pg_query::scan(text) else {
        return Cow::Owned("[redacted: unscannable text mentioning a password]".into());
    };
    let tokens = scan.tokens;
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (i, t) in tokens.iter().enumerate() {
        if !matches!(Token::try_from(t.token), Ok(Token::Sconst | Token::Usconst)) {
            continue;
        }
        let (start, end) = (t.start as usize, t.end as usize);
        let Some(literal) = text.get(start..end) else { continue };
        let after_secret_word = i > 0 && {
            let prev = &tokens[i - 1];
            let word = text.get(prev.start as usize..prev.end as usize).unwrap_or("");
            word.eq_ignore_ascii_case("password")
                || word.eq_ignore_ascii_case("passwd")
                || word.eq_ignore_ascii_case("passfile")
        };
        if after_secret_word || contains_ascii_ci(literal, b"password=") || contains_ascii_ci(literal, b"password =") {
            out.push_str(&text[copied..start]);
            out.push_str(PLACEHOLDER);
            copied = end;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

fn contains_ascii_ci(hay: &str, needle: &[u8]) -> bool {
    hay.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_passwords_are_redacted() {
        let r = redact_secrets("CREATE ROLE app LOGIN PASSWORD 's3cr3t-pw'");
        assert!(!r.contains("s3cr3t"), "{r}");
        assert!(r.starts_with("CREATE ROLE app LOGIN PASSWORD '[redacted]'"));
        let r = redact_secrets("alter user x with encrypted password E'a\\'b'");
        assert!(!r.contains("a\\'b"), "{r}");
        let r = redact_secrets("CREATE USER MAPPING FOR x SERVER s OPTIONS (user 'u', password 'hunter2')");
        assert!(!r.contains("hunter2") && r.contains("'u'"), "{r}");
        let r = redact_secrets("SELECT dblink_connect('host=db user=u password=hunter2')");
        assert!(!r.contains("hunter2"), "{r}");
    }

    #[test]
    fn other_text_is_untouched() {
        let t = "SELECT 'password' AS word FROM users WHERE name = 'bob'";
        assert_eq!(redact_secrets(t), t);
        assert!(matches!(redact_secrets("SELECT 1"), Cow::Borrowed(_)));
    }
}
