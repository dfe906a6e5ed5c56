//! Approval requests, grants, and the transitions between their states.
//!
//! Transitions are methods that check the current state and the clock, change the value only
//! when the move is legal, and return the event to record. Storage and waking waiters are the
//! service's concern.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// How the gateway uses a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The statement waits on the live session until an operator decides.
    Hold,
    /// The statement is refused now; once approved, the same statement from the same agent on
    /// the same target runs when retried (a limited number of times, within a TTL).
    Retry,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Hold => "hold",
            Mode::Retry => "retry",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Approved,
    Denied,
    Expired,
    Consumed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Denied => "denied",
            State::Expired => "expired",
            State::Consumed => "consumed",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "pending" => State::Pending,
            "approved" => State::Approved,
            "denied" => State::Denied,
            "expired" => State::Expired,
            "consumed" => State::Consumed,
            _ => return None,
        })
    }

    /// States that can still change because time passes.
    pub fn is_live(self) -> bool {
        matches!(self, State::Pending | State::Approved)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub operator: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    pub operator: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// What the gateway knows about a statement that needs approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRequest {
    pub agent: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub target: String,
    pub statement: String,
    /// The analyzer's facts about the statement, shown to operators.
    #[serde(default)]
    pub facts: serde_json::Value,
    /// The policy rule that asked for approval.
    pub rule: String,
    pub mode: Mode,
    /// Distinct operators needed; 0 is treated as 1.
    #[serde(default = "one")]
    pub min_approvals: u32,
    /// Retry mode: how many times the approved statement may run (default from config).
    #[serde(default)]
    pub uses: Option<u32>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub agent: String,
    pub groups: Vec<String>,
    pub target: String,
    pub statement: String,
    /// Matches a retried statement to its approval: hash of agent, target and text.
    pub fingerprint: String,
    pub facts: serde_json::Value,
    pub rule: String,
    pub mode: Mode,
    pub min_approvals: u32,
    /// Times the statement may run once approved (always 1 in hold mode).
    pub uses: u32,
    pub uses_left: u32,
    pub created_at: DateTime<Utc>,
    /// While pending: the decision deadline. Once approved: the end of the grant.
    pub expires_at: DateTime<Utc>,
    pub state: State,
    pub approvals: Vec<Approval>,
    pub denial: Option<Denial>,
    /// When the request left `pending`/`approved` last.
    pub decided_at: Option<DateTime<Utc>>,
}

/// An exemption from named rules for one agent on one target during a window (JIT access).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub agent: String,
    pub target: String,
    pub rules: Vec<String>,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub created_by: String,
    pub reason: String,
    pub revoked: Option<Revocation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub operator: String,
    pub at: DateTime<Utc>,
}

/// One audited change. Serialized with an `event` tag so it can be embedded in audit records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ApprovalEvent {
    Requested {
        id: String,
        agent: String,
        target: String,
        rule: String,
        mode: Mode,
        fingerprint: String,
        min_approvals: u32,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// One operator's approval; `state` is `approved` once enough distinct operators agreed.
    Approved {
        id: String,
        operator: String,
        count: u32,
        needed: u32,
        state: State,
        at: DateTime<Utc>,
    },
    Denied {
        id: String,
        operator: String,
        reason: String,
        at: DateTime<Utc>,
    },
    Expired {
        id: String,
        reason: String,
        at: DateTime<Utc>,
    },
    Consumed {
        id: String,
        uses_left: u32,
        at: DateTime<Utc>,
    },
    GrantCreated {
        id: String,
        agent: String,
        target: String,
        rules: Vec<String>,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        created_by: String,
        reason: String,
    },
    GrantRevoked {
        id: String,
        operator: String,
        at: DateTime<Utc>,
    },
}

impl ApprovalEvent {
    /// The request or grant the event is about.
    pub fn id(&self) -> &str {
        match self {
            ApprovalEvent::Requested { id, .. }
            | ApprovalEvent::Approved { id, .. }
            | ApprovalEvent::Denied { id, .. }
            | ApprovalEvent::Expired { id, .. }
            | ApprovalEvent::Consumed { id, .. }
            | ApprovalEvent::GrantCreated { id, .. }
            | ApprovalEvent::GrantRevoked { id, .. } => id,
        }
    }
}

