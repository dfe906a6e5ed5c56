//! The service on the SQLite store, with a manual clock.

extern crate drawbridge_approvals as approvals;

mod common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use approvals::{ApprovalEvent, Clock, Error, Filter, Mode, NewGrant, Outcome, State};
use chrono::Duration;

#[tokio::test]
async fn min_approvals_needs_two_distinct_operators_and_never_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let clock = common::clock();
    let (svc, events) = common::sqlite_service(dir.path(), &clock);
    let mut new = common::new_request(Mode::Hold, "TRUNCATE users");
    new.min_approvals = 2;
    let r = svc.request(new).await.unwrap();
    assert_eq!(r.state, State::Pending);
    assert!(matches!(
        svc.approve(&r.id, "bot").await,
        Err(Error::SelfApproval(_))
    ));
    let after_one = svc.approve(&r.id, "alice").await.unwrap();
    assert_eq!(after_one.state, State::Pending);
    assert!(matches!(
        svc.approve(&r.id, "alice").await,
        Err(Error::AlreadyApproved { .. })
    ));
    let after_two = svc.approve(&r.id, "carol").await.unwrap();
    assert_eq!(after_two.state, State::Approved);
    assert_eq!(svc.get(&r.id).await.unwrap().approvals.len(), 2);
    let kinds: Vec<String> = events
        .lock()
        .iter()
        .map(|e| {
            serde_json::to_value(e).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, ["requested", "approved", "approved"]);
}

#[tokio::test]
async fn denial_needs_a_reason_and_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let clock = common::clock();
    let (svc, _) = common::sqlite_service(dir.path(), &clock);
    let r = svc
        .request(common::new_request(Mode::Hold, "DROP TABLE users"))
        .await
        .unwrap();
    assert!(matches!(
        svc.deny(&r.id, "alice", "").await,
        Err(Error::ReasonRequired)
    ));
    assert_eq!(svc.get(&r.id).await.unwrap().state, State::Pending);
    let d = svc
        .deny(&r.id, "alice", "not during business hours")
        .await
        .unwrap();
    assert_eq!(d.state, State::Denied);
    assert_eq!(
        d.denial.as_ref().unwrap().reason,
        "not during business hours"
    );
    assert!(matches!(
        svc.approve(&r.id, "carol").await,
        Err(Error::IllegalTransition {
            state: State::Denied,
            ..
        })
    ));
    assert_eq!(
        svc.wait(&r.id, StdDuration::from_secs(1)).await.unwrap(),
        Outcome::Denied {
            reason: "not during business hours".into(),
            by: "alice".into()
        }
    );
}

#[tokio::test]
async fn pending_requests_expire_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = common::clock();
    let (svc, events) = common::sqlite_service(dir.path(), &clock);
    let hold = svc
        .request(common::new_request(Mode::Hold, "DELETE FROM a"))
        .await
        .unwrap();
    let retry = svc
        .request(common::new_request(Mode::Retry, "DELETE FROM b"))
        .await
        .unwrap();
    assert_eq!(hold.expires_at - hold.created_at, Duration::seconds(300));
    assert_eq!(retry.expires_at - retry.created_at, Duration::seconds(900));

    clock.advance(Duration::seconds(300));
    assert!(matches!(
        svc.approve(&hold.id, "alice").await,
        Err(Error::IllegalTransition {
            state: State::Expired,
            ..
        })
    ));
    assert_eq!(
        svc.sweep().await.unwrap(),
        1,
        "only the hold request is due"
    );
    assert_eq!(svc.get(&hold.id).await.unwrap().state, State::Expired);
    assert_eq!(svc.get(&retry.id).await.unwrap().state, State::Pending);
    assert_eq!(
        svc.wait(&hold.id, StdDuration::from_secs(1)).await.unwrap(),
        Outcome::Expired
    );

    clock.advance(Duration::seconds(600));
    let pending = svc
        .list(Filter {
            state: Some(State::Pending),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        pending.is_empty(),
        "list records expiries first: {pending:?}"
    );
    let expired = events
        .lock()
        .iter()
        .filter(|e| matches!(e, ApprovalEvent::Expired { .. }))
        .count();
    assert_eq!(expired, 2);
}

