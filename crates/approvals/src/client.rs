//! A client of the operators' HTTP API, for the command line.

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::model::{Grant, NewGrant, Request};

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub fn new(base_url: &str, token: &str) -> Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Client {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.json().await?);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(text);
        Err(Error::Http(format!("{status}: {message}")))
    }

    pub async fn list(&self, state: Option<&str>) -> Result<Vec<Request>> {
        let path = match state {
            Some(s) => format!("/api/approvals?state={s}"),
            None => "/api/approvals".to_owned(),
        };
        self.call(Method::GET, &path, None).await
    }

    pub async fn get(&self, id: &str) -> Result<Request> {
        self.call(Method::GET, &format!("/api/approvals/{id}"), None)
            .await
    }

    pub async fn approve(&self, id: &str) -> Result<Request> {
        self.call(Method::POST, &format!("/api/approvals/{id}/approve"), None)
            .await
    }

    pub async fn deny(&self, id: &str, reason: &str) -> Result<Request> {
        self.call(
            Method::POST,
            &format!("/api/approvals/{id}/deny"),
            Some(json!({ "reason": reason })),
        )
        .await
    }

    pub async fn grant(&self, new: &NewGrant) -> Result<Grant> {
        self.call(
            Method::POST,
            "/api/grants",
            Some(serde_json::to_value(new)?),
        )
        .await
    }

    pub async fn grants(&self, all: bool) -> Result<Vec<Grant>> {
        self.call(
            Method::GET,
            if all {
                "/api/grants?all=true"
            } else {
                "/api/grants"
            },
            None,
        )
        .await
    }

    pub async fn revoke_grant(&self, id: &str) -> Result<Grant> {
        self.call(Method::DELETE, &format!("/api/grants/{id}"), None)
            .await
    }
}
