//! Notifications of new requests: fire-and-forget POSTs to configured URLs.

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{Config, Webhook, WebhookFormat};
use crate::error::Result;
use crate::model::Request;

/// Longest statement text put in a chat message (chat blocks have a size limit).
const CHAT_STATEMENT_MAX: usize = 2500;

pub struct Notifier {
    client: reqwest::Client,
    hooks: Vec<Webhook>,
    public_url: Option<String>,
}

impl Notifier {
    /// `None` when no webhooks are configured.
    pub fn from_config(config: &Config) -> Result<Option<Notifier>> {
        if config.webhooks.is_empty() {
            return Ok(None);
        }
        Ok(Some(Notifier::new(
            config.webhooks.clone(),
            config.public_url.clone(),
            Duration::from_secs(config.webhook_timeout_secs.max(1)),
        )?))
    }

    pub fn new(
        hooks: Vec<Webhook>,
        public_url: Option<String>,
        timeout: Duration,
    ) -> Result<Notifier> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Notifier {
            client,
            hooks,
            public_url,
        })
    }

    /// Sends the request to every hook on spawned tasks; failures are logged, never returned,
    /// so a slow or broken receiver can't delay the statement path. Needs a tokio runtime.
    pub fn notify(&self, request: &Request) {
        for hook in &self.hooks {
            let body = match hook.format {
                WebhookFormat::Json => json_payload(request, self.public_url.as_deref()),
                WebhookFormat::Slack => slack_payload(request, self.public_url.as_deref()),
            };
            let post = self.client.post(&hook.url).json(&body);
            let (url, id) = (hook.url.clone(), request.id.clone());
            tokio::spawn(async move {
                match post.send().await {
                    Ok(resp) if resp.status().is_success() => {
                        tracing::debug!(id = %id, url = %url, "approval webhook delivered");
                    }
                    Ok(resp) => {
                        tracing::warn!(id = %id, url = %url, status = %resp.status(), "approval webhook refused");
                    }
                    Err(e) => {
                        tracing::warn!(id = %id, url = %url, error = %e, "approval webhook failed")
                    }
                }
            });
        }
    }
}

pub fn approve_command(id: &str) -> String {
    format!("drawbridge approvals approve {id}")
}

fn link(public_url: Option<&str>, id: &str) -> Option<String> {
    public_url.map(|base| format!("{}/api/approvals/{id}", base.trim_end_matches('/')))
}

/// The generic payload: the request itself plus how to act on it.
pub fn json_payload(request: &Request, public_url: Option<&str>) -> Value {
    json!({
        "type": "approval_requested",
        "request": request,
        "approve_command": approve_command(&request.id),
        "deny_command": format!("drawbridge approvals deny {} --reason '…'", request.id),
        "url": link(public_url, &request.id),
    })
}

/// Chat markup treats these three characters specially.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// An incoming-webhook chat message: `text` for notifications, `blocks` for the layout.
pub fn slack_payload(request: &Request, public_url: Option<&str>) -> Value {
    let headline = format!(
        "Approval needed: agent {} on {} (rule {}) — {}",
        request.agent, request.target, request.rule, request.id
    );
    // A fence inside the statement would end the code block early.
    let statement = escape(&clip(&request.statement, CHAT_STATEMENT_MAX)).replace("```", "'''");
    let mut details = format!(
        "*Mode:* {}   *Approvals needed:* {}   *Expires:* {}",
        request.mode.as_str(),
        request.min_approvals,
        request.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    if let Some(url) = link(public_url, &request.id) {
        details.push_str(&format!("\n<{url}|View request>"));
    }
    json!({
        "text": escape(&headline),
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": format!(
                        "*Approval needed* `{}`\nAgent *{}* on target *{}*, rule *{}*",
                        request.id, escape(&request.agent), escape(&request.target), escape(&request.rule)
                    ),
                },
            },
            { "type": "section", "text": { "type": "mrkdwn", "text": format!("```{statement}```") } },
            { "type": "section", "text": { "type": "mrkdwn", "text": details } },
            {
                "type": "context",
                "elements": [ { "type": "mrkdwn", "text": format!("Approve with `{}`", approve_command(&request.id)) } ],
            },
        ],
    })
}
