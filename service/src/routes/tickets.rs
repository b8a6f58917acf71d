//! `/v1/tickets`: create, get, list, close (API-8..12).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use contracts::{CreateTicketRequest, Ticket, TicketStatus, headers};
use serde::Deserialize;

use super::{Route, detached};
use crate::domain::{NewTicket, UserId};
use crate::error::AppError;
use crate::extract::{AppJson, AppQuery, MaybeIdempotencyKey, RequestId, TicketId, User};
use crate::state::AppState;
use crate::store::{CloseOutcome, Created, ListQuery, Writer};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;
/// Deep offsets scan and discard rows; past this, clients should narrow by status instead.
pub const MAX_OFFSET: u32 = 100_000;

pub fn routes() -> Vec<Route> {
    let route = |method, path, handler| Route {
        method,
        path,
        handler,
        business: true,
        upload: false,
    };
    vec![
        route(Method::POST, "/v1/tickets", post(create_ticket)),
        route(Method::GET, "/v1/tickets", get(list_tickets)),
        route(Method::GET, "/v1/tickets/{id}", get(get_ticket)),
        route(Method::POST, "/v1/tickets/{id}/close", post(close_ticket)),
    ]
}

async fn create_ticket(
    State(state): State<AppState>,
    User(user): User,
    RequestId(request_id): RequestId,
    MaybeIdempotencyKey(key): MaybeIdempotencyKey,
    AppJson(body): AppJson<CreateTicketRequest>,
) -> Result<Response, AppError> {
    let new = NewTicket::try_from(body)?;
    if let Some(key) = &key
        && let Some(original) = state.idempotency.lookup(&user, key).await
    {
        return replay(&state, &new, original, "redis");
    }
    let task_state = state.clone();
    let task_new = new.clone();
    let created = detached(&state, async move {
        let (state, new) = (task_state, task_new);
        let created = state
            .store
            .create(
                Writer {
                    owner: &user,
                    request_id: &request_id,
                    idempotency_key: key.as_ref(),
                },
                &new,
            )
            .await?;
        let ticket = match &created {
            Created::New(t) | Created::Existing(t) => t,
        };
        // Also after a replay: the first attempt may have committed under a request that was
        // dropped before it got here.
        state.lists.invalidate(&user).await;
        if let Some(key) = &key {
            state.idempotency.remember(&user, key, ticket).await;
        }
        Ok(created)
    })
    .await?;
    match created {
        Created::New(ticket) => Ok(created_response(ticket, false)),
        Created::Existing(original) => replay(&state, &new, original, "database"),
    }
}

/// The answer to a repeated Idempotency-Key: the original ticket, unless the body differs.
fn replay(
    state: &AppState,
    new: &NewTicket,
    original: Ticket,
    source: &'static str,
) -> Result<Response, AppError> {
    if original.title != new.title.as_str() || original.description != new.description.as_str() {
        return Err(AppError::IdempotencyKeyReused);
    }
    state.idempotency.count_replay(source);
    Ok(created_response(original, true))
}

fn created_response(ticket: Ticket, replayed: bool) -> Response {
    let location = format!("/v1/tickets/{}", ticket.id);
    let mut res = (StatusCode::CREATED, axum::Json(ticket)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    if replayed {
        res.headers_mut().insert(
            headers::IDEMPOTENT_REPLAYED,
            HeaderValue::from_static("true"),
        );
    }
    res
}

async fn get_ticket(
    State(state): State<AppState>,
    User(user): User,
    TicketId(id): TicketId,
) -> Result<axum::Json<Ticket>, AppError> {
    let ticket = state
        .store
        .get(id)
        .await?
        .ok_or(AppError::NotFound("ticket"))?;
    owned_by(&ticket, &user)?;
    Ok(axum::Json(ticket))
}

pub(super) fn owned_by(ticket: &Ticket, user: &UserId) -> Result<(), AppError> {
    if ticket.created_by == user.as_str() {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    status: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

impl ListParams {
    /// Out-of-range values are rejected (400), not clamped: a client asking for 500 rows should
    /// learn it gets at most 200 rather than silently paginate wrong.
    fn parse(self) -> Result<ListQuery, AppError> {
        let status = match self.status.as_deref() {
            None | Some("") => None,
            Some(s) => Some(TicketStatus::parse(s).ok_or_else(|| {
                AppError::bad_request(
                    "invalid_query",
                    format!("status must be OPEN or CLOSED, got {s:?}"),
                )
            })?),
        };
        let number = |name: &str,
                      raw: Option<String>,
                      default: u32,
                      range: std::ops::RangeInclusive<u32>| {
            let Some(raw) = raw else { return Ok(default) };
            raw.parse::<u32>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    AppError::bad_request(
                        "invalid_query",
                        format!(
                            "{name} must be an integer from {} to {}, got {raw:?}",
                            range.start(),
                            range.end()
                        ),
                    )
                })
        };
        Ok(ListQuery {
            status,
            limit: number("limit", self.limit, DEFAULT_LIMIT, 1..=MAX_LIMIT)?,
            offset: number("offset", self.offset, 0, 0..=MAX_OFFSET)?,
        })
    }
}

async fn list_tickets(
    State(state): State<AppState>,
    User(user): User,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Response, AppError> {
    let query = params.parse()?;
    let json = state
        .lists
        .get_or_load(state.store.as_ref(), &user, query)
        .await
        .map_err(|e| match std::sync::Arc::try_unwrap(e) {
            Ok(err) => AppError::from(err),
            Err(shared) => AppError::Unavailable(format!("loading the list failed: {shared}")),
        })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Body::from(json),
    )
        .into_response())
}

async fn close_ticket(
    State(state): State<AppState>,
    User(user): User,
    RequestId(request_id): RequestId,
    TicketId(id): TicketId,
) -> Result<axum::Json<Ticket>, AppError> {
    let task_state = state.clone();
    let outcome = detached(&state, async move {
        let state = task_state;
        let outcome = state
            .store
            .close(Writer::of(&user, &request_id), id)
            .await?;
        // Also when already closed: the first attempt may have committed under a request that
        // was dropped before invalidating.
        if matches!(
            outcome,
            CloseOutcome::Closed(_) | CloseOutcome::AlreadyClosed(_)
        ) {
            state.lists.invalidate(&user).await;
        }
        Ok(outcome)
    })
    .await?;
    match outcome {
        CloseOutcome::Closed(ticket) | CloseOutcome::AlreadyClosed(ticket) => {
            Ok(axum::Json(ticket))
        }
        CloseOutcome::Forbidden => Err(AppError::Forbidden),
        CloseOutcome::NotFound => Err(AppError::NotFound("ticket")),
    }
}
