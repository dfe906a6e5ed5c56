//! The shared PostgreSQL store, on a throwaway server.

extern crate drawbridge_approvals as approvals;

mod common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use approvals::model::{Grant, NewGrant, Request};
use approvals::{
    Approvals, Clock, Config, Error, Filter, Mode, Outcome, PostgresStore, State, Store,
};
use chrono::Duration;
use localpg::LocalPg;

fn store_round_trip(url: &str) {
    let clock = common::clock();
    let now = clock.now();
    let mut store = PostgresStore::connect(url).unwrap();
    let (req, _) = Request::new(
        common::new_request(Mode::Retry, "DELETE FROM t"),
        now,
        Duration::minutes(15),
        2,
    )
    .unwrap();
    store.insert_request(&req).unwrap();
    assert_eq!(store.get_request(&req.id).unwrap().unwrap(), req);
    assert!(store.get_request("apr_none").unwrap().is_none());

    // A refused change writes nothing.
    let err = store
        .update_request(&req.id, &mut |r| {
            r.approve("bot", now, Duration::minutes(15))
        })
        .unwrap_err();
    assert!(matches!(err, Error::SelfApproval(_)));
    assert_eq!(
        store.get_request(&req.id).unwrap().unwrap().approvals.len(),
        0
    );

    // Reopening (a restart) finds the pending request.
    drop(store);
    let mut store = PostgresStore::connect(url).unwrap();
    let pending = store
        .list_requests(&Filter {
            state: Some(State::Pending),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(pending, vec![req.clone()]);
    assert_eq!(
        store
            .find_by_fingerprint(&req.fingerprint, Mode::Retry, State::Pending)
            .unwrap(),
        vec![req.id.clone()]
    );
    assert!(store
        .find_by_fingerprint(&req.fingerprint, Mode::Retry, State::Approved)
        .unwrap()
        .is_empty());

    let (approved, _) = store
        .update_request(&req.id, &mut |r| {
            r.approve("alice", now, Duration::minutes(15))
        })
        .unwrap();
    assert_eq!(approved.state, State::Approved);
    assert_eq!(store.get_request(&req.id).unwrap().unwrap(), approved);
    assert_eq!(
        store
            .find_by_fingerprint(&req.fingerprint, Mode::Retry, State::Approved)
            .unwrap(),
        vec![req.id.clone()]
    );
    assert!(store.due(now).unwrap().is_empty());
    assert_eq!(
        store.due(now + Duration::minutes(15)).unwrap(),
        vec![req.id.clone()]
    );
    assert!(store
        .list_requests(&Filter {
            agent: Some("nobody".into()),
            ..Default::default()
        })
        .unwrap()
        .is_empty());

    let (grant, _) = Grant::new(
        NewGrant {
            agent: "bot".into(),
            target: "staging".into(),
            rules: vec!["no-ddl".into()],
            minutes: 30,
            reason: "migration".into(),
        },
        "alice",
        now,
        60,
    )
    .unwrap();
    store.insert_grant(&grant).unwrap();
    assert_eq!(store.get_grant(&grant.id).unwrap().unwrap(), grant);
    assert_eq!(store.list_grants(Some(now)).unwrap(), vec![grant.clone()]);
    assert!(store
        .list_grants(Some(now + Duration::minutes(30)))
        .unwrap()
        .is_empty());
    store
        .update_grant(&grant.id, &mut |g| g.revoke("carol", now))
        .unwrap();
    assert!(store.list_grants(Some(now)).unwrap().is_empty());
    assert_eq!(
        store.list_grants(None).unwrap()[0]
            .revoked
            .as_ref()
            .unwrap()
            .operator,
        "carol"
    );
}

async fn service(url: &str) -> Approvals {
    let url = url.to_owned();
    // Opening blocks: off the async workers.
    tokio::task::spawn_blocking(move || {
        let store = PostgresStore::connect(&url).unwrap();
        Approvals::from_store(Box::new(store), &Config::default()).unwrap()
    })
    .await
    .unwrap()
    .with_poll_interval(StdDuration::from_millis(100))
}

/// Two gateways on one store: a decision made through one reaches a waiter on the other, and a
/// single use is consumed once across both.
async fn two_gateways(url: &str) {
    let a = Arc::new(service(url).await);
    let b = Arc::new(service(url).await);
    let r = a
        .request(common::new_request(Mode::Hold, "DROP TABLE audit_old"))
        .await
        .unwrap();
    let waiter = {
        let (a, id) = (a.clone(), r.id.clone());
        tokio::spawn(async move { a.wait(&id, StdDuration::from_secs(20)).await.unwrap() })
    };
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    b.approve(&r.id, "alice").await.unwrap();
    let outcome = tokio::time::timeout(StdDuration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        outcome,
        Outcome::Approved {
            by: vec!["alice".into()]
        }
    );

    let text = "DELETE FROM queue";
    let q = a
        .request(common::new_request(Mode::Retry, text))
        .await
        .unwrap();
    b.approve(&q.id, "alice").await.unwrap();
    let tries: Vec<_> = (0..6)
        .map(|i| {
            let svc = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                svc.try_consume("bot", "prod", text)
                    .await
                    .unwrap()
                    .is_some()
            })
        })
        .collect();
    let mut wins = 0;
    for t in tries {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
}

#[test]
fn postgres_store() {
    let pg = LocalPg::start(Default::default()).unwrap();
    let url = pg.admin_url("postgres");
    store_round_trip(&url);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(two_gateways(&url));
}
