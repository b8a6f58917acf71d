//! Extractors that turn request parts into domain types, rejecting with `AppError` so every
//! malformed input gets the one error envelope.

use axum::extract::{FromRequest, FromRequestParts, Multipart, Path, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use contracts::headers;
use uuid::Uuid;

use crate::domain::{IdempotencyKey, UserId};
use crate::error::AppError;

/// JSON body; syntax errors → 400, wrong shape → 422, wrong content type → 415, too large → 413.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct AppJson<T>(pub T);

/// Query string; unparsable → 400 `invalid_query`.
#[derive(Debug, FromRequestParts)]
#[from_request(via(Query), rejection(AppError))]
pub struct AppQuery<T>(pub T);

/// The caller from `X-User-Id` (401 when missing or malformed).
pub struct User(pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for User {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let raw = match parts.headers.get(headers::USER_ID) {
            None => "",
            Some(v) => v
                .to_str()
                .map_err(|_| AppError::Unauthorized("X-User-Id must be visible ASCII".into()))?,
        };
        Ok(User(UserId::parse(raw.trim())?))
    }
}

/// The request id set (or taken from the client) by the request-id middleware.
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestId(request_id_of(&parts.headers)))
    }
}

pub fn request_id_of(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Optional `Idempotency-Key` (400 when present but malformed).
pub struct MaybeIdempotencyKey(pub Option<IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeIdempotencyKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        match parts.headers.get(headers::IDEMPOTENCY_KEY) {
            None => Ok(MaybeIdempotencyKey(None)),
            Some(v) => {
                let raw = v.to_str().unwrap_or_default();
                Ok(MaybeIdempotencyKey(Some(IdempotencyKey::parse(raw)?)))
            }
        }
    }
}

/// `{id}` path segment that must be a UUID (400 `invalid_id` otherwise).
pub struct TicketId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for TicketId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        Uuid::parse_str(&raw).map(TicketId).map_err(|_| {
            AppError::bad_request(
                "invalid_id",
                format!("ticket id must be a UUID, got {raw:?}"),
            )
        })
    }
}

/// An upload body: `multipart/form-data` (415 for any other content type, 400 without a
/// boundary). Nothing is read yet; the handler streams the parts.
pub struct Upload(pub Multipart);

pub const UPLOAD_MEDIA_TYPE_MESSAGE: &str =
    "attachments are uploaded as multipart/form-data with one field named \"file\"";

impl<S: Send + Sync> FromRequest<S> for Upload {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let multipart_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("multipart/form-data"));
        if !multipart_type {
            return Err(AppError::UnsupportedMediaType(UPLOAD_MEDIA_TYPE_MESSAGE));
        }
        Multipart::from_request(req, state)
            .await
            .map(Upload)
            .map_err(|rejection| AppError::bad_request("invalid_multipart", rejection.body_text()))
    }
}
