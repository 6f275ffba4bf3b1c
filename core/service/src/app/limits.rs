//! Distributed rate limits: GCRA in Redis, one atomic script per decision,
//! so every replica enforces one shared limit. While Redis is unreachable a
//! per-replica limiter (governor) takes over with the limit divided by the
//! expected replica count, and `ticketing_rate_limit_decisions_total`
//! says so (`decision="local_…"`).

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
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

/// Counts a request by `subject` against `limit`; RESOURCE_EXHAUSTED past it.
pub async fn check(state: &AppState, limit: Limit, subject: &str) -> Result<(), Error> {
    let key = key(limit, subject);
    let (decision, result) = match state.redis.gcra(&key, limit.quota, limit.window).await {
        Ok(d) if d.allowed => ("allowed", Ok(())),
        Ok(d) => ("limited", Err(limited(limit, d.remaining, d.reset, d.retry_after))),
        Err(error) => {
            tracing::warn!(%error, limit.name = limit.name, "Redis unavailable: rate limit enforced per replica");
            match state.local_limits.check(limit, subject) {
                Ok(()) => ("local_allowed", Ok(())),
                Err(wait) => ("local_limited", Err(limited(limit, 0, wait, wait))),
            }
        }
    };
    metrics::counter!("ticketing_rate_limit_decisions_total", "limit" => limit.name, "decision" => decision)
        .increment(1);
    result
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
