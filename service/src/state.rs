//! What every handler sees: the store, the caches, Redis, the object store, metrics and the
//! tracker of work that must outlive its request.

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::cache::ListCache;
use crate::config::AttachmentConfig;
use crate::feed::Feed;
use crate::idempotency::IdempotencyCache;
use crate::metrics::Metrics;
use crate::redis_client::Redis;
use crate::s3::ObjectStore;
use crate::store::TicketStore;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn TicketStore>,
    pub lists: Arc<ListCache>,
    pub idempotency: Arc<IdempotencyCache>,
    pub redis: Option<Redis>,
    pub metrics: Arc<Metrics>,
    /// The object store for attachment bytes; `None` when S3_BUCKET is unset.
    pub objects: Option<Arc<ObjectStore>>,
    pub attachments: AttachmentConfig,
    /// Work that must finish even when its request is dropped (writes and what follows their
    /// commit); shutdown waits for it within the grace period.
    pub tasks: TaskTracker,
    /// The live feed of `GET /v1/events`; `None` in memory mode (no notifier writes there).
    pub feed: Option<Arc<Feed>>,
}
