//! The drills: what each one breaks, for how long, and what it is expected to cost — written
//! down before the run, so the report compares the expectation with the measurement.

use std::time::Duration;

use serde::Serialize;

/// What a drill does to the running system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Fault {
    /// kill -9 API replica 2 (of 2 behind haproxy); start it again at heal.
    KillApi,
    /// kill -9 relay 2 (of 2); start it again at heal.
    KillRelay,
    /// kill -9 notifier 2 (of 2 in one group); start it again at heal.
    KillNotifier,
    /// kill -9 the Kafka node leading most partitions of the drill's topic; start it at heal.
    KillKafkaLeader,
    /// The APIs' Redis connections reset and refused (a fault proxy) until heal.
    RedisDown,
    /// PostgreSQL restarted (fast shutdown, start): every component's sessions are cut.
    PostgresRestart,
    /// +50 ms each way between the APIs and Postgres (a fault proxy) until heal.
    PostgresLatency,
    /// 20 % of the relays' publishes fail, the whole run (the relay's chaos setting).
    PublishChaos,
    /// The notifiers' Postgres connections reset and refused (a fault proxy) until heal.
    NotifierDbDown,
    /// +200 ms each way on every link between the relays and Kafka until heal.
    RelayKafkaLatency,
    /// The relays' Kafka connections reset every 2 s until heal (new ones accepted).
    RelayKafkaResets,
    /// Every byte between the relays and Kafka swallowed, nothing closed, until heal.
    RelayKafkaBlackhole,
    /// Garage (the S3 store) stopped until heal, while the drill uploads attachments beside
    /// the ticket load.
    GarageDown,
}

/// Which API errors the drill may cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Errors {
    /// Not one failed request.
    None,
    /// Only while the fault lasts, plus this many seconds after it.
    DuringOutage { slack_s: f64 },
}

/// The expected outcome, fixed before the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Expect {
    pub errors: Errors,
    /// Upper bound of the end-to-end lag (commit → notification) of any event in the window.
    pub max_e2e_lag_s: f64,
    /// After heal, p99 and lags back inside the pre-fault band within this long (None: the
    /// fault lasts the whole run, there is no "after").
    pub recovery_s: Option<f64>,
}

/// Zero loss and zero duplicates are expected of every drill; they are not a per-drill choice.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Drill {
    pub name: &'static str,
    pub fault: Fault,
    pub what: &'static str,
    /// How long the fault lasts before heal (ignored for whole-run faults).
    pub hold_s: f64,
    pub expect: Expect,
}

/// Recovery bound of the goal: back to the pre-fault band within 10 s of heal.
pub const RECOVERY_S: f64 = 10.0;

/// publish-chaos: the share of publishes the relays fail on purpose.
pub const CHAOS_RATE: f64 = 0.2;
/// The relays' row backoff in the HA shape (`RELAY_RETRY_BASE`, `RELAY_RETRY_MAX`): a failed
/// row is due again after `base · 2^attempts`, at most `max`. The max is 5 s, like the step
/// loop's own cap, rather than the relay's 30 s default: librdkafka has already retried a
/// message for its whole delivery timeout before the relay sees it fail, and a longer cap only
/// stretches the lag of the few rows that fail many times in a row.
pub const RELAY_RETRY_BASE_S: f64 = 0.2;
pub const RELAY_RETRY_MAX_S: f64 = 5.0;

/// The end-to-end lag publish-chaos may reach, from the backoff policy rather than a guess.
/// A row fails k times in a row with probability `rate^k`; among `events` rows, the longest
/// run of failures stays at or below the smallest k with `events · rate^k ≤ 1 %` with
/// probability ≥ 99 % (union bound). Such a row waits the sum of its k backoffs, plus one
/// step (≤ 100 ms) per retry, plus the healthy end-to-end lag (2 s, the other drills' bound).
/// 1000 rps for 50 s (50,000 events at most, one per request): k = 10, 34.2 s.
pub fn chaos_lag_bound(events: f64, rate: f64, base_s: f64, max_s: f64) -> f64 {
    let mut k = 0;
    while events * rate.powi(k) > 0.01 && k < 64 {
        k += 1;
    }
    let waits: f64 = (0..k)
        .map(|i| (base_s * 2f64.powi(i)).min(max_s) + 0.1)
        .sum();
    // To 0.1 s, as the scoreboard prints it.
    ((waits + 2.0) * 10.0).round() / 10.0
}

