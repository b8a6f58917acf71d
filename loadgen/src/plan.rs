//! The arrival schedule and the request sequence. Request n is due at `t0 + n / rps` whatever
//! happened to earlier requests (open model); which operation and which user it gets follows
//! from `(seed, n)` alone, so the same seed gives the same sequence.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::config::{Mix, Op};

/// Hands out arrival slots to whichever worker is free.
pub struct Pacer {
    t0: Instant,
    /// `t0` on the wall clock, Unix µs: intended starts travel to the pipeline as wall time.
    t0_unix_us: i64,
    interval: Duration,
    total: u64,
    next: AtomicU64,
}

/// One arrival: its number and intended start.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub n: u64,
    pub offset: Duration,
    pub due: Instant,
}

impl Pacer {
    /// `t0 + n / rps` for n in `0 .. rps × span`.
    pub fn new(t0: Instant, rps: f64, span: Duration) -> Self {
        let since_t0 = Instant::now().saturating_duration_since(t0);
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        Self {
            t0,
            t0_unix_us: now_us - since_t0.as_micros() as i64,
            interval: Duration::from_secs_f64(1.0 / rps),
            total: (rps * span.as_secs_f64()).floor() as u64,
            next: AtomicU64::new(0),
        }
    }

    pub fn t0(&self) -> Instant {
        self.t0
    }

    /// The schedule's start on the wall clock, Unix µs.
    pub fn t0_unix_us(&self) -> i64 {
        self.t0_unix_us
    }

    /// A slot's intended start on the wall clock, Unix µs.
    pub fn unix_us(&self, slot: &Slot) -> i64 {
        self.t0_unix_us + slot.offset.as_micros() as i64
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Time between two slots.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The next slot, or None when the schedule is exhausted.
    pub fn take(&self) -> Option<Slot> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if n >= self.total {
            return None;
        }
        let offset = self.interval.mul_f64(n as f64);
        Some(Slot {
            n,
            offset,
            due: self.t0 + offset,
        })
    }

    /// Slots handed out so far (capped at the total).
    pub fn taken(&self) -> u64 {
        self.next.load(Ordering::Relaxed).min(self.total)
    }
}

/// The `X-Request-Id` of a slot's requests: `<run prefix>:<slot>:<intended start, Unix µs>`. The
/// API carries a request id into the outbox event and the Kafka headers, so after the run each
/// event's intended start is known exactly (issue #17.9).
pub fn request_id(prefix: &str, n: u64, intended_unix_us: i64) -> String {
    format!("{prefix}:{n}:{intended_unix_us}")
}

/// The slot and intended start (Unix µs) of a request id this run's [`request_id`] made.
pub fn parse_request_id(prefix: &str, id: &str) -> Option<(u64, i64)> {
    let rest = id.strip_prefix(prefix)?.strip_prefix(':')?;
    let (n, us) = rest.split_once(':')?;
    Some((n.parse().ok()?, us.parse().ok()?))
}

