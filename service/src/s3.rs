//! Attachment bytes in S3: Garage in the local stack, AWS S3 or MinIO elsewhere. One client is
//! built at start and shared; uploads stream through a bounded buffer, never whole in memory.
//!
//! Nothing is left behind by a failed upload: a size overflow or a broken body aborts the
//! multipart upload before the error is answered, and an object whose metadata cannot be stored
//! is deleted ([`StoredObject::discard`]). A request dropped half-way (client gone, timeout)
//! cleans up from `Drop`, in the background.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::{AttachmentConfig, S3Config};
use crate::metrics::Metrics;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const PING_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The store cannot be reached, timed out or answered 5xx; the request may be retried.
    /// `summary` (operation and kind of failure) may be shown to clients; `cause` is for the log.
    #[error("object store unavailable: {summary}")]
    Unavailable {
        summary: String,
        #[source]
        cause: Cause,
    },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What went wrong underneath an unavailable store: the SDK's whole error, which may name
/// addresses, so it goes to the log (as the error's source), never to a client.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Cause(pub String);

#[derive(Debug, thiserror::Error)]
pub enum UploadError<E> {
    #[error("file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("file is empty")]
    Empty,
    /// Reading the client's body failed; the error is the body's own.
    #[error("reading the upload failed")]
    Body(E),
    #[error(transparent)]
    Store(#[from] ObjectError),
}

pub struct ObjectStore {
    client: Client,
    /// Signs download URLs for S3_PUBLIC_ENDPOINT (the same client when that is unset).
    presigner: Client,
    bucket: String,
    prefix: String,
    part_bytes: usize,
    uploads: Semaphore,
    metrics: Arc<Metrics>,
    /// Cleanups of abandoned uploads run in the background; shutdown waits for them, so an
    /// exiting runtime does not cut a delete short.
    background: TaskTracker,
}

impl ObjectStore {
    /// `None` when no bucket is configured (attachments off). Builds the client only; whether the
    /// store answers is `/readyz`'s business, so the API starts even while S3 is down.
    pub async fn from_config(
        s3: &S3Config,
        limits: &AttachmentConfig,
        metrics: Arc<Metrics>,
    ) -> Option<Arc<Self>> {
        let bucket = s3.s3_bucket.clone()?;
        let client = client_for(s3, s3.s3_endpoint.as_deref()).await;
        let presigner = match &s3.s3_public_endpoint {
            Some(public) => client_for(s3, Some(public.as_str())).await,
            None => client.clone(),
        };
        Some(Arc::new(Self {
            client,
            presigner,
            bucket,
            prefix: s3.s3_key_prefix.clone(),
            part_bytes: limits.attachment_part_bytes,
            uploads: Semaphore::new(limits.attachment_max_concurrent_uploads),
            metrics,
            background: TaskTracker::new(),
        }))
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Background cleanups still running (shutdown closes and waits for it).
    pub fn background(&self) -> &TaskTracker {
        &self.background
    }

    /// S3_KEY_PREFIX: every attachment object lives under it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix><ticket>/<attachment>`: nothing of the file name, nothing to guess.
    pub fn key_for(&self, ticket_id: uuid::Uuid, attachment_id: uuid::Uuid) -> String {
        format!("{}{ticket_id}/{attachment_id}", self.prefix)
    }

    /// The shared client (tests and benchmarks look inside the bucket with it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Streams `body` to `key`. Up to one part is buffered: a body that ends within it is one
    /// PUT, a longer one a multipart upload. More than `limit` bytes, an empty body or a body
    /// error fail the upload and leave nothing in the bucket.
    pub async fn upload<S, E>(
        self: &Arc<Self>,
        key: &str,
        content_type: &str,
        content_disposition: &str,
        body: S,
        limit: u64,
    ) -> Result<StoredObject, UploadError<E>>
    where
        S: Stream<Item = Result<Bytes, E>>,
    {
        let _slot = self
            .uploads
            .acquire()
            .await
            .map_err(|e| ObjectError::Other(e.into()))?;
        let mut cleanup = Cleanup::new(self.clone(), key);
        let result = self
            .upload_inner(&mut cleanup, content_type, content_disposition, body, limit)
            .await;
        match result {
            Ok(size) => {
                cleanup.action = Action::Delete;
                Ok(StoredObject { cleanup, size })
            }
            // The store failing: clean up in the background (from Drop), so a slow or unreachable
            // store does not hold the 503 back; the sweeper is the backstop if that fails too.
            Err(err @ UploadError::Store(_)) => Err(err),
            // A client mistake: nothing may be left when the answer goes out.
            Err(err) => {
                cleanup.run().await;
                Err(err)
            }
        }
    }

    async fn upload_inner<S, E>(
        &self,
        cleanup: &mut Cleanup,
        content_type: &str,
        content_disposition: &str,
        body: S,
        limit: u64,
    ) -> Result<u64, UploadError<E>>
    where
        S: Stream<Item = Result<Bytes, E>>,
    {
        let key = cleanup.key.clone();
        let mut body = std::pin::pin!(body);
        // Exactly one part's capacity, filled to the brim and handed off whole: the buffer never
        // grows past the part size (no doubling), and the next one is allocated only after the
        // previous part has been uploaded.
        let capacity = self.part_bytes.min(
            usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
        );
        let mut buf = BytesMut::new();
        let mut size: u64 = 0;
        let mut parts = Vec::new();
        let mut upload_id = None;
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(UploadError::Body)?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(UploadError::TooLarge { limit });
            }
            while !chunk.is_empty() {
                if buf.capacity() == 0 {
                    buf = BytesMut::with_capacity(capacity);
                }
                let take = chunk.len().min(self.part_bytes - buf.len());
                buf.extend_from_slice(&chunk.split_to(take));
                if buf.len() < self.part_bytes {
                    continue;
                }
                let part = std::mem::take(&mut buf).freeze();
                let id = match &upload_id {
                    Some(id) => Clone::clone(id),
                    None => {
                        let id = self
                            .create_multipart(&key, content_type, content_disposition)
                            .await?;
                        cleanup.action = Action::Abort(Clone::clone(&id));
                        upload_id = Some(Clone::clone(&id));
                        id
                    }
                };
                parts.push(self.upload_part(&key, &id, parts.len() + 1, part).await?);
            }
        }
        if size == 0 {
            return Err(UploadError::Empty);
        }
        // From here on the object may exist even if the call fails or is cancelled (the store can
        // commit and the answer be lost), so cleaning up must also delete it.
        match upload_id {
            None => {
                cleanup.action = Action::Delete;
                self.put(&key, content_type, content_disposition, buf.freeze())
                    .await?
            }
            Some(id) => {
                if !buf.is_empty() {
                    parts.push(
                        self.upload_part(&key, &id, parts.len() + 1, buf.freeze())
                            .await?,
                    );
                }
                cleanup.action = Action::AbortAndDelete(Clone::clone(&id));
                self.complete_multipart(&key, &id, parts).await?;
            }
        }
        self.metrics.attachment_bytes.inc_by(size);
        Ok(size)
    }

