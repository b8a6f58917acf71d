//! How long a test world lives: its database and topics go when its last clone is dropped, and
//! the first world a process makes sweeps away what crashed or killed runs left behind.
//!
//! Why it matters: a run of the suite makes about ninety worlds, and every drill one more. Left
//! on the broker, their partitions (~400 at RF 3 on the drills' cluster) cost every follower
//! fetch and every delayed-fetch check a walk over all of them: during a relay-kill drill at
//! 1000 rps on the 2-core box the three brokers took 74.6 % of a core with ~180 leftover topics
//! and 63.1 % once they were gone (`top`, mean of the loaded 2 s samples). The 178 leftover
//! databases also gave autovacuum's launcher 178 databases to visit every minute.
//!
//! Names carry a UUIDv7, so a world's age is read from its name: the sweep removes worlds over
//! an hour old (no test lives that long, so a concurrent run's worlds are safe) and legacy names
//! that carry no time. `SERVICEDESK_KEEP_WORLDS=1` keeps them all, for a post-mortem.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use sqlx::PgPool;
use uuid::Uuid;

/// Worlds older than this are leftovers.
const STALE_AFTER: Duration = Duration::from_secs(3600);
const TOPIC_PREFIX: &str = "test.events.";
const DB_PREFIX: &str = "t_";

/// A fresh world's names: its database and its events topic (the DLQ is `<topic>.dlq`).
pub fn fresh_names() -> (String, String) {
    let id = Uuid::now_v7().simple().to_string();
    (format!("{DB_PREFIX}{id}"), format!("{TOPIC_PREFIX}{id}"))
}

/// The database and topics one world owns; dropping the last handle removes them.
pub struct Owned {
    pub base_url: String,
    pub brokers: String,
    pub database: String,
    pub topics: Vec<String>,
}

impl Drop for Owned {
    fn drop(&mut self) {
        if keep() {
            return;
        }
        let (base, brokers) = (self.base_url.clone(), self.brokers.clone());
        let (databases, topics) = (vec![self.database.clone()], self.topics.clone());
        // Drop is synchronous and may run inside the test's runtime: the removal gets a thread
        // and a runtime of its own, and the test waits for it (a panic there is reported, and
        // the next run's sweep takes what it left).
        let removal = std::thread::spawn(move || {
            runtime().block_on(remove(&base, &brokers, &databases, &topics))
        });
        match removal.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("test world not removed (the next run sweeps it): {e:#}"),
            Err(_) => eprintln!("test world removal panicked (the next run sweeps it)"),
        }
    }
}

fn keep() -> bool {
    std::env::var("SERVICEDESK_KEEP_WORLDS").is_ok_and(|v| v == "1")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the world's removal")
}

/// Once per process: removes the stale worlds found on the stack.
pub async fn sweep_once(base_url: &str, brokers: &str) {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if keep() || SWEPT.swap(true, Ordering::SeqCst) {
        return;
    }
    if let Err(e) = sweep(base_url, brokers, SystemTime::now()).await {
        eprintln!("stale test worlds not swept: {e:#}");
    }
}

async fn sweep(base_url: &str, brokers: &str, now: SystemTime) -> anyhow::Result<()> {
    let admin = PgPool::connect(base_url).await?;
    let databases: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'")
            .fetch_all(&admin)
            .await?;
    admin.close().await;
    let databases: Vec<String> = databases
        .into_iter()
        .filter(|d| stale(d, DB_PREFIX, now))
        .collect();
    let brokers_owned = brokers.to_owned();
    let topics = tokio::task::spawn_blocking(move || topic_names(&brokers_owned)).await??;
    let topics: Vec<String> = topics
        .into_iter()
        .filter(|t| stale(t.trim_end_matches(".dlq"), TOPIC_PREFIX, now))
        .collect();
    if !databases.is_empty() || !topics.is_empty() {
        eprintln!(
            "sweeping {} stale test databases and {} stale test topics",
            databases.len(),
            topics.len()
        );
    }
    remove(base_url, brokers, &databases, &topics).await
}

/// Every topic's name on the cluster (a blocking metadata call).
pub fn topic_names(brokers: &str) -> anyhow::Result<Vec<String>> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let metadata = client.fetch_metadata(None, Duration::from_secs(10))?;
    Ok(metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .collect())
}

/// A test world's name (after `prefix`) that is over an hour old by its UUIDv7, or that carries
/// no time at all (a name from before worlds were timed).
fn stale(name: &str, prefix: &str, now: SystemTime) -> bool {
    let Some(id) = name.strip_prefix(prefix) else {
        return false;
    };
    let Ok(id) = Uuid::try_parse(id) else {
        return false;
    };
    let Some(born) = id.get_timestamp() else {
        return true;
    };
    let (secs, nanos) = born.to_unix();
    let born = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
    now.duration_since(born).is_ok_and(|age| age > STALE_AFTER)
}

async fn remove(
    base_url: &str,
    brokers: &str,
    databases: &[String],
    topics: &[String],
) -> anyhow::Result<()> {
    if !databases.is_empty() {
        let admin = PgPool::connect(base_url).await?;
        for database in databases {
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                .execute(&admin)
                .await?;
        }
        admin.close().await;
    }
    if !topics.is_empty() {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in admin.delete_topics(&names, &options).await? {
            match result {
                // A world whose test failed before its topics were made.
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((topic, code)) => anyhow::bail!("deleting topic {topic}: {code}"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_world_is_stale_after_an_hour_or_when_its_name_has_no_time() {
        let (db, topic) = fresh_names();
        let now = SystemTime::now();
        assert!(!stale(&db, DB_PREFIX, now), "a fresh world is kept");
        assert!(!stale(&topic, TOPIC_PREFIX, now));
        let later = now + STALE_AFTER + Duration::from_secs(1);
        assert!(stale(&db, DB_PREFIX, later), "an hour later it is swept");
        assert!(stale(&topic, TOPIC_PREFIX, later));
        let legacy = format!("{TOPIC_PREFIX}{}", Uuid::new_v4().simple());
        assert!(stale(&legacy, TOPIC_PREFIX, now), "a v4 name has no time");
        for other in ["tickets.events", "t_not_a_uuid", "servicedesk"] {
            assert!(!stale(other, TOPIC_PREFIX, later) && !stale(other, DB_PREFIX, later));
        }
    }
}
