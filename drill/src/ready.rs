//! Waiting for a process of the HA shape (or the balancer) to answer its readiness check.

use std::time::{Duration, Instant};

use anyhow::bail;

/// Polls `url` until it answers 2xx, at most 60 s; `what` names it in the error.
pub async fn wait_ready(url: &str, what: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = client
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} not ready after 60 s ({url})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