    async fn put(
        &self,
        key: &str,
        content_type: &str,
        content_disposition: &str,
        bytes: Bytes,
    ) -> Result<(), ObjectError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_disposition(content_disposition)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(s3_error("put object"))?;
        Ok(())
    }

    async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        content_disposition: &str,
    ) -> Result<String, ObjectError> {
        // Naming the checksum algorithm up front lets the SDK's per-part CRC32s be accepted by
        // stores that check them against the upload's algorithm (Garage answers InvalidDigest
        // otherwise).
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_disposition(content_disposition)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(s3_error("create multipart upload"))?;
        out.upload_id
            .ok_or_else(|| anyhow::anyhow!("create multipart upload returned no upload id").into())
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: usize,
        bytes: Bytes,
    ) -> Result<CompletedPart, ObjectError> {
        let number = i32::try_from(number).map_err(|_| anyhow::anyhow!("too many parts"))?;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(s3_error("upload part"))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag)
            .set_checksum_crc32(out.checksum_crc32)
            .build())
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), ObjectError> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(s3_error("complete multipart upload"))?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(s3_error("delete object"))?;
        Ok(())
    }

    /// Aborts a multipart upload (the sweeper's, for uploads a crashed process left behind).
    pub async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), ObjectError> {
        self.abort_multipart(key, upload_id).await
    }

    pub fn count_cleanup(&self, action: &str, ok: bool) {
        self.metrics
            .object_cleanups
            .with_label_values(&[action, if ok { "ok" } else { "failed" }])
            .inc();
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), ObjectError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(s3_error("abort multipart upload"))?;
        Ok(())
    }

    /// A GET URL for `key` valid for `ttl`; signing needs no round trip to the store.
    pub async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String, ObjectError> {
        let config = PresigningConfig::expires_in(ttl).map_err(|e| ObjectError::Other(e.into()))?;
        let request = self
            .presigner
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(s3_error("presign get object"))?;
        Ok(request.uri().to_owned())
    }

    /// For `/readyz`: the bucket exists and our credentials reach it.
    pub async fn ping(&self) -> Result<(), ObjectError> {
        let head = self.client.head_bucket().bucket(&self.bucket).send();
        match tokio::time::timeout(PING_TIMEOUT, head).await {
            Ok(result) => result.map(|_| ()).map_err(s3_error("head bucket")),
            Err(_) => Err(ObjectError::Unavailable {
                summary: "head bucket timed out".into(),
                cause: Cause(format!("no answer within {PING_TIMEOUT:?}")),
            }),
        }
    }
}

