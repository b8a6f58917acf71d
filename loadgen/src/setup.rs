//! Before the load: where it goes (the given target, an answering default, or an embedded
//! service) and the tickets every user starts with.

use std::time::Duration;

use anyhow::Context;
use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::RunArgs;
use crate::plan::Users;

const DEFAULT_TARGET: &str = "http://127.0.0.1:8080";

/// This run's X-User-Id prefix: `lg-` and 12 random hex digits, so runs never share users.
pub fn user_prefix() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("lg-{}", id.get(..12).unwrap_or("run"))
}

/// Where the load goes: the given target, or (unless `--embedded`) an answering default, or an
/// embedded service.
pub async fn resolve_target(args: &RunArgs) -> anyhow::Result<(String, bool)> {
    if let Some(t) = &args.target {
        return Ok((t.trim_end_matches('/').to_string(), false));
    }
    if args.embedded {
        let addr = start_embedded()?;
        eprintln!("loadgen: started the embedded service (memory mode) at http://{addr}");
        return Ok((format!("http://{addr}"), true));
    }
    let answering = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect("127.0.0.1:8080"),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if answering {
        return Ok((DEFAULT_TARGET.to_string(), false));
    }
    let addr = start_embedded()?;
    eprintln!(
        "loadgen: nothing answers at {DEFAULT_TARGET}; started the embedded service (memory mode) at http://{addr}"
    );
    Ok((format!("http://{addr}"), true))
}

