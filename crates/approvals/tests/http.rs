//! The operators' HTTP API on a real server.

extern crate drawbridge_approvals as approvals;

mod common;

use std::sync::Arc;

use approvals::client::Client;
use approvals::{generate_token, Mode, NewGrant, OperatorTokens, State};
use serde_json::Value;

struct Api {
    base: String,
    svc: Arc<approvals::Approvals>,
    alice: String,
    carol: String,
    bot: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let clock = common::clock();
    let (svc, _) = common::sqlite_service(dir.path(), &clock);
    let svc = Arc::new(svc);
    let (alice, alice_hash) = generate_token();
    let (carol, carol_hash) = generate_token();
    // An operator account that shares its name with the agent: may log in, may not decide.
    let (bot, bot_hash) = generate_token();
    let tokens = OperatorTokens::from_pairs([
        ("alice", alice_hash.as_str()),
        ("carol", carol_hash.as_str()),
        ("bot", bot_hash.as_str()),
    ])
    .unwrap();
    let app = approvals::router(svc.clone(), tokens);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Api {
        base,
        svc,
        alice,
        carol,
        bot,
        _dir: dir,
    }
}

async fn status(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn tokens_are_required_and_must_be_operator_tokens() {
    let api = start().await;
    let r = api
        .svc
        .request(common::new_request(Mode::Hold, "DROP TABLE users"))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/api/approvals/{}/approve", api.base, r.id);

    let (code, _) = status(http.post(&url)).await;
    assert_eq!(code, 401, "no token");
    let (code, _) = status(http.post(&url).bearer_auth("dbop_not-a-real-token")).await;
    assert_eq!(code, 401, "unknown token");
    // What an agent holds: a password-like secret, in the agent-secret format.
    let (code, _) = status(
        http.post(&url)
            .bearer_auth("Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2Rl"),
    )
    .await;
    assert_eq!(code, 401, "agent secret");
    let (code, _) = status(
        http.post(&url)
            .header("authorization", format!("Basic {}", api.alice)),
    )
    .await;
    assert_eq!(code, 401, "wrong scheme");
    assert_eq!(
        api.svc.get(&r.id).await.unwrap().state,
        State::Pending,
        "nothing changed"
    );

    let (code, body) = status(http.post(&url).bearer_auth(&api.bot)).await;
    assert_eq!(code, 403, "self-approval: {body}");
    let (code, _) = status(
        http.post(format!("{}/api/approvals/{}/deny", api.base, r.id))
            .bearer_auth(&api.bot)
            .json(&serde_json::json!({"reason": "x"})),
    )
    .await;
    assert_eq!(code, 403, "self-denial");

    let (code, body) = status(http.post(&url).bearer_auth(&api.alice)).await;
    assert_eq!(code, 200);
    assert_eq!(body["state"], "approved");
    assert_eq!(body["approvals"][0]["operator"], "alice");
    let (code, _) = status(http.post(&url).bearer_auth(&api.carol)).await;
    assert_eq!(code, 409, "already decided");
    let (code, _) = status(
        http.get(format!("{}/api/approvals/apr_missing", api.base))
            .bearer_auth(&api.alice),
    )
    .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn operators_list_show_decide_and_grant_through_the_client() {
    let api = start().await;
    let a = api
        .svc
        .request(common::new_request(Mode::Hold, "DELETE FROM a"))
        .await
        .unwrap();
    let b = api
        .svc
        .request(common::new_request(Mode::Retry, "DELETE FROM b"))
        .await
        .unwrap();
    let alice = Client::new(&api.base, &api.alice).unwrap();

    let pending = alice.list(Some("pending")).await.unwrap();
    let mut ids: Vec<_> = pending.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(alice.get(&a.id).await.unwrap().statement, "DELETE FROM a");

    let err = alice.deny(&a.id, "").await.unwrap_err().to_string();
    assert!(err.contains("400"), "{err}");
    assert_eq!(
        alice.deny(&a.id, "wrong table").await.unwrap().state,
        State::Denied
    );
    assert_eq!(alice.approve(&b.id).await.unwrap().state, State::Approved);
    assert!(alice.list(Some("pending")).await.unwrap().is_empty());
    assert_eq!(alice.list(None).await.unwrap().len(), 2);
    assert!(alice
        .list(Some("bogus"))
        .await
        .unwrap_err()
        .to_string()
        .contains("400"));

    let g = alice
        .grant(&NewGrant {
            agent: "bot".into(),
            target: "staging".into(),
            rules: vec!["no-ddl".into()],
            minutes: 30,
            reason: "migration".into(),
        })
        .await
        .unwrap();
    assert_eq!(g.created_by, "alice");
    assert_eq!(
        api.svc.active_exemptions("bot", "staging", api.svc.now()),
        ["no-ddl"]
    );
    assert_eq!(alice.grants(false).await.unwrap().len(), 1);
    let bot = Client::new(&api.base, &api.bot).unwrap();
    let err = bot
        .grant(&NewGrant {
            agent: "bot".into(),
            target: "prod".into(),
            rules: vec!["no-ddl".into()],
            minutes: 5,
            reason: "me".into(),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("403"), "{err}");
    let revoked = Client::new(&api.base, &api.carol)
        .unwrap()
        .revoke_grant(&g.id)
        .await
        .unwrap();
    assert_eq!(revoked.revoked.unwrap().operator, "carol");
    assert!(alice.grants(false).await.unwrap().is_empty());
    assert!(api
        .svc
        .active_exemptions("bot", "staging", api.svc.now())
        .is_empty());
}
