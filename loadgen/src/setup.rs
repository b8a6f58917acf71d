//! Before the load: where it goes (the given target, an answering default, or an embedded
//! service) and the tickets every user starts with.

use std::time::Duration;

use anyhow::Context;

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

/// Creates `n` tickets per user before the run so get/close/list have data.
pub async fn seed(
    target: &str,
    users: &Users,
    per_user: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let jobs: Vec<(usize, usize)> = (0..users.len())
        .flat_map(|u| (0..per_user).map(move |i| (u, i)))
        .collect();
    for chunk in jobs.chunks(64) {
        let mut set = tokio::task::JoinSet::new();
        for &(u, i) in chunk {
            let client = client.clone();
            let url = format!("{target}/v1/tickets");
            let user_id = users.id(u);
            set.spawn(async move {
                let r = client
                    .post(url)
                    .header(contracts::headers::USER_ID, user_id)
                    .json(&serde_json::json!({"title": format!("seed {i}"), "description": "loadgen seed"}))
                    .send()
                    .await?
                    .error_for_status()?
                    .json::<contracts::Ticket>()
                    .await?;
                Ok::<_, reqwest::Error>((u, r.id))
            });
        }
        while let Some(r) = set.join_next().await {
            let (u, id) = r?.with_context(|| format!("seeding tickets at {target}"))?;
            users.add(u, id);
        }
    }
    Ok(())
}
