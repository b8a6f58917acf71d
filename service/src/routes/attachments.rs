//! `/v1/tickets/{id}/attachments` (API-13): upload one file to the object store, list a ticket's
//! attachments with presigned download URLs.
//!
//! An upload is checked (owner, content type) before a byte is read, streamed to S3 with the
//! size counted on the way, and only then recorded: metadata and the `ticket.attachment_added`
//! event in one transaction. Whatever fails after the bytes are stored and before the metadata
//! is written deletes them again; when the metadata write's outcome is unknown (a database error,
//! the request dropped mid-commit) the object is left to the sweeper, which deletes it only if no
//! row references it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::multipart::{Field, MultipartError};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{SubsecRound, Utc};
use contracts::Attachment;
use uuid::Uuid;

use super::tickets::owned_by;
use super::{Route, detached};
use crate::domain::{AttachmentFilename, ContentType, UserId};
use crate::error::AppError;
use crate::extract::{RequestId, TicketId, Upload, User};
use crate::s3::{ObjectError, ObjectStore, StoredObject, UploadError};
use crate::state::AppState;
use crate::store::{AttachmentAdded, AttachmentMeta, NewAttachment, Writer};

/// The multipart field that carries the file.
pub const FILE_FIELD: &str = "file";
/// Parts read past an oversized file to let the client finish sending (bounded by the body limit).
const DRAIN_PARTS: usize = 8;

pub fn routes() -> Vec<Route> {
    vec![
        Route {
            method: Method::POST,
            path: "/v1/tickets/{id}/attachments",
            handler: post(upload_attachment),
            business: true,
            upload: true,
        },
        Route {
            method: Method::GET,
            path: "/v1/tickets/{id}/attachments",
            handler: get(list_attachments),
            business: true,
            upload: false,
        },
    ]
}

/// How an upload ended: `attachment_uploads_total{outcome}`, counted once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Stored,
    TooLarge,
    Empty,
    BadRequest,
    StoreUnavailable,
    StoreError,
    DbError,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::TooLarge => "too_large",
            Outcome::Empty => "empty",
            Outcome::BadRequest => "bad_request",
            Outcome::StoreUnavailable => "store_unavailable",
            Outcome::StoreError => "store_error",
            Outcome::DbError => "db_error",
        }
    }

    fn count(self, state: &AppState) {
        let uploads = &state.metrics.attachment_uploads;
        uploads.with_label_values(&[self.label()]).inc();
    }
}

/// A failed upload: how it is counted and what the client is told.
type Failed = (Outcome, AppError);

