//! A test world on the real stack leaves nothing behind: its database and both topics are gone
//! once its last clone is dropped (leftover worlds cost the brokers a walk over their partitions
//! on every fetch; see `lifetime`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sqlx::PgPool;
use test_support::{World, eventually, stack, topic_names};

fn topics(brokers: &str) -> Vec<String> {
    topic_names(brokers).expect("the cluster's metadata")
}

#[tokio::test]
async fn a_dropped_world_takes_its_database_and_topics_with_it() {
    let Some(world) = World::new(2).await else {
        return;
    };
    let (base, brokers) = stack().unwrap();
    let database = world.db_url.rsplit('/').next().unwrap().to_owned();
    let (topic, dlq) = (world.topic.clone(), world.dlq.clone());
    let admin = PgPool::connect(&base).await.unwrap();
    let exists = |admin: PgPool, name: String| async move {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
        )
        .bind(name)
        .fetch_one(&admin)
        .await
        .unwrap()
    };
    assert!(exists(admin.clone(), database.clone()).await);
    let b = brokers.clone();
    let before = tokio::task::spawn_blocking(move || topics(&b))
        .await
        .unwrap();
    assert!(before.contains(&topic) && before.contains(&dlq));

    let clone = world.clone();
    drop(world);
    assert!(
        exists(admin.clone(), database.clone()).await,
        "a clone still holds the world"
    );
    drop(clone);

    assert!(!exists(admin, database.clone()).await, "{database} dropped");
    // Deletion reaches every broker's metadata a moment after the controller accepts it.
    eventually(
        Duration::from_secs(15),
        "the topic and its DLQ deleted",
        || {
            let (brokers, topic, dlq) = (brokers.clone(), topic.clone(), dlq.clone());
            async move {
                let after = tokio::task::spawn_blocking(move || topics(&brokers))
                    .await
                    .unwrap();
                !after.contains(&topic) && !after.contains(&dlq)
            }
        },
    )
    .await;
}