#[tokio::test]
async fn retry_grant_is_consumed_exactly_as_often_as_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = common::clock();
    let (svc, _) = common::sqlite_service(dir.path(), &clock);
    let text = "UPDATE accounts SET frozen = true";
    assert!(
        svc.try_consume("bot", "prod", text)
            .await
            .unwrap()
            .is_none(),
        "nothing approved yet"
    );

    let r = svc
        .request(common::new_request(Mode::Retry, text))
        .await
        .unwrap();
    let again = svc
        .request(common::new_request(Mode::Retry, text))
        .await
        .unwrap();
    assert_eq!(again.id, r.id, "a retry while pending reuses the request");
    assert!(
        svc.try_consume("bot", "prod", text)
            .await
            .unwrap()
            .is_none(),
        "pending is not approved"
    );
    svc.approve(&r.id, "alice").await.unwrap();

    assert!(
        svc.try_consume("bot", "staging", text)
            .await
            .unwrap()
            .is_none(),
        "other target"
    );
    assert!(
        svc.try_consume("other", "prod", text)
            .await
            .unwrap()
            .is_none(),
        "other agent"
    );
    assert!(svc
        .try_consume("bot", "prod", "UPDATE accounts SET frozen = false")
        .await
        .unwrap()
        .is_none());
    let used = svc.try_consume("bot", "prod", text).await.unwrap().unwrap();
    assert_eq!(
        (used.id.as_str(), used.state, used.uses_left),
        (r.id.as_str(), State::Consumed, 0)
    );
    assert!(
        svc.try_consume("bot", "prod", text)
            .await
            .unwrap()
            .is_none(),
        "one use only"
    );

    // Two uses, raced by many tasks: exactly two succeed.
    let text2 = "DELETE FROM sessions";
    let mut new = common::new_request(Mode::Retry, text2);
    new.uses = Some(2);
    let r2 = svc.request(new).await.unwrap();
    svc.approve(&r2.id, "alice").await.unwrap();
    let svc = Arc::new(svc);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                svc.try_consume("bot", "prod", text2)
                    .await
                    .unwrap()
                    .is_some()
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 2);
}

#[tokio::test]
async fn retry_grant_lapses_after_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let clock = common::clock();
    let (svc, _) = common::sqlite_service(dir.path(), &clock);
    let text = "DELETE FROM carts";
    let r = svc
        .request(common::new_request(Mode::Retry, text))
        .await
        .unwrap();
    clock.advance(Duration::minutes(10));
    svc.approve(&r.id, "alice").await.unwrap();
    clock.advance(Duration::minutes(15));
    assert!(svc
        .try_consume("bot", "prod", text)
        .await
        .unwrap()
        .is_none());
    assert_eq!(svc.get(&r.id).await.unwrap().state, State::Expired);
}

#[tokio::test]
async fn hold_wait_wakes_on_approval_from_another_task() {
    let dir = tempfile::tempdir().unwrap();
    let clock = common::clock();
    let (svc, _) = common::sqlite_service(dir.path(), &clock);
    // A long poll interval shows the wake-up comes from the notification, not the poll.
    let svc = Arc::new(svc.with_poll_interval(StdDuration::from_secs(30)));
    let r = svc
        .request(common::new_request(
            Mode::Hold,
            "ALTER TABLE users DROP COLUMN email",
        ))
        .await
        .unwrap();
    let approver = {
        let (svc, id) = (svc.clone(), r.id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(StdDuration::from_millis(200)).await;
            svc.approve(&id, "alice").await.unwrap();
        })
    };
    let started = std::time::Instant::now();
    let outcome = svc.wait(&r.id, StdDuration::from_secs(20)).await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Approved {
            by: vec!["alice".into()]
        }
    );
    assert!(
        started.elapsed() < StdDuration::from_secs(5),
        "woke late: {:?}",
        started.elapsed()
    );
    approver.await.unwrap();
    let done = svc.consume_held(&r.id).await.unwrap();
    assert_eq!(done.state, State::Consumed);
    assert!(svc.consume_held(&r.id).await.is_err());
}

#[tokio::test]
async fn hold_wait_timeout_expires_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let clock = common::clock();
    let (svc, _) = common::sqlite_service(dir.path(), &clock);
    let r = svc
        .request(common::new_request(Mode::Hold, "DROP SCHEMA x"))
        .await
        .unwrap();
    assert_eq!(
        svc.wait(&r.id, StdDuration::from_millis(300))
            .await
            .unwrap(),
        Outcome::Expired
    );
    assert_eq!(svc.get(&r.id).await.unwrap().state, State::Expired);
    assert!(svc.approve(&r.id, "alice").await.is_err());
}

