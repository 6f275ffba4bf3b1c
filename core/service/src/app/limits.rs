//! Fixed-window counters in Redis, shared by all replicas. The distributed
//! GCRA limiter of the protection issue replaces this.

use std::time::Duration;

use ticketing_domain::{Code, Error};

use crate::AppState;

/// Counts a hit by `subject` against the limit `name` and refuses it past
/// `limit` per `window`. When Redis is unreachable the request is let through
/// (logged and counted): losing Redis degrades protection, never availability.
pub async fn check(
    state: &AppState,
    name: &'static str,
    subject: &str,
    limit: u64,
    window: Duration,
) -> Result<(), Error> {
    let key = format!("{name}:{subject}");
    let (decision, result) = match state.redis.hit_window(&key, window).await {
        Ok((count, _)) if count <= limit => ("allowed", Ok(())),
        Ok((_, remaining)) => (
            "limited",
            Err(Error::new(Code::ResourceExhausted, "too many attempts, retry later")
                .with_reason("RATE_LIMITED")
                .with_retry_after(remaining.max(Duration::from_secs(1)))),
        ),
        Err(error) => {
            tracing::warn!(%error, limit.name = name, "rate limit skipped: Redis unavailable");
            ("skipped_redis_down", Ok(()))
        }
    };
    metrics::counter!("ticketing_rate_limit_decisions_total", "limit" => name, "decision" => decision).increment(1);
    result
}
