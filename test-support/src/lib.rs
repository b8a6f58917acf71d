//! Helpers the integration tests of every crate share (issue #12.3): a fault-injecting TCP proxy,
//! and the pipeline tests' private world (a fresh migrated database and topics per test on the
//! local stack, topic reads and writes, wait-for helpers, metric scrapes), and the system's
//! processes spawned in the test on port 0, and a client of the API's event stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod lifetime;
pub mod pipeline;
pub mod proxy;
pub mod sse;
pub mod system;

pub use lifetime::topic_names;
pub use pipeline::{Read, World, create_topic, eventually, read_topic, scrape, stack};
pub use proxy::{FaultProxy, url_addr};
pub use system::{Spawned, System, run_relay, spawn_api, spawn_notifier, spawn_relay};

/// Sends `request` and reads its body as JSON, whatever the status; panics when the server
/// cannot be reached or the body is not JSON.
pub async fn fetch_json(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// Runs `command` to its end and returns what it wrote, stdout then stderr, and whether it
/// exited successfully.
pub fn output_text(command: &mut std::process::Command) -> (String, bool) {
    let out = command.output().expect("the command runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text, out.status.success())
}