const fn drill(
    name: &'static str,
    fault: Fault,
    what: &'static str,
    hold_s: f64,
    errors: Errors,
    max_e2e_lag_s: f64,
) -> Drill {
    Drill {
        name,
        fault,
        what,
        hold_s,
        expect: Expect {
            errors,
            max_e2e_lag_s,
            recovery_s: Some(RECOVERY_S),
        },
    }
}

/// Every drill, in the order `all` runs them.
pub const ALL: [Drill; 13] = [
    drill(
        "api-kill",
        Fault::KillApi,
        "kill -9 one of two API replicas; restart it after 10 s (haproxy retries and health checks)",
        10.0,
        Errors::None,
        2.0,
    ),
    drill(
        "relay-kill",
        Fault::KillRelay,
        "kill -9 one of two relays; restart it after 10 s (the survivor takes over its claims once its liveness lock is free)",
        10.0,
        Errors::None,
        // A batch the dead relay had claimed: its session ends with the process, the survivor's
        // next takeover check (every second) returns the rows, its next step publishes them. Not
        // the restart (10 s) and not the claim timeout (60 s).
        5.0,
    ),
    drill(
        "notifier-kill",
        Fault::KillNotifier,
        "kill -9 one of two notifiers; restart it after 15 s (the group's session timeout is 10 s)",
        15.0,
        Errors::None,
        // Its partitions wait for the session timeout, then a rebalance; the restart rebalances
        // again.
        15.0,
    ),
    drill(
        "kafka-leader-kill",
        Fault::KillKafkaLeader,
        "kill -9 the Kafka node leading most partitions; restart it after 30 s (RF 3, min ISR 2, acks=all)",
        30.0,
        Errors::None,
        // The broker failover (~5 s, more when the node was also the controller) and no group
        // session lost meanwhile (a lost one costs another 5-10 s: the CI run that found it).
        10.0,
    ),
    drill(
        "redis-down",
        Fault::RedisDown,
        "Redis unreachable from both APIs for 20 s (connections reset, new ones refused)",
        20.0,
        Errors::None,
        2.0,
    ),
    drill(
        "postgres-restart",
        Fault::PostgresRestart,
        "PostgreSQL fast shutdown and start (every session of every component cut)",
        0.0,
        Errors::DuringOutage { slack_s: 5.0 },
        15.0,
    ),
    drill(
        "postgres-latency",
        Fault::PostgresLatency,
        "+50 ms each way between the APIs and Postgres for 30 s",
        30.0,
        Errors::None,
        2.0,
    ),
    Drill {
        name: "publish-chaos",
        fault: Fault::PublishChaos,
        what: "20 % of the relays' publishes fail, the whole run",
        hold_s: 0.0,
        expect: Expect {
            errors: Errors::None,
            // Depends on how many events the run makes: set by `Drill::at` from the rate and
            // the window (`chaos_lag_bound`).
            max_e2e_lag_s: f64::NAN,
            recovery_s: None,
        },
    },
    drill(
        "garage-down",
        Fault::GarageDown,
        "Garage (S3) stopped for 20 s while attachments are uploaded (10/s through the balancer, beside the ticket load): uploads answer 503 only during the outage and work after it, tickets see no error, every acknowledged upload is delivered once",
        20.0,
        // The ticket load: tickets do not touch the object store. The uploads' own bounds
        // (503 only during the outage + 5 s) are in uploads.rs.
        Errors::None,
        2.0,
    ),
    drill(
        "notifier-db-down",
        Fault::NotifierDbDown,
        "the notifiers' Postgres unreachable for 60 s (connections reset, new ones refused)",
        60.0,
        Errors::None,
        // Events wait the outage out (never dead-lettered), then drain: retry delays are capped
        // at 5 s.
        75.0,
    ),
    drill(
        "relay-kafka-latency",
        Fault::RelayKafkaLatency,
        "+200 ms each way between both relays and every Kafka node for 30 s (fault proxies on the FAULT listeners)",
        30.0,
        Errors::None,
        // A produce round trip becomes ≥ 400 ms plus the followers' fetch; batches grow to
        // carry the rate.
        3.0,
    ),
    drill(
        "relay-kafka-resets",
        Fault::RelayKafkaResets,
        "the relays' Kafka connections reset every 2 s for 20 s (reconnects accepted)",
        20.0,
        Errors::None,
        // An in-flight produce is retried on a new connection (idempotent); a failed one goes
        // back to the outbox with a backoff of 200 ms doubling.
        5.0,
    ),
    drill(
        "relay-kafka-blackhole",
        Fault::RelayKafkaBlackhole,
        "every byte between the relays and Kafka swallowed for 20 s, connections left open",
        20.0,
        Errors::None,
        // The hold, then up to the relay's socket timeout (10 s) for the dead connections to be
        // noticed, then a reconnect (backoff ≤ 1 s) and a publish.
        35.0,
    ),
];

