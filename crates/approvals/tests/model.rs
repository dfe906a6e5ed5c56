//! The request state machine, without storage.

extern crate drawbridge_approvals as approvals;

mod common;

use approvals::model::{fingerprint, Request};
use approvals::{ApprovalEvent, Error, Mode, State};
use chrono::Duration;

fn pending(min: u32) -> (Request, chrono::DateTime<chrono::Utc>) {
    let now = common::clock().now_value();
    let mut new = common::new_request(Mode::Retry, "DELETE FROM users WHERE id = 1");
    new.min_approvals = min;
    new.uses = Some(2);
    let (r, ev) = Request::new(new, now, Duration::minutes(15), 1).unwrap();
    assert!(matches!(ev, ApprovalEvent::Requested { ref id, .. } if *id == r.id));
    (r, now)
}

trait NowValue {
    fn now_value(&self) -> chrono::DateTime<chrono::Utc>;
}
impl NowValue for approvals::ManualClock {
    fn now_value(&self) -> chrono::DateTime<chrono::Utc> {
        approvals::Clock::now(self)
    }
}

#[test]
fn ids_are_prefixed_and_distinct() {
    let (a, _) = pending(1);
    let (b, _) = pending(1);
    assert!(a.id.starts_with("apr_") && a.id.len() == 14, "{}", a.id);
    assert!(a.id[4..]
        .chars()
        .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)));
    assert_ne!(a.id, b.id);
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_ne!(fingerprint("a", "bc", "d"), fingerprint("ab", "c", "d"));
}

#[test]
fn approve_then_consume_until_used_up() {
    let (mut r, now) = pending(1);
    let ev = r.approve("alice", now, Duration::minutes(15)).unwrap();
    assert!(matches!(
        ev,
        ApprovalEvent::Approved {
            count: 1,
            needed: 1,
            state: State::Approved,
            ..
        }
    ));
    assert_eq!(r.state, State::Approved);
    assert_eq!(
        r.consume(now).unwrap(),
        ApprovalEvent::Consumed {
            id: r.id.clone(),
            uses_left: 1,
            at: now
        }
    );
    assert_eq!(r.state, State::Approved);
    r.consume(now).unwrap();
    assert_eq!(r.state, State::Consumed);
    assert!(matches!(
        r.consume(now),
        Err(Error::IllegalTransition {
            state: State::Consumed,
            ..
        })
    ));
    assert!(matches!(
        r.approve("bob", now, Duration::minutes(1)),
        Err(Error::IllegalTransition { .. })
    ));
}

#[test]
fn no_approval_after_denial_and_no_consumption_while_pending() {
    let (mut r, now) = pending(1);
    assert!(matches!(
        r.consume(now),
        Err(Error::IllegalTransition {
            state: State::Pending,
            ..
        })
    ));
    assert!(matches!(
        r.deny("alice", "  ", now),
        Err(Error::ReasonRequired)
    ));
    assert_eq!(r.state, State::Pending);
    let ev = r.deny("alice", " too broad ", now).unwrap();
    assert!(matches!(ev, ApprovalEvent::Denied { ref reason, .. } if reason == "too broad"));
    assert!(matches!(
        r.approve("bob", now, Duration::minutes(1)),
        Err(Error::IllegalTransition {
            state: State::Denied,
            ..
        })
    ));
    assert!(matches!(
        r.deny("bob", "again", now),
        Err(Error::IllegalTransition { .. })
    ));
    assert!(matches!(
        r.expire("late", now),
        Err(Error::IllegalTransition { .. })
    ));
}

#[test]
fn self_approval_and_duplicate_approval_are_refused() {
    let (mut r, now) = pending(2);
    assert!(matches!(
        r.approve("bot", now, Duration::minutes(1)),
        Err(Error::SelfApproval(_))
    ));
    assert!(matches!(
        r.deny("bot", "no", now),
        Err(Error::SelfApproval(_))
    ));
    r.approve("alice", now, Duration::minutes(1)).unwrap();
    assert_eq!(r.state, State::Pending, "one of two approvals");
    assert!(matches!(
        r.approve("alice", now, Duration::minutes(1)),
        Err(Error::AlreadyApproved { .. })
    ));
    let ev = r.approve("bob", now, Duration::minutes(1)).unwrap();
    assert!(matches!(
        ev,
        ApprovalEvent::Approved {
            count: 2,
            needed: 2,
            state: State::Approved,
            ..
        }
    ));
}

#[test]
fn deadline_blocks_every_decision() {
    let (mut r, now) = pending(1);
    let late = now + Duration::minutes(15);
    assert!(r.is_due(late));
    assert_eq!(r.effective_state(late), State::Expired);
    assert!(matches!(
        r.approve("alice", late, Duration::minutes(1)),
        Err(Error::IllegalTransition {
            state: State::Expired,
            ..
        })
    ));
    assert!(matches!(
        r.deny("alice", "x", late),
        Err(Error::IllegalTransition {
            state: State::Expired,
            ..
        })
    ));
    r.expire("deadline passed", late).unwrap();
    assert_eq!(r.state, State::Expired);
}

#[test]
fn approval_starts_the_grant_ttl() {
    let (mut r, now) = pending(1);
    let t = now + Duration::minutes(10);
    r.approve("alice", t, Duration::minutes(15)).unwrap();
    assert_eq!(r.expires_at, t + Duration::minutes(15));
    assert!(matches!(
        r.consume(t + Duration::minutes(15)),
        Err(Error::IllegalTransition {
            state: State::Expired,
            ..
        })
    ));
    r.consume(t + Duration::minutes(14)).unwrap();
}

#[test]
fn approved_retry_can_be_withdrawn_but_approved_hold_cannot() {
    let (mut r, now) = pending(1);
    r.approve("alice", now, Duration::minutes(1)).unwrap();
    r.deny("bob", "changed my mind", now).unwrap();
    assert_eq!(r.state, State::Denied);
    assert!(matches!(
        r.consume(now),
        Err(Error::IllegalTransition { .. })
    ));

    let now = common::clock().now_value();
    let (mut h, _) = Request::new(
        common::new_request(Mode::Hold, "DROP TABLE t"),
        now,
        Duration::minutes(5),
        1,
    )
    .unwrap();
    assert_eq!(h.uses, 1);
    h.approve("alice", now, Duration::minutes(5)).unwrap();
    assert!(matches!(
        h.deny("bob", "late", now),
        Err(Error::IllegalTransition {
            state: State::Approved,
            ..
        })
    ));
}

#[test]
fn events_serialize_with_a_tag() {
    let (mut r, now) = pending(1);
    let ev = r.approve("alice", now, Duration::minutes(1)).unwrap();
    let v = serde_json::to_value(&ev).unwrap();
    assert_eq!(v["event"], "approved");
    assert_eq!(v["operator"], "alice");
    assert_eq!(v["state"], "approved");
    let back: ApprovalEvent = serde_json::from_value(v).unwrap();
    assert_eq!(back, ev);
}