/// The service in memory mode on its own thread and runtime, so its scheduling does not queue
/// behind the load generator's tasks.
fn start_embedded() -> anyhow::Result<std::net::SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("embedded-service".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::anyhow!(e)));
                    return;
                }
            };
            rt.block_on(async move {
                match service::App::build(service::Config::embedded()).await {
                    Ok(app) => {
                        let _ = tx.send(Ok(app.addr()));
                        if let Err(e) = app.run_until_stopped().await {
                            eprintln!("embedded service stopped: {e:#}");
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })?;
    rx.recv().context("embedded service thread")?
}

/// How long seeding keeps sending a ticket again that the server shed or could not take.
const SEED_RETRY_FOR: Duration = Duration::from_secs(30);

/// Creates `n` tickets per user before the run so get/close/list have data.
///
/// Seeding is set-up, not measurement, and a busy server may shed some of it: a 503 (admission
/// control, a database pool that timed out), a 429, a refused connection or a timeout is sent
/// again after the server's `Retry-After` (or a backoff from 100 ms to 2 s) until `retry_for` has
/// passed. Every seed carries its own Idempotency-Key, so a retry of one the server did commit
/// gets the same ticket back, never a second one.
pub async fn seed(
    target: &str,
    users: &Users,
    per_user: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    seed_retrying_for(target, users, per_user, timeout, SEED_RETRY_FOR).await
}

/// [`seed`], sending a shed ticket again until `retry_for` has passed.
async fn seed_retrying_for(
    target: &str,
    users: &Users,
    per_user: usize,
    timeout: Duration,
    retry_for: Duration,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let jobs: Vec<(usize, usize)> = (0..users.len())
        .flat_map(|u| (0..per_user).map(move |i| (u, i)))
        .collect();
    let url = format!("{target}/v1/tickets");
    for chunk in jobs.chunks(64) {
        let mut set = tokio::task::JoinSet::new();
        for &(u, i) in chunk {
            let (client, url, user_id) = (client.clone(), url.clone(), users.id(u));
            set.spawn(async move {
                seed_one(&client, &url, &user_id, i, retry_for)
                    .await
                    .map(|ticket| (u, ticket.id))
            });
        }
        while let Some(r) = set.join_next().await {
            let (u, id) = r?.with_context(|| format!("seeding tickets at {target}"))?;
            users.add(u, id);
        }
    }
    Ok(())
}

/// One seed ticket, sent again (same Idempotency-Key) while the server sheds it.
async fn seed_one(
    client: &reqwest::Client,
    url: &str,
    user_id: &str,
    i: usize,
    retry_for: Duration,
) -> Result<contracts::Ticket, reqwest::Error> {
    let key = uuid::Uuid::new_v4().to_string();
    let body = serde_json::json!({"title": format!("seed {i}"), "description": "loadgen seed"});
    let deadline = tokio::time::Instant::now() + retry_for;
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .without_max_times()
        .build();
    loop {
        let sent = client
            .post(url)
            .header(contracts::headers::USER_ID, user_id)
            .header(contracts::headers::IDEMPOTENCY_KEY, &key)
            .json(&body)
            .send()
            .await;
        let wait = match &sent {
            Ok(r) if shed(r.status()) => retry_after(r).or_else(|| backoff.next()),
            Err(e) if e.is_connect() || e.is_timeout() => backoff.next(),
            _ => None,
        };
        match wait {
            Some(wait) if tokio::time::Instant::now() + wait < deadline => {
                tokio::time::sleep(wait).await;
            }
            _ => return sent?.error_for_status()?.json().await,
        }
    }
}

/// A status that says "not now": the request was not taken, and may be sent again.
fn shed(status: reqwest::StatusCode) -> bool {
    matches!(
        status,
        reqwest::StatusCode::SERVICE_UNAVAILABLE | reqwest::StatusCode::TOO_MANY_REQUESTS
    )
}

/// A `Retry-After` in seconds (the form our API sends), at most 5 s.
fn retry_after(r: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = r
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(5)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;

    use super::*;

    /// A stand-in for a shedding server: each Idempotency-Key is answered 503 (`Retry-After: 0`)
    /// `shed` times, then 201 with one ticket per key. Records every key it saw, per attempt.
    async fn shedding_server(shed: usize) -> (String, Arc<Mutex<HashMap<String, usize>>>) {
        let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let state = seen.clone();
        let app = axum::Router::new().route(
            "/v1/tickets",
            axum::routing::post(move |headers: HeaderMap| {
                let seen = state.clone();
                async move {
                    let key = headers
                        .get(contracts::headers::IDEMPOTENCY_KEY)
                        .map(|k| k.to_str().unwrap().to_owned())
                        .unwrap_or_default();
                    let attempt = {
                        let mut seen = seen.lock().unwrap();
                        let n = seen.entry(key.clone()).or_default();
                        *n += 1;
                        *n
                    };
                    if attempt <= shed {
                        return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")])
                            .into_response();
                    }
                    let now = chrono::Utc::now();
                    let ticket = contracts::Ticket {
                        id: uuid::Uuid::new_v4(),
                        title: "seed".into(),
                        description: String::new(),
                        status: contracts::TicketStatus::Open,
                        created_by: "u".into(),
                        created_at: now,
                        updated_at: now,
                        closed_at: None,
                    };
                    (StatusCode::CREATED, axum::Json(ticket)).into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    #[tokio::test]
    async fn seeding_sends_a_shed_ticket_again_under_its_own_key() {
        let (url, seen) = shedding_server(2).await;
        let users = Users::new("lg-test", 3);
        seed_retrying_for(
            &url,
            &users,
            4,
            Duration::from_secs(5),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(users.known(), 12, "every seed ticket was created");
        let seen = seen.lock().unwrap();
        // One key per ticket, each sent three times: two sheds, then the 201.
        assert_eq!(seen.len(), 12, "{seen:?}");
        assert!(seen.keys().all(|k| !k.is_empty()), "{seen:?}");
        assert!(seen.values().all(|&n| n == 3), "{seen:?}");
    }

    #[tokio::test]
    async fn seeding_gives_up_on_a_server_that_sheds_past_the_retry_window() {
        let (url, _) = shedding_server(usize::MAX).await;
        let users = Users::new("lg-test", 1);
        let err = seed_retrying_for(
            &url,
            &users,
            1,
            Duration::from_secs(5),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("503"), "{err:#}");
    }
}
