//! What the generator cost the box: the process's CPU time over the measured window.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::Shared;

/// CPU time (user + system) of the whole process during the measured window: what the
/// generator cost the box (with an embedded service, the service's too). None when the
/// schedule never started or the OS does not say.
pub async fn window_cpu(shared: Arc<Shared>, warmup: Duration, duration: Duration) -> Option<f64> {
    let t0 = loop {
        if let Some(p) = shared.started() {
            break p.t0();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep_until((t0 + warmup).into()).await;
    let start = process_cpu()?;
    tokio::time::sleep_until((t0 + warmup + duration).into()).await;
    Some((process_cpu()? - start).as_secs_f64())
}

/// The process's CPU time so far (getrusage).
fn process_cpu() -> Option<Duration> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Some(tv(usage.user_time()) + tv(usage.system_time()))
}