pub fn find(name: &str) -> Option<Drill> {
    ALL.iter().copied().find(|d| d.name == name)
}

/// When the fault starts and ends, in seconds from the measured window's start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Timeline {
    pub fault_at_s: f64,
    pub heal_at_s: f64,
    pub window_s: f64,
}

impl Drill {
    /// The drill as run at `rps` over `window_s` seconds: the bounds that depend on how much
    /// traffic the run makes are fixed here, still before the run.
    pub fn at(mut self, rps: f64, window_s: f64) -> Drill {
        if self.fault == Fault::PublishChaos {
            self.expect.max_e2e_lag_s = chaos_lag_bound(
                rps * window_s,
                CHAOS_RATE,
                RELAY_RETRY_BASE_S,
                RELAY_RETRY_MAX_S,
            );
        }
        self
    }

    pub fn whole_run(&self) -> bool {
        self.fault == Fault::PublishChaos
    }

    /// The window: `fault_at` of steady load (the pre-fault band), the fault, then
    /// `after_heal` of load to recover in.
    pub fn timeline(&self, fault_at: Duration, after_heal: Duration) -> Timeline {
        let (fault_at, after) = (fault_at.as_secs_f64(), after_heal.as_secs_f64());
        if self.whole_run() {
            let window = fault_at + after;
            return Timeline {
                fault_at_s: 0.0,
                heal_at_s: window,
                window_s: window,
            };
        }
        Timeline {
            fault_at_s: fault_at,
            heal_at_s: fault_at + self.hold_s,
            window_s: fault_at + self.hold_s + after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for d in ALL {
            assert_eq!(find(d.name).map(|f| f.fault), Some(d.fault));
        }
        assert_eq!(find("nope").map(|d| d.name), None);
    }

    #[test]
    fn the_window_holds_the_steady_part_the_fault_and_the_recovery() {
        let kafka = find("kafka-leader-kill").unwrap();
        let t = kafka.timeline(Duration::from_secs(20), Duration::from_secs(30));
        assert_eq!((t.fault_at_s, t.heal_at_s, t.window_s), (20.0, 50.0, 80.0));
        let chaos = find("publish-chaos").unwrap();
        let t = chaos.timeline(Duration::from_secs(20), Duration::from_secs(30));
        assert_eq!((t.fault_at_s, t.heal_at_s, t.window_s), (0.0, 50.0, 50.0));
    }

    #[test]
    fn the_chaos_lag_bound_follows_the_backoff_and_the_event_count() {
        // 1000 rps × 50 s: 50,000 · 0.2^10 < 1 % ≤ 50,000 · 0.2^9, so ten failures in a row:
        // 0.2 + 0.4 + 0.8 + 1.6 + 3.2 s, then 5 × 5 s (the cap), + 10 × 0.1 s + 2 s.
        let bound = chaos_lag_bound(50_000.0, 0.2, 0.2, 5.0);
        assert_eq!(bound, 34.2);
        // Fewer events, a shorter worst run: 100 · 0.2^5 > 1 % ≥ 100 · 0.2^6, so k = 6:
        // 0.2 + 0.4 + 0.8 + 1.6 + 3.2 + 5 s, + 0.6 s + 2 s.
        let small = chaos_lag_bound(100.0, 0.2, 0.2, 5.0);
        assert_eq!(small, 13.8);
        let chaos = find("publish-chaos").unwrap().at(1000.0, 50.0);
        assert_eq!(chaos.expect.max_e2e_lag_s, bound);
        let other = find("relay-kill").unwrap();
        assert_eq!(other.at(1000.0, 50.0).expect, other.expect);
    }
}