async fn upload_attachment(
    State(state): State<AppState>,
    User(user): User,
    RequestId(request_id): RequestId,
    TicketId(ticket_id): TicketId,
    Upload(mut multipart): Upload,
) -> Result<Response, AppError> {
    let objects = state.objects.clone().ok_or(AppError::AttachmentsDisabled)?;
    check_owner(&state, ticket_id, &user).await?;
    let (new, stored) = receive(&state, &objects, ticket_id, &mut multipart)
        .await
        .map_err(|(outcome, err)| {
            outcome.count(&state);
            err
        })?;
    // Recording the metadata and deciding the object's fate run as a task the upload timeout
    // can't cancel: dropped after the commit, the request would otherwise delete the bytes a
    // committed row and event point at (issue #11.4). The task counts the outcome, so a
    // request dropped meanwhile is still counted.
    let task_state = state.clone();
    let meta = detached(&state, async move {
        let state = task_state;
        let recorded = record(&state, &user, &new, stored, &request_id).await;
        let outcome = recorded
            .as_ref()
            .map_or_else(|(o, _)| *o, |_| Outcome::Stored);
        outcome.count(&state);
        recorded.map_err(|(_, err)| err)
    })
    .await?;

    let location = format!("/v1/tickets/{ticket_id}/attachments");
    let body = view(&objects, state.attachments.attachment_url_ttl, meta).await?;
    let mut res = (StatusCode::CREATED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// Reads the one file part and streams it to the object store: the metadata to record and the
/// stored object. A failure after the bytes were stored discards them.
async fn receive(
    state: &AppState,
    objects: &Arc<ObjectStore>,
    ticket_id: Uuid,
    multipart: &mut axum::extract::Multipart,
) -> Result<(NewAttachment, StoredObject), Failed> {
    let bad = |err| (Outcome::BadRequest, err);
    let field = file_field(multipart).await.map_err(bad)?;
    let filename = AttachmentFilename::sanitize(field.file_name());
    // The raw header: multer drops a Content-Type it cannot parse, which would hide the mistake.
    let raw_type = field
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let content_type = ContentType::parse(raw_type).map_err(|e| bad(e.into()))?;
    let id = Uuid::now_v7();
    let key = objects.key_for(ticket_id, id);
    let limit = state.attachments.attachment_max_bytes;
    let disposition = filename.content_disposition();
    let upload = (objects.upload(&key, content_type.as_str(), &disposition, field, limit)).await;
    let stored = match upload {
        Ok(stored) => stored,
        Err(err) => {
            let (outcome, err) = upload_error(err, limit);
            if outcome == Outcome::TooLarge {
                drain(multipart).await;
            }
            return Err((outcome, err));
        }
    };
    if let Err(err) = no_more_fields(multipart).await {
        stored.discard().await;
        return Err(bad(err));
    }
    let new = NewAttachment {
        id,
        ticket_id,
        object_key: key,
        filename,
        content_type,
        size_bytes: stored.size(),
    };
    Ok((new, stored))
}

/// Only one field is accepted: another after the file is an error.
async fn no_more_fields(multipart: &mut axum::extract::Multipart) -> Result<(), AppError> {
    match multipart.next_field().await {
        Ok(None) => Ok(()),
        Ok(Some(extra)) => Err(AppError::bad_request(
            "unexpected_field",
            format!(
                "only one field, {FILE_FIELD:?}, is accepted; got another: {:?}",
                extra.name().unwrap_or_default()
            ),
        )),
        Err(err) => Err(multipart_error(&err)),
    }
}

/// Records the metadata and the event, then keeps the object, discards it, or — when the
/// write's outcome is unknown — leaves it to the sweeper.
async fn record(
    state: &AppState,
    user: &UserId,
    new: &NewAttachment,
    stored: StoredObject,
    request_id: &str,
) -> Result<AttachmentMeta, Failed> {
    match state
        .store
        .add_attachment(Writer::of(user, request_id), new)
        .await
    {
        Ok(AttachmentAdded::Added(meta)) => {
            stored.keep();
            Ok(meta)
        }
        Ok(refused) => {
            stored.discard().await;
            let err = match refused {
                AttachmentAdded::Forbidden => AppError::Forbidden,
                _ => AppError::NotFound("ticket"),
            };
            Err((Outcome::BadRequest, err))
        }
        Err(err) if err.may_have_committed() => {
            // The connection died with the INSERT in flight: the row may exist. The sweeper
            // deletes the object only if no row references it.
            stored.leave_to_sweeper();
            Err((Outcome::DbError, err.into()))
        }
        Err(err) => {
            // Refused by the server or never sent: nothing references the object.
            stored.discard().await;
            Err((Outcome::DbError, err.into()))
        }
    }
}

async fn list_attachments(
    State(state): State<AppState>,
    User(user): User,
    TicketId(ticket_id): TicketId,
) -> Result<axum::Json<Vec<Attachment>>, AppError> {
    let objects = state.objects.clone().ok_or(AppError::AttachmentsDisabled)?;
    check_owner(&state, ticket_id, &user).await?;
    let ttl = state.attachments.attachment_url_ttl;
    let metas = state.store.attachments(ticket_id).await?;
    let views = futures::future::try_join_all(metas.into_iter().map(|m| view(&objects, ttl, m)));
    Ok(axum::Json(views.await?))
}

async fn check_owner(state: &AppState, ticket_id: Uuid, user: &UserId) -> Result<(), AppError> {
    let ticket = state
        .store
        .get(ticket_id)
        .await?
        .ok_or(AppError::NotFound("ticket"))?;
    owned_by(&ticket, user)
}

/// The first part must be the file: a form without it is named as such.
async fn file_field<'a>(
    multipart: &'a mut axum::extract::Multipart,
) -> Result<Field<'a>, AppError> {
    match multipart.next_field().await {
        Ok(Some(field)) if field.name() == Some(FILE_FIELD) => Ok(field),
        Ok(Some(field)) => Err(AppError::bad_request(
            "missing_file",
            format!(
                "the multipart body must hold one field named {FILE_FIELD:?}; its first field is {:?}",
                field.name().unwrap_or_default()
            ),
        )),
        Ok(None) => Err(AppError::bad_request(
            "missing_file",
            format!("the multipart body has no field named {FILE_FIELD:?}"),
        )),
        Err(err) => Err(multipart_error(&err)),
    }
}

fn multipart_error(err: &MultipartError) -> AppError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge("request body is larger than the upload limit".into())
    } else {
        AppError::bad_request("invalid_multipart", err.body_text())
    }
}

fn upload_error(err: UploadError<MultipartError>, limit: u64) -> Failed {
    match err {
        UploadError::TooLarge { .. } => (
            Outcome::TooLarge,
            AppError::PayloadTooLarge(format!(
                "file is larger than the limit of {limit} bytes (ATTACHMENT_MAX_BYTES)"
            )),
        ),
        UploadError::Empty => (
            Outcome::Empty,
            AppError::bad_request("empty_file", "the file is empty; nothing was stored"),
        ),
        UploadError::Body(err) => {
            let err = multipart_error(&err);
            let outcome = if matches!(err, AppError::PayloadTooLarge(_)) {
                Outcome::TooLarge
            } else {
                Outcome::BadRequest
            };
            (outcome, err)
        }
        UploadError::Store(err @ ObjectError::Unavailable { .. }) => {
            (Outcome::StoreUnavailable, err.into())
        }
        UploadError::Store(err) => (Outcome::StoreError, err.into()),
    }
}

/// Reads what the client still sends after an oversized file, so that it sees the 413 instead of
/// a reset connection; the route's body limit bounds how much that can be.
async fn drain(multipart: &mut axum::extract::Multipart) {
    for _ in 0..DRAIN_PARTS {
        match multipart.next_field().await {
            Ok(Some(mut field)) => while let Ok(Some(_)) = field.chunk().await {},
            Ok(None) | Err(_) => return,
        }
    }
}

async fn view(
    objects: &Arc<ObjectStore>,
    ttl: Duration,
    meta: AttachmentMeta,
) -> Result<Attachment, AppError> {
    // Taken before signing (whole seconds, like X-Amz-Date), so the stated expiry is never later
    // than the URL's own.
    let expires_at = Utc::now().trunc_subsecs(0)
        + chrono::Duration::from_std(ttl).map_err(|e| AppError::Internal(e.into()))?;
    let download_url = objects.presign_get(&meta.object_key, ttl).await?;
    Ok(Attachment {
        id: meta.id,
        ticket_id: meta.ticket_id,
        filename: meta.filename,
        content_type: meta.content_type,
        size_bytes: meta.size_bytes,
        created_by: meta.created_by,
        created_at: meta.created_at,
        download_url,
        download_url_expires_at: expires_at,
    })
}