/// splitmix64: a tiny, well-mixed hash; `(seed, n)` → a reproducible pseudo-random number.
pub fn mix64(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What request n is: operation and user index.
pub fn choose(seed: u64, n: u64, mix: &Mix, users: usize, retry_share: f64) -> (Op, usize) {
    let r = mix64(seed, n);
    let op = mix.pick((r % 100) as u32);
    let user = ((r >> 8) % users as u64) as usize;
    let retry_roll = ((r >> 40) % 10_000) as f64 / 10_000.0;
    let op = if op == Op::Create && retry_roll < retry_share {
        Op::CreateRetry
    } else {
        op
    };
    (op, user)
}

/// Tickets known per simulated user: get picks any, close takes an open one.
pub struct Users {
    pub prefix: String,
    tickets: Vec<Mutex<Known>>,
}

#[derive(Default)]
struct Known {
    all: Vec<Uuid>,
    open: Vec<Uuid>,
    /// Closes answered 200 (the audit checks each has its event).
    closed: Vec<Uuid>,
}

impl Users {
    pub fn new(prefix: &str, count: usize) -> Self {
        Self {
            prefix: prefix.to_string(),
            tickets: (0..count).map(|_| Mutex::new(Known::default())).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.tickets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
    }

    /// The X-User-Id of user i (alphabet allowed by the API).
    pub fn id(&self, i: usize) -> String {
        format!("{}-u{i}", self.prefix)
    }

    pub fn add(&self, i: usize, ticket: Uuid) {
        if let Ok(mut k) = self.tickets[i].lock() {
            k.all.push(ticket);
            k.open.push(ticket);
        }
    }

    /// A close of `ticket` by user i was answered 200.
    pub fn closed(&self, i: usize, ticket: Uuid) {
        if let Ok(mut k) = self.tickets[i].lock() {
            k.closed.push(ticket);
        }
    }

    /// Every acknowledged create and close so far, by ticket id.
    pub fn acknowledged(&self) -> crate::audit::Acknowledged {
        let mut acked = crate::audit::Acknowledged::default();
        for k in &self.tickets {
            if let Ok(k) = k.lock() {
                acked.creates.extend_from_slice(&k.all);
                acked.closes.extend_from_slice(&k.closed);
            }
        }
        acked
    }

    /// Tickets created (and acknowledged) so far, over all users.
    pub fn known(&self) -> usize {
        self.tickets
            .iter()
            .filter_map(|k| k.lock().ok().map(|k| k.all.len()))
            .sum()
    }

    /// Any ticket of user i, picked by `r`.
    pub fn any(&self, i: usize, r: u64) -> Option<Uuid> {
        let k = self.tickets[i].lock().ok()?;
        (!k.all.is_empty()).then(|| k.all[(r % k.all.len() as u64) as usize])
    }

    /// Takes an open ticket of user i (it is about to be closed).
    pub fn take_open(&self, i: usize) -> Option<Uuid> {
        self.tickets[i].lock().ok()?.open.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_round_trip_and_other_runs_do_not_parse() {
        let id = request_id("lg-0123456789ab", 42, 1_764_222_222_123_456);
        assert_eq!(id, "lg-0123456789ab:42:1764222222123456");
        assert!(
            id.len() <= 128
                && id
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b':' || c == b'-')
        );
        assert_eq!(
            parse_request_id("lg-0123456789ab", &id),
            Some((42, 1_764_222_222_123_456))
        );
        assert_eq!(parse_request_id("lg-ffffffffffff", &id), None);
        assert_eq!(
            parse_request_id("lg-0123456789ab", "lg-0123456789ab:x:1"),
            None
        );
    }

    #[test]
    fn slots_follow_the_rate_regardless_of_who_takes_them() {
        let t0 = Instant::now();
        let p = Pacer::new(t0, 1000.0, Duration::from_secs(2));
        assert_eq!(p.total(), 2000);
        let s = p.take().unwrap();
        assert_eq!((s.n, s.offset), (0, Duration::ZERO));
        for _ in 1..1500 {
            p.take().unwrap();
        }
        let s = p.take().unwrap();
        assert_eq!(s.n, 1500);
        assert_eq!(s.offset, Duration::from_millis(1500));
        assert_eq!(s.due, t0 + Duration::from_millis(1500));
        for _ in 1501..2000 {
            p.take().unwrap();
        }
        assert!(p.take().is_none());
        assert_eq!(p.taken(), 2000);
    }

    #[test]
    fn the_sequence_follows_the_seed_and_the_mix() {
        let mix: Mix = "create=20,get=40,list=30,close=10".parse().unwrap();
        let a: Vec<_> = (0..1000).map(|n| choose(7, n, &mix, 50, 0.0)).collect();
        let b: Vec<_> = (0..1000).map(|n| choose(7, n, &mix, 50, 0.0)).collect();
        let c: Vec<_> = (0..1000).map(|n| choose(8, n, &mix, 50, 0.0)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let gets = a.iter().filter(|(op, _)| *op == Op::Get).count();
        assert!((330..470).contains(&gets), "~40% gets: {gets}");
        assert!(a.iter().all(|(_, u)| *u < 50));
    }

    #[test]
    fn retry_share_turns_creates_into_retries() {
        let mix: Mix = "create=100".parse().unwrap();
        let retries = (0..10_000)
            .filter(|n| choose(1, *n, &mix, 10, 0.1).0 == Op::CreateRetry)
            .count();
        assert!((800..1200).contains(&retries), "~10%: {retries}");
    }
}
