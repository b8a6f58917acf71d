//! The one error type of the HTTP layer and its mapping to status codes.
//!
//! A handler returns `AppError`; its `IntoResponse` sets the status and an [`ErrorInfo`] extension.
//! The envelope middleware (`middleware::envelope`) turns every error response — ours, axum's
//! rejections, tower-http's 413/504, the 404/405 fallbacks — into the one JSON envelope with the
//! request id, so there is a single place that renders errors.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::s3::ObjectError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    Validation(String),
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyKeyReused,
    #[error("{0}")]
    UnsupportedMediaType(&'static str),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("ticket belongs to another user")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("too many requests for this user; slow down")]
    RateLimited,
    #[error("this user has {0} event streams open on this replica already; close one first")]
    TooManyStreams(usize),
    #[error("{0}")]
    Unavailable(String),
    #[error("the server is at capacity ({0} requests in flight); retry after a second")]
    Overloaded(usize),
    /// The client reads the summary; the log gets the cause too.
    #[error("object store unavailable ({0}); retry later")]
    ObjectStoreUnavailable(String, #[source] crate::s3::Cause),
    #[error(
        "attachments are disabled: this instance has no object store (set S3_BUCKET, and S3_ENDPOINT for Garage or MinIO)"
    )]
    AttachmentsDisabled,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// What the envelope middleware needs to render an error body.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub code: &'static str,
    pub message: String,
    /// Extra machine-readable context, rendered beside `error` as `details`.
    pub details: Option<serde_json::Value>,
}

/// Where the domain's verdicts get their statuses: a broken rule 422, a missing or bad
/// identity 401, a malformed header or part 400.
impl From<crate::domain::DomainError> for AppError {
    fn from(e: crate::domain::DomainError) -> Self {
        use crate::domain::DomainError;
        match e {
            DomainError::Invalid(m) => AppError::Validation(m),
            DomainError::Identity(m) => AppError::Unauthorized(m),
            DomainError::Malformed { code, message } => AppError::BadRequest { code, message },
        }
    }
}

impl AppError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        AppError::BadRequest {
            code,
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            AppError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            AppError::IdempotencyKeyReused => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
            }
            AppError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            AppError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            AppError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            AppError::TooManyStreams(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_streams"),
            AppError::Unavailable(_) | AppError::ObjectStoreUnavailable(..) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            AppError::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            AppError::AttachmentsDisabled => {
                (StatusCode::SERVICE_UNAVAILABLE, "attachments_disabled")
            }
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            // Logged once, here, with the whole cause chain; the body says only "internal error".
            AppError::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "request failed")
            }
            AppError::Unavailable(msg) => tracing::warn!(reason = %msg, "dependency unavailable"),
            AppError::ObjectStoreUnavailable(summary, cause) => {
                tracing::warn!(reason = %summary, cause = %cause, "object store unavailable");
            }
            _ => {}
        }
        let mut response = status.into_response();
        if let AppError::Overloaded(_) = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response.extensions_mut().insert(ErrorInfo {
            code,
            message: self.to_string(),
            details: None,
        });
        response
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(msg) | StoreError::Interrupted(msg) => {
                AppError::Unavailable(msg)
            }
            StoreError::Other(err) => AppError::Internal(err),
        }
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonSyntaxError(e) => {
                AppError::bad_request("invalid_json", e.body_text())
            }
            JsonRejection::JsonDataError(e) => AppError::Validation(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => AppError::UnsupportedMediaType(
                "request body must be JSON (Content-Type: application/json)",
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                AppError::PayloadTooLarge("request body is larger than the limit".into())
            }
            other => AppError::bad_request("invalid_body", other.body_text()),
        }
    }
}

impl From<ObjectError> for AppError {
    fn from(err: ObjectError) -> Self {
        match err {
            ObjectError::Unavailable { summary, cause } => {
                AppError::ObjectStoreUnavailable(summary, cause)
            }
            ObjectError::Other(err) => AppError::Internal(err.context("object store")),
        }
    }
}

impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> Self {
        AppError::bad_request("invalid_query", rejection.body_text())
    }
}

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> Self {
        AppError::bad_request("invalid_path", rejection.body_text())
    }
}
