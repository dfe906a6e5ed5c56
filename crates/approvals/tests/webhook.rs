//! Webhook notifications, received by a local HTTP server.

extern crate drawbridge_approvals as approvals;

mod common;

use std::time::Duration;

use approvals::{Mode, Notifier, Webhook, WebhookFormat};
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use tokio::sync::mpsc;

#[tokio::test]
async fn new_requests_are_posted_in_both_formats_without_blocking() {
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Value)>();
    let app = Router::new()
        .route(
            "/hook/{kind}",
            post(
                |State(tx): State<mpsc::UnboundedSender<(String, Value)>>,
                 Path(kind): Path<String>,
                 Json(body): Json<Value>| async move {
                    let _ = tx.send((kind, body));
                },
            ),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // A receiver that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/", silent.local_addr().unwrap());

    let notifier = Notifier::new(
        vec![
            Webhook {
                url: format!("{base}/hook/json"),
                format: WebhookFormat::Json,
            },
            Webhook {
                url: format!("{base}/hook/slack"),
                format: WebhookFormat::Slack,
            },
            Webhook {
                url: silent_url,
                format: WebhookFormat::Json,
            },
        ],
        Some("https://gw.example.test/".into()),
        Duration::from_secs(2),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clock = common::clock();
    let (svc, _) = common::sqlite_service(dir.path(), &clock);
    let svc = svc.with_notifier(notifier);

    let started = std::time::Instant::now();
    let r = svc
        .request(common::new_request(
            Mode::Hold,
            "DELETE FROM users WHERE note = '<b>&'",
        ))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "request waited for webhooks"
    );

    let mut got = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let (kind, body) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        got.insert(kind, body);
    }
    let json = &got["json"];
    assert_eq!(json["type"], "approval_requested");
    assert_eq!(json["request"]["id"], r.id.as_str());
    assert_eq!(json["request"]["agent"], "bot");
    assert_eq!(json["request"]["rule"], "deletes-need-approval");
    assert_eq!(json["request"]["facts"]["kind"], "delete");
    assert_eq!(
        json["approve_command"],
        format!("drawbridge approvals approve {}", r.id)
    );
    assert_eq!(
        json["url"],
        format!("https://gw.example.test/api/approvals/{}", r.id)
    );

    let slack = &got["slack"];
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.contains(&r.id) && text.contains("bot") && text.contains("prod"),
        "{text}"
    );
    let blocks = slack["blocks"].as_array().unwrap();
    assert!(blocks.iter().all(|b| b["type"].is_string()));
    let all = serde_json::to_string(blocks).unwrap();
    assert!(all.contains("&lt;b&gt;&amp;"), "markup escaped: {all}");
    assert!(all.contains(&format!("drawbridge approvals approve {}", r.id)));
    assert!(all.contains(&format!("https://gw.example.test/api/approvals/{}", r.id)));
    drop(silent);
}
