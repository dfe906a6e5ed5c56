//! The operators' HTTP API, to be merged into the gateway's HTTP listener.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::error::Error;
use crate::model::{Grant, NewGrant, Request, State as ReqState};
use crate::operators::OperatorTokens;
use crate::service::Approvals;
use crate::store::Filter;

#[derive(Clone)]
struct AppState {
    approvals: Arc<Approvals>,
    operators: Arc<OperatorTokens>,
}

/// Routes under `/api/approvals` and `/api/grants`; every one needs an operator's bearer token.
pub fn router(approvals: Arc<Approvals>, operators: OperatorTokens) -> Router {
    Router::new()
        .route("/api/approvals", get(list))
        .route("/api/approvals/{id}", get(show))
        .route("/api/approvals/{id}/approve", post(approve))
        .route("/api/approvals/{id}/deny", post(deny))
        .route("/api/grants", get(grants).post(create_grant))
        .route("/api/grants/{id}", delete(revoke_grant))
        .with_state(AppState {
            approvals,
            operators: Arc::new(operators),
        })
}

pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.1 }));
        if self.0 == StatusCode::UNAUTHORIZED {
            (self.0, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (self.0, body).into_response()
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::NotFound(_) | Error::GrantNotFound(_) => StatusCode::NOT_FOUND,
            Error::IllegalTransition { .. } | Error::AlreadyApproved { .. } => StatusCode::CONFLICT,
            Error::SelfApproval(_) => StatusCode::FORBIDDEN,
            Error::ReasonRequired | Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::Store(_) | Error::Config(_) | Error::Http(_) => {
                tracing::error!(error = %e, "approvals API failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError(status, e.to_string())
    }
}

/// The authenticated operator's name.
struct Operator(String);

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError(
                    StatusCode::UNAUTHORIZED,
                    "missing operator bearer token".into(),
                )
            })?;
        state
            .operators
            .authenticate(token)
            .map(|name| Operator(name.to_owned()))
            .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "unknown operator token".into()))
    }
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    agent: Option<String>,
    target: Option<String>,
    limit: Option<u32>,
}

async fn list(
    _op: Operator,
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Request>>, ApiError> {
    let state =
        match q.state.as_deref() {
            None | Some("") | Some("all") => None,
            Some(text) => Some(ReqState::parse(text).ok_or_else(|| {
                ApiError(StatusCode::BAD_REQUEST, format!("unknown state {text:?}"))
            })?),
        };
    let filter = Filter {
        state,
        agent: q.agent,
        target: q.target,
        limit: q.limit,
    };
    Ok(Json(s.approvals.list(filter).await?))
}

async fn show(
    _op: Operator,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Request>, ApiError> {
    Ok(Json(s.approvals.get(&id).await?))
}

async fn approve(
    op: Operator,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Request>, ApiError> {
    Ok(Json(s.approvals.approve(&id, &op.0).await?))
}

#[derive(Deserialize)]
struct DenyBody {
    #[serde(default)]
    reason: String,
}

async fn deny(
    op: Operator,
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<DenyBody>,
) -> Result<Json<Request>, ApiError> {
    Ok(Json(s.approvals.deny(&id, &op.0, &body.reason).await?))
}

#[derive(Deserialize)]
struct GrantsQuery {
    #[serde(default)]
    all: bool,
}

async fn grants(
    _op: Operator,
    State(s): State<AppState>,
    Query(q): Query<GrantsQuery>,
) -> Result<Json<Vec<Grant>>, ApiError> {
    Ok(Json(s.approvals.grants(q.all).await?))
}

async fn create_grant(
    op: Operator,
    State(s): State<AppState>,
    Json(new): Json<NewGrant>,
) -> Result<(StatusCode, Json<Grant>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.approvals.grant(new, &op.0).await?),
    ))
}

async fn revoke_grant(
    op: Operator,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Grant>, ApiError> {
    Ok(Json(s.approvals.revoke_grant(&id, &op.0).await?))
}