#[tokio::test]
async fn pending_requests_and_grants_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = common::clock();
    let (id, grant_id) = {
        let (svc, _) = common::sqlite_service(dir.path(), &clock);
        let r = svc
            .request(common::new_request(Mode::Retry, "DELETE FROM logs"))
            .await
            .unwrap();
        let g = svc
            .grant(
                NewGrant {
                    agent: "bot".into(),
                    target: "staging".into(),
                    rules: vec!["no-ddl".into()],
                    minutes: 30,
                    reason: "migration".into(),
                },
                "alice",
            )
            .await
            .unwrap();
        (r.id, g.id)
    };
    let (svc, _) = common::sqlite_service(dir.path(), &clock);
    let r = svc.get(&id).await.unwrap();
    assert_eq!(r.state, State::Pending);
    assert_eq!(r.facts["tables"][0], "users");
    assert_eq!(
        svc.active_exemptions("bot", "staging", clock.now()),
        ["no-ddl"]
    );
    assert_eq!(svc.grants(false).await.unwrap()[0].id, grant_id);
    svc.approve(&id, "alice").await.unwrap();
    assert!(svc
        .try_consume("bot", "prod", "DELETE FROM logs")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn grants_open_and_close_with_their_window() {
    let dir = tempfile::tempdir().unwrap();
    let clock = common::clock();
    let (svc, events) = common::sqlite_service(dir.path(), &clock);
    let ddl = |minutes, reason: &str| NewGrant {
        agent: "bot".into(),
        target: "staging".into(),
        rules: vec!["no-ddl".into(), "no-truncate".into()],
        minutes,
        reason: reason.into(),
    };
    assert!(svc
        .active_exemptions("bot", "staging", clock.now())
        .is_empty());
    assert!(matches!(
        svc.grant(ddl(30, "x"), "bot").await,
        Err(Error::SelfApproval(_))
    ));
    assert!(matches!(
        svc.grant(ddl(30, " "), "alice").await,
        Err(Error::ReasonRequired)
    ));
    assert!(matches!(
        svc.grant(ddl(0, "x"), "alice").await,
        Err(Error::Invalid(_))
    ));
    let g = svc
        .grant(ddl(30, "schema migration"), "alice")
        .await
        .unwrap();
    assert_eq!(g.until - g.from, Duration::minutes(30));

    let now = clock.now();
    assert_eq!(
        svc.active_exemptions("bot", "staging", now),
        ["no-ddl", "no-truncate"]
    );
    assert!(svc.active_exemptions("bot", "prod", now).is_empty());
    assert!(svc.active_exemptions("other", "staging", now).is_empty());
    assert!(
        svc.active_exemptions("bot", "staging", now - Duration::seconds(1))
            .is_empty(),
        "not yet open"
    );
    assert_eq!(
        svc.active_exemptions("bot", "staging", now + Duration::minutes(29))
            .len(),
        2
    );
    assert!(
        svc.active_exemptions("bot", "staging", now + Duration::minutes(30))
            .is_empty(),
        "closed"
    );

    clock.advance(Duration::minutes(31));
    assert!(svc.grants(false).await.unwrap().is_empty());
    assert_eq!(svc.grants(true).await.unwrap().len(), 1);

    let g2 = svc.grant(ddl(10, "hotfix"), "carol").await.unwrap();
    assert_eq!(
        svc.active_exemptions("bot", "staging", clock.now()).len(),
        2
    );
    svc.revoke_grant(&g2.id, "alice").await.unwrap();
    assert!(svc
        .active_exemptions("bot", "staging", clock.now())
        .is_empty());
    assert!(
        svc.revoke_grant(&g2.id, "alice").await.is_err(),
        "already revoked"
    );
    let audited: Vec<bool> = events
        .lock()
        .iter()
        .map(|e| {
            matches!(
                e,
                ApprovalEvent::GrantCreated { .. } | ApprovalEvent::GrantRevoked { .. }
            )
        })
        .collect();
    assert_eq!(audited, [true, true, true]);
}
