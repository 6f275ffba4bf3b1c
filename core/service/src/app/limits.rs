//! Distributed rate limits: GCRA in Redis, one atomic script per decision,
//! so every replica enforces one shared limit. While Redis is unreachable a
//! per-replica limiter (governor) takes over with the limit divided by the
//! expected replica count, and `ticketing_rate_limit_decisions_total`
//! says so (`decision="local_…"`). A limit that a subject may use many times
//! a second (a scanner's) can be taken from Redis in blocks
//! ([`check_leased`]), so a busy subject costs a round trip a block, not one
//! a request.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};
use ticketing_domain::{Error, error::RateLimitState};

use crate::AppState;

/// A limit: `quota` requests per `window` for each subject (IP, e-mail, user, …).
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub name: &'static str,
    pub quota: u32,
    pub window: Duration,
}

type KeyedLimiter = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// Subjects a fallback limiter remembers before it forgets idle ones.
const LOCAL_SUBJECTS: usize = 100_000;

/// The per-replica fallback limiters, one per limit name.
#[derive(Clone)]
pub struct LocalLimiters {
    limiters: Arc<Mutex<HashMap<&'static str, Arc<KeyedLimiter>>>>,
    expected_replicas: u32,
}

impl LocalLimiters {
    pub fn new(expected_replicas: u32) -> LocalLimiters {
        LocalLimiters { limiters: Arc::default(), expected_replicas: expected_replicas.max(1) }
    }

    /// This replica's share of the limit.
    fn share(&self, limit: Limit) -> u32 {
        (limit.quota / self.expected_replicas).max(1)
    }

    fn limiter(&self, limit: Limit) -> Arc<KeyedLimiter> {
        let mut limiters = self.limiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        limiters
            .entry(limit.name)
            .or_insert_with(|| {
                let share = self.share(limit);
                let burst = NonZeroU32::new(share).unwrap_or(NonZeroU32::MIN);
                let quota = Quota::with_period(limit.window / share).unwrap_or_else(|| Quota::per_second(burst));
                Arc::new(RateLimiter::keyed(quota.allow_burst(burst)))
            })
            .clone()
    }

    /// `Ok` or how long to wait.
    fn check(&self, limit: Limit, subject: &str) -> Result<(), Duration> {
        let limiter = self.limiter(limit);
        if limiter.len() > LOCAL_SUBJECTS {
            limiter.retain_recent();
        }
        limiter
            .check_key(&subject.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// How a request was decided, as `ticketing_rate_limit_decisions_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Counted in Redis.
    Allowed,
    /// Spent from a block this replica took from Redis a moment ago.
    Leased,
    Limited,
    /// Redis unreachable: this replica's share decided.
    LocalAllowed,
    LocalLimited,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Leased => "leased",
            Decision::Limited => "limited",
            Decision::LocalAllowed => "local_allowed",
            Decision::LocalLimited => "local_limited",
        }
    }
}

fn count(limit: Limit, decision: Decision) {
    metrics::counter!("ticketing_rate_limit_decisions_total", "limit" => limit.name, "decision" => decision.as_str())
        .increment(1);
}

/// Counts a request by `subject` against `limit`; RESOURCE_EXHAUSTED past it.
pub async fn check(state: &AppState, limit: Limit, subject: &str) -> Result<(), Error> {
    decide(state, limit, subject, &key(limit, subject), 1).await.map(drop)
}

/// As [`check`], for a limit a subject may use many times a second: this
/// replica takes up to a block of requests from Redis at once and spends
/// them itself for up to [`LEASE_LIFETIME`]. The block follows the
/// subject's pace (what it spent in the last lease, at most twice the last
/// block) up to the limit's share of one lease lifetime, so a subject
/// scanning once a second still asks Redis every time, and a busy one asks
/// about once per lease. Every request spent was counted in Redis, so the
/// subjects' requests in any window stay within the quota plus what a lease
/// lifetime adds to it (`quota × lifetime ÷ window`, one block); requests a
/// replica took and never spent are lost to the subject, at most a block
/// per replica.
pub async fn check_leased(state: &AppState, limit: Limit, subject: &str) -> Result<(), Error> {
    let largest = Leases::largest_block(limit);
    if largest == 1 {
        return check(state, limit, subject).await;
    }
    let key = key(limit, subject);
    let wanted = match state.leases.spend(&key, largest, Instant::now()) {
        Ok(()) => {
            count(limit, Decision::Leased);
            return Ok(());
        }
        Err(wanted) => wanted,
    };
    let granted = decide(state, limit, subject, &key, wanted).await?;
    state.leases.fill(key, granted - 1, Instant::now());
    Ok(())
}