/// `prefix` followed by 10 lowercase base32 characters (50 random bits).
pub fn new_id(prefix: &str) -> String {
    let bytes: [u8; 7] = rand::random();
    let mut s = data_encoding::BASE32_NOPAD
        .encode(&bytes)
        .to_ascii_lowercase();
    s.truncate(10);
    format!("{prefix}{s}")
}

/// Hex SHA-256 over agent, target and statement text, NUL-separated so fields can't run together.
pub fn fingerprint(agent: &str, target: &str, statement: &str) -> String {
    let mut h = Sha256::new();
    h.update(agent.as_bytes());
    h.update([0]);
    h.update(target.as_bytes());
    h.update([0]);
    h.update(statement.as_bytes());
    hex::encode(h.finalize())
}

impl Request {
    /// A fresh pending request; `ttl` is the time allowed for a decision.
    pub fn new(
        new: NewRequest,
        now: DateTime<Utc>,
        ttl: Duration,
        default_uses: u32,
    ) -> Result<(Request, ApprovalEvent)> {
        if new.agent.is_empty() || new.target.is_empty() || new.rule.is_empty() {
            return Err(Error::Invalid("agent, target and rule must be set".into()));
        }
        let uses = match new.mode {
            Mode::Hold => 1,
            Mode::Retry => new.uses.unwrap_or(default_uses).max(1),
        };
        let req = Request {
            id: new_id("apr_"),
            fingerprint: fingerprint(&new.agent, &new.target, &new.statement),
            agent: new.agent,
            groups: new.groups,
            target: new.target,
            statement: new.statement,
            facts: new.facts,
            rule: new.rule,
            mode: new.mode,
            min_approvals: new.min_approvals.max(1),
            uses,
            uses_left: uses,
            created_at: now,
            expires_at: now + ttl,
            state: State::Pending,
            approvals: Vec::new(),
            denial: None,
            decided_at: None,
        };
        let event = ApprovalEvent::Requested {
            id: req.id.clone(),
            agent: req.agent.clone(),
            target: req.target.clone(),
            rule: req.rule.clone(),
            mode: req.mode,
            fingerprint: req.fingerprint.clone(),
            min_approvals: req.min_approvals,
            expires_at: req.expires_at,
            at: now,
        };
        Ok((req, event))
    }

    /// True once the deadline of a live state has passed.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.state.is_live() && now >= self.expires_at
    }

    /// The state as of `now`, counting a passed deadline as expiry even before it is recorded.
    pub fn effective_state(&self, now: DateTime<Utc>) -> State {
        if self.is_due(now) {
            State::Expired
        } else {
            self.state
        }
    }

    fn refuse(&self, now: DateTime<Utc>, action: &'static str) -> Error {
        Error::IllegalTransition {
            id: self.id.clone(),
            state: self.effective_state(now),
            action,
        }
    }

    fn check_operator(&self, operator: &str) -> Result<()> {
        if operator.is_empty() {
            return Err(Error::Invalid("operator name is empty".into()));
        }
        if operator == self.agent {
            return Err(Error::SelfApproval(operator.to_owned()));
        }
        Ok(())
    }

    /// Records one operator's approval; the request is approved once `min_approvals` distinct
    /// operators agreed, and from then on lives for `grant_ttl`.
    pub fn approve(
        &mut self,
        operator: &str,
        now: DateTime<Utc>,
        grant_ttl: Duration,
    ) -> Result<ApprovalEvent> {
        if self.state != State::Pending || self.is_due(now) {
            return Err(self.refuse(now, "approve"));
        }
        self.check_operator(operator)?;
        if self.approvals.iter().any(|a| a.operator == operator) {
            return Err(Error::AlreadyApproved {
                id: self.id.clone(),
                operator: operator.to_owned(),
            });
        }
        self.approvals.push(Approval {
            operator: operator.to_owned(),
            at: now,
        });
        let count = u32::try_from(self.approvals.len()).unwrap_or(u32::MAX);
        if count >= self.min_approvals {
            self.state = State::Approved;
            self.decided_at = Some(now);
            self.expires_at = now + grant_ttl;
        }
        Ok(ApprovalEvent::Approved {
            id: self.id.clone(),
            operator: operator.to_owned(),
            count,
            needed: self.min_approvals,
            state: self.state,
            at: now,
        })
    }

    /// Refuses the request. Also allowed on an approved retry-mode request with uses left, which
    /// withdraws the remaining uses; a held statement that was approved is already running.
    pub fn deny(
        &mut self,
        operator: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<ApprovalEvent> {
        let open = match self.state {
            State::Pending => true,
            State::Approved => self.mode == Mode::Retry,
            _ => false,
        };
        if !open || self.is_due(now) {
            return Err(self.refuse(now, "deny"));
        }
        self.check_operator(operator)?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Error::ReasonRequired);
        }
        self.state = State::Denied;
        self.decided_at = Some(now);
        self.denial = Some(Denial {
            operator: operator.to_owned(),
            reason: reason.to_owned(),
            at: now,
        });
        Ok(ApprovalEvent::Denied {
            id: self.id.clone(),
            operator: operator.to_owned(),
            reason: reason.to_owned(),
            at: now,
        })
    }

    /// Uses one run of an approved request; the last use moves it to `consumed`.
    pub fn consume(&mut self, now: DateTime<Utc>) -> Result<ApprovalEvent> {
        if self.state != State::Approved || self.is_due(now) || self.uses_left == 0 {
            return Err(self.refuse(now, "consume"));
        }
        self.uses_left -= 1;
        if self.uses_left == 0 {
            self.state = State::Consumed;
            self.decided_at = Some(now);
        }
        Ok(ApprovalEvent::Consumed {
            id: self.id.clone(),
            uses_left: self.uses_left,
            at: now,
        })
    }

    /// Ends a live request: its deadline passed, or the gateway gave up on it (client gone,
    /// wait timed out).
    pub fn expire(&mut self, reason: &str, now: DateTime<Utc>) -> Result<ApprovalEvent> {
        if !self.state.is_live() {
            return Err(self.refuse(now, "expire"));
        }
        self.state = State::Expired;
        self.decided_at = Some(now);
        Ok(ApprovalEvent::Expired {
            id: self.id.clone(),
            reason: reason.to_owned(),
            at: now,
        })
    }
}