async fn client_for(s3: &S3Config, endpoint: Option<&str>) -> Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new(s3.s3_region.clone()))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(s3.s3_timeout)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3));
    if let (Some(id), Some(secret)) = (&s3.s3_access_key_id, &s3.s3_secret_access_key) {
        loader = loader.credentials_provider(Credentials::new(
            id.as_str(),
            secret.as_str(),
            None,
            None,
            "servicedesk-config",
        ));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let shared = loader.load().await;
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(s3.s3_force_path_style)
        .build();
    Client::from_conf(config)
}

/// Connection failures, timeouts, throttling and 5xx are "unavailable" (503, retry later);
/// anything else (access denied, no such bucket) is a misconfiguration and an internal error.
fn s3_error<E>(op: &'static str) -> impl FnOnce(SdkError<E, HttpResponse>) -> ObjectError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |err| {
        let transient = match &err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => true,
            SdkError::ServiceError(e) => {
                e.raw().status().is_server_error()
                    || matches!(e.err().code(), Some("SlowDown" | "ServiceUnavailable"))
            }
            SdkError::ResponseError(_) => true,
            _ => false,
        };
        // What a client may read: the operation and the kind of failure, no addresses.
        let summary = match &err {
            SdkError::DispatchFailure(e) if e.is_timeout() => "timed out".to_owned(),
            SdkError::DispatchFailure(_) => "cannot connect".to_owned(),
            SdkError::TimeoutError(_) => "timed out".to_owned(),
            SdkError::ServiceError(e) => format!(
                "HTTP {} {}",
                e.raw().status().as_u16(),
                e.err().code().unwrap_or_default()
            ),
            _ => "bad response".to_owned(),
        };
        let detail = aws_sdk_s3::error::DisplayErrorContext(&err);
        if transient {
            // Logged once, by whoever handles it (issue #12.5: it was logged here and again
            // by the request that failed).
            ObjectError::Unavailable {
                summary: format!("{op}: {summary}"),
                cause: Cause(detail.to_string()),
            }
        } else {
            ObjectError::Other(anyhow::anyhow!("{op}: {summary}: {detail}"))
        }
    }
}

enum Action {
    Nothing,
    Abort(String),
    /// Completing a multipart upload: it may have taken effect or not.
    AbortAndDelete(String),
    Delete,
}

/// What must happen to `key` if the upload does not end up referenced by metadata.
struct Cleanup {
    store: Arc<ObjectStore>,
    key: String,
    action: Action,
}

impl Cleanup {
    fn new(store: Arc<ObjectStore>, key: &str) -> Self {
        Self {
            store,
            key: key.to_owned(),
            action: Action::Nothing,
        }
    }

    async fn run(&mut self) {
        let action = std::mem::replace(&mut self.action, Action::Nothing);
        run_cleanup(&self.store, &self.key, action).await;
    }
}

async fn run_cleanup(store: &ObjectStore, key: &str, action: Action) {
    let (what, result) = match action {
        Action::Nothing => return,
        Action::Abort(upload_id) => ("abort", store.abort_multipart(key, &upload_id).await),
        Action::Delete => ("delete", store.delete(key).await),
        Action::AbortAndDelete(upload_id) => {
            // One of the two is a no-op: the upload is gone once completed.
            let _ = store.abort_multipart(key, &upload_id).await;
            ("delete", store.delete(key).await)
        }
    };
    store.count_cleanup(what, result.is_ok());
    if let Err(err) = result {
        // The object (or parts) stays unreferenced; a bucket lifecycle rule or a sweep removes it.
        tracing::error!(key, error = %err, "cleaning up an unreferenced upload failed");
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let action = std::mem::replace(&mut self.action, Action::Nothing);
        if matches!(action, Action::Nothing) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, key) = (self.store.clone(), std::mem::take(&mut self.key));
            let tracker = store.background.clone();
            tracker.spawn_on(
                async move { run_cleanup(&store, &key, action).await },
                &runtime,
            );
        }
    }
}

/// Bytes now in the bucket. Dropped without [`keep`](Self::keep), the object is deleted in the
/// background; [`discard`](Self::discard) deletes it before returning.
pub struct StoredObject {
    cleanup: Cleanup,
    size: u64,
}

impl StoredObject {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn key(&self) -> &str {
        &self.cleanup.key
    }

    /// Metadata now references the object: keep it.
    pub fn keep(mut self) {
        self.cleanup.action = Action::Nothing;
    }

    /// The metadata could not be stored: delete the object now.
    pub async fn discard(mut self) {
        self.cleanup.run().await;
    }

    /// Whether metadata references the object is unknown (the write failed in a way that may
    /// have committed): neither keep nor delete; the sweeper deletes it after its grace period
    /// only if no row references it.
    pub fn leave_to_sweeper(mut self) {
        tracing::warn!(key = %self.cleanup.key, "metadata write outcome unknown; object left to the sweeper");
        self.cleanup.store.count_cleanup("left_to_sweeper", true);
        self.cleanup.action = Action::Nothing;
    }
}