/// One decision in Redis of up to `wanted` requests (the per-replica share
/// decides one without Redis); how many were granted, at least one.
async fn decide(state: &AppState, limit: Limit, subject: &str, key: &str, wanted: u32) -> Result<u32, Error> {
    let (decision, result) = match state.redis.gcra(key, limit.quota, limit.window, wanted).await {
        Ok(d) if d.granted > 0 => (Decision::Allowed, Ok(d.granted)),
        Ok(d) => (Decision::Limited, Err(limited(limit, d.remaining, d.reset, d.retry_after))),
        Err(error) => {
            tracing::warn!(%error, limit.name = limit.name, "Redis unavailable: rate limit enforced per replica");
            match state.local_limits.check(limit, subject) {
                Ok(()) => (Decision::LocalAllowed, Ok(1)),
                Err(wait) => (Decision::LocalLimited, Err(limited(limit, 0, wait, wait))),
            }
        }
    };
    count(limit, decision);
    result
}

/// How long a replica may spend a block it took: also what bounds the
/// block (the limit's share of this long) and so the overshoot.
pub const LEASE_LIFETIME: Duration = Duration::from_secs(1);
/// The largest block, whatever the quota: a lease lost (its replica
/// stopped) costs its subject at most this many requests.
const MAX_BLOCK: u32 = 1_000;
/// Subjects with a lease a replica remembers; the least used are dropped
/// (their unspent requests with them).
const LEASED_SUBJECTS: usize = 100_000;

/// Blocks of requests this replica took from Redis, by limit key.
#[derive(Clone)]
pub struct Leases {
    leases: Arc<quick_cache::sync::Cache<String, Arc<Mutex<Lease>>>>,
}

impl Default for Leases {
    fn default() -> Self {
        Leases { leases: Arc::new(quick_cache::sync::Cache::new(LEASED_SUBJECTS)) }
    }
}

/// One subject's block.
#[derive(Debug)]
struct Lease {
    /// Requests still to spend, until `expires`.
    left: u32,
    spent: u32,
    /// The block last asked for.
    block: u32,
    expires: Instant,
}

impl Leases {
    /// The limit's share of one lease lifetime, the most a block may hold.
    fn largest_block(limit: Limit) -> u32 {
        let share = u128::from(limit.quota) * LEASE_LIFETIME.as_millis() / limit.window.as_millis().max(1);
        u32::try_from(share).unwrap_or(u32::MAX).clamp(1, MAX_BLOCK)
    }

    /// Spends one request of `key`'s block, or says how large a block to
    /// ask Redis for: what the last lease spent if it lapsed, twice the last
    /// block if it ran out first; between 1 and `largest`.
    fn spend(&self, key: &str, largest: u32, now: Instant) -> Result<(), u32> {
        let Some(lease) = self.leases.get(key) else { return Err(1) };
        let mut lease = lease.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if now >= lease.expires {
            return Err(lease.spent.clamp(1, largest));
        }
        if lease.left == 0 {
            return Err(lease.block.saturating_mul(2).clamp(1, largest));
        }
        lease.left -= 1;
        lease.spent += 1;
        Ok(())
    }

    /// Keeps `unspent` requests of a block just granted (one of it is spent
    /// by the request that asked). Blocks that overlap (two requests asked at
    /// once) add up.
    fn fill(&self, key: String, unspent: u32, now: Instant) {
        let fresh = Lease { left: unspent, spent: 1, block: unspent + 1, expires: now + LEASE_LIFETIME };
        let Some(lease) = self.leases.get(key.as_str()) else {
            self.leases.insert(key, Arc::new(Mutex::new(fresh)));
            return;
        };
        let mut lease = lease.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if now < lease.expires && lease.left > 0 {
            lease.left += unspent;
            lease.spent += 1;
            lease.block += unspent + 1;
        } else {
            *lease = fresh;
        }
    }
}

