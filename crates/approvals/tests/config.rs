//! The `[approvals]` and `[operators]` tables, and operator tokens.

extern crate drawbridge_approvals as approvals;

use approvals::{
    generate_token, hash_token, Config, OperatorTokens, Operators, StoreKind, WebhookFormat,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    approvals: Config,
    #[serde(default)]
    operators: Operators,
}

#[test]
fn defaults_and_full_table() {
    let empty: File = toml::from_str("").unwrap();
    assert_eq!(empty.approvals.hold_timeout_secs, 300);
    assert_eq!(empty.approvals.retry_ttl_secs, 900);
    assert_eq!(empty.approvals.retry_uses, 1);
    assert_eq!(empty.approvals.store, StoreKind::Sqlite);
    empty.approvals.validate().unwrap();

    let (_, hash) = generate_token();
    let file: File = toml::from_str(&format!(
        r#"
        [approvals]
        store = "postgres"
        postgres_url_env = "APPROVALS_PG_URL_UNSET_IN_TESTS"
        hold_timeout_secs = 60
        public_url = "https://gw.example.test"
        webhooks = [{{ url = "https://hooks.example.test/a", format = "slack" }}, {{ url = "http://h/b" }}]

        [operators.alice]
        token_sha256 = "{hash}"
        "#
    ))
    .unwrap();
    let c = &file.approvals;
    assert_eq!(
        (c.store, c.hold_timeout_secs, c.retry_ttl_secs),
        (StoreKind::Postgres, 60, 900)
    );
    assert_eq!(c.webhooks[0].format, WebhookFormat::Slack);
    assert_eq!(c.webhooks[1].format, WebhookFormat::Json);
    c.validate().unwrap();
    assert!(c
        .postgres_url()
        .unwrap_err()
        .to_string()
        .contains("APPROVALS_PG_URL_UNSET_IN_TESTS"));
    assert_eq!(file.operators["alice"].token_sha256, hash);
}

#[test]
fn unknown_and_invalid_settings_are_refused() {
    assert!(toml::from_str::<File>("[approvals]\nhold_timeout = 5").is_err());
    assert!(toml::from_str::<File>("[operators.a]\ntoken = \"x\"").is_err());
    let c: File = toml::from_str("[approvals]\nstore = \"postgres\"").unwrap();
    assert!(c.approvals.validate().is_err(), "postgres without a url");
    let c: File = toml::from_str("[approvals]\nwebhooks = [{ url = \"ftp://x\" }]").unwrap();
    assert!(c.approvals.validate().is_err());
}

#[test]
fn only_configured_operator_tokens_authenticate() {
    let (alice, alice_hash) = generate_token();
    let (bob, _) = generate_token();
    assert!(alice.starts_with("dbop_") && alice.len() > 40);
    assert_eq!(hash_token(&alice), alice_hash);
    let tokens = OperatorTokens::from_pairs([("alice", alice_hash.as_str())]).unwrap();
    assert_eq!(tokens.authenticate(&alice), Some("alice"));
    assert_eq!(tokens.authenticate(&bob), None);
    assert_eq!(tokens.authenticate(""), None);
    // A secret without the operator prefix is refused even if its hash were configured.
    let agent_secret = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2Rl";
    let with_agent =
        OperatorTokens::from_pairs([("mallory", hash_token(agent_secret).as_str())]).unwrap();
    assert_eq!(with_agent.authenticate(agent_secret), None);
    assert!(OperatorTokens::from_pairs([("x", "abc")]).is_err());
    assert!(
        OperatorTokens::from_pairs([("x", alice_hash.as_str()), ("y", alice_hash.as_str())])
            .is_err()
    );
}