/// What an operator asks for when granting an exemption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewGrant {
    pub agent: String,
    pub target: String,
    pub rules: Vec<String>,
    pub minutes: u32,
    pub reason: String,
}

impl Grant {
    pub fn new(
        new: NewGrant,
        operator: &str,
        now: DateTime<Utc>,
        max_minutes: u32,
    ) -> Result<(Grant, ApprovalEvent)> {
        if operator == new.agent {
            return Err(Error::SelfApproval(operator.to_owned()));
        }
        if new.agent.is_empty() || new.target.is_empty() {
            return Err(Error::Invalid("agent and target must be set".into()));
        }
        if new.rules.is_empty() || new.rules.iter().any(|r| r.trim().is_empty()) {
            return Err(Error::Invalid("name one or more rules".into()));
        }
        if new.minutes == 0 || new.minutes > max_minutes {
            return Err(Error::Invalid(format!(
                "minutes must be between 1 and {max_minutes}"
            )));
        }
        let reason = new.reason.trim();
        if reason.is_empty() {
            return Err(Error::ReasonRequired);
        }
        let grant = Grant {
            id: new_id("grt_"),
            agent: new.agent,
            target: new.target,
            rules: new.rules,
            from: now,
            until: now + Duration::minutes(i64::from(new.minutes)),
            created_by: operator.to_owned(),
            reason: reason.to_owned(),
            revoked: None,
        };
        let event = ApprovalEvent::GrantCreated {
            id: grant.id.clone(),
            agent: grant.agent.clone(),
            target: grant.target.clone(),
            rules: grant.rules.clone(),
            from: grant.from,
            until: grant.until,
            created_by: grant.created_by.clone(),
            reason: grant.reason.clone(),
        };
        Ok((grant, event))
    }

    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked.is_none() && self.from <= now && now < self.until
    }

    pub fn applies_to(&self, agent: &str, target: &str, now: DateTime<Utc>) -> bool {
        self.agent == agent && self.target == target && self.is_active(now)
    }

    pub fn revoke(&mut self, operator: &str, now: DateTime<Utc>) -> Result<ApprovalEvent> {
        if self.revoked.is_some() || now >= self.until {
            return Err(Error::Invalid(format!(
                "grant {} is no longer active",
                self.id
            )));
        }
        self.revoked = Some(Revocation {
            operator: operator.to_owned(),
            at: now,
        });
        Ok(ApprovalEvent::GrantRevoked {
            id: self.id.clone(),
            operator: operator.to_owned(),
            at: now,
        })
    }
}
