//! The attachment sweeper: what a crash can leave in the bucket is removed here.
//!
//! An upload writes the object first and the metadata second; a process killed in between leaves
//! an object no `attachments` row references, and a process killed during a multipart upload
//! leaves its parts. Both are invisible to clients but cost storage. The sweep deletes objects
//! under S3_KEY_PREFIX older than the grace period that no row references, and aborts multipart
//! uploads under it older than that. The prefix must belong to this database alone. The grace period exceeds the upload timeout, so an upload in flight is
//! never touched. Deletes are idempotent: several replicas may sweep at once.
//!
//! Postgres mode only: in memory mode the metadata dies with the process, and two replicas would
//! sweep each other's objects.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::s3::ObjectStore;
use crate::store::TicketStore;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Objects listed under the prefix.
    pub scanned: u64,
    /// Unreferenced objects deleted.
    pub deleted: u64,
    /// Abandoned multipart uploads aborted.
    pub aborted: u64,
}

/// One pass over the bucket.
pub async fn sweep_once(
    objects: &ObjectStore,
    store: &dyn TicketStore,
    grace: Duration,
) -> anyhow::Result<Swept> {
    let cutoff = SystemTime::now() - grace;
    let is_old = |t: Option<&aws_sdk_s3::primitives::DateTime>| {
        t.and_then(|t| SystemTime::try_from(*t).ok())
            .is_some_and(|t| t < cutoff)
    };
    let mut swept = Swept::default();

    let mut pages = objects
        .client()
        .list_objects_v2()
        .bucket(objects.bucket())
        .prefix(objects.prefix())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| anyhow::anyhow!(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        swept.scanned += page.contents().len() as u64;
        let old: Vec<String> = page
            .contents()
            .iter()
            .filter(|o| is_old(o.last_modified()))
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        if old.is_empty() {
            continue;
        }
        let referenced: HashSet<String> = store.referenced_objects(&old).await?;
        for key in old.iter().filter(|k| !referenced.contains(*k)) {
            objects.delete(key).await?;
            objects.count_cleanup("sweep_delete", true);
            tracing::warn!(key, "swept an object no attachment references");
            swept.deleted += 1;
        }
    }

    let mut key_marker: Option<String> = None;
    let mut upload_marker: Option<String> = None;
    loop {
        let page = objects
            .client()
            .list_multipart_uploads()
            .bucket(objects.bucket())
            .prefix(objects.prefix())
            .set_key_marker(key_marker.take())
            .set_upload_id_marker(upload_marker.take())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        for upload in page.uploads() {
            if let (Some(key), Some(id), true) =
                (upload.key(), upload.upload_id(), is_old(upload.initiated()))
            {
                objects.abort_upload(key, id).await?;
                objects.count_cleanup("sweep_abort", true);
                tracing::warn!(key, "swept an abandoned multipart upload");
                swept.aborted += 1;
            }
        }
        if !page.is_truncated().unwrap_or(false) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        upload_marker = page.next_upload_id_marker().map(str::to_owned);
        if key_marker.is_none() && upload_marker.is_none() {
            break;
        }
    }
    Ok(swept)
}

/// Sweeps every `interval` until `stop`; a failed pass is logged and retried next time.
pub fn spawn(
    objects: Arc<ObjectStore>,
    store: Arc<dyn TicketStore>,
    interval: Duration,
    grace: Duration,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            match sweep_once(&objects, store.as_ref(), grace).await {
                Ok(swept) if swept.deleted + swept.aborted > 0 => {
                    tracing::info!(?swept, "attachment sweep removed leftovers");
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = format!("{err:#}"), "attachment sweep failed"),
            }
        }
    });
}