/// Gives back one request [`check`] counted, for limits on failures: the
/// request turned out not to be one (a login that succeeded). Counted before,
/// not after, so that concurrent attempts cannot all slip past the limit.
/// Without Redis nothing is given back (the per-replica fallback cannot).
pub async fn refund(state: &AppState, limit: Limit, subject: &str) {
    if let Err(error) = state.redis.gcra_refund(&key(limit, subject), limit.quota, limit.window).await {
        tracing::debug!(%error, limit.name = limit.name, "a success stayed counted");
    }
}

fn key(limit: Limit, subject: &str) -> String {
    format!("limit:{}:{subject}", limit.name)
}

fn limited(limit: Limit, remaining: u32, reset: Duration, retry_after: Duration) -> Error {
    let state = RateLimitState { policy: limit.name, quota: limit.quota, window: limit.window, remaining, reset };
    Error::rate_limited(state, retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGIN: Limit = Limit { name: "login", quota: 9, window: Duration::from_secs(60) };

    const SCANS: Limit = Limit { name: "scans", quota: 600, window: Duration::from_secs(60) };

    #[test]
    fn a_block_is_the_limits_share_of_a_lease_lifetime() {
        assert_eq!(Leases::largest_block(SCANS), 10);
        assert_eq!(Leases::largest_block(LOGIN), 1, "a slow limit is decided in Redis every time");
        let huge = Limit { quota: u32::MAX, ..SCANS };
        assert_eq!(Leases::largest_block(huge), MAX_BLOCK);
    }

    #[test]
    fn blocks_double_while_they_run_out_and_follow_the_pace_once_they_lapse() {
        let leases = Leases::default();
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        assert_eq!(leases.spend("k", 10, start), Err(1), "nothing leased yet");
        leases.fill("k".into(), 0, start);
        assert_eq!(leases.spend("k", 10, ms(1)), Err(2), "ran out within its lifetime");
        leases.fill("k".into(), 1, ms(1));
        assert_eq!(leases.spend("k", 10, ms(2)), Ok(()));
        assert_eq!(leases.spend("k", 10, ms(3)), Err(4));
        leases.fill("k".into(), 3, ms(3));
        assert_eq!(leases.spend("k", 10, ms(4)), Ok(()));
        assert_eq!(leases.spend("k", 10, ms(5)), Ok(()));
        // Lapsed with one of four left: the next block is what was spent.
        assert_eq!(leases.spend("k", 10, ms(3) + LEASE_LIFETIME), Err(3));
        assert_eq!(leases.spend("k", 10, ms(3) + LEASE_LIFETIME), Err(3), "nothing was spent meanwhile");
        assert_eq!(leases.spend("other", 10, ms(5)), Err(1), "subjects lease apart");
    }

    #[test]
    fn blocks_asked_for_at_once_add_up_and_never_pass_the_largest() {
        let leases = Leases::default();
        let now = Instant::now();
        leases.fill("k".into(), 7, now);
        leases.fill("k".into(), 2, now);
        let spent = (0..20).take_while(|_| leases.spend("k", 10, now).is_ok()).count();
        assert_eq!(spent, 9);
        assert_eq!(leases.spend("k", 10, now), Err(10), "twice 11, kept to the largest");
    }

    #[test]
    fn a_flood_of_invented_subjects_keeps_a_bounded_number_of_leases() {
        let leases = Leases::default();
        let now = Instant::now();
        for n in 0..2 * LEASED_SUBJECTS {
            leases.fill(format!("forged-{n}"), 1, now);
        }
        assert!(leases.leases.len() <= LEASED_SUBJECTS, "{} leases", leases.leases.len());
    }

    #[test]
    fn the_local_fallback_allows_this_replicas_share() {
        let local = LocalLimiters::new(3);
        let admitted = (0..10).filter(|_| local.check(LOGIN, "ana@example.com").is_ok()).count();
        assert_eq!(admitted, 3);
        assert!(local.check(LOGIN, "budi@example.com").is_ok(), "subjects are limited separately");
        let wait = local.check(LOGIN, "ana@example.com").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20), "{wait:?}");
    }
}
