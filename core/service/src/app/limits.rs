//! Fixed-window counters in Redis, shared by all replicas. The distributed
//! GCRA limiter of the protection issue replaces this.

use std::time::Duration;

use ticketing_domain::{Code, Error};

use crate::AppState;

/// Counts a hit against `key` and refuses it past `limit` per `window`.
/// When Redis is unreachable the request is let through (logged): losing
/// Redis degrades protection, never availability.
pub async fn check(state: &AppState, key: &str, limit: u64, window: Duration) -> Result<(), Error> {
    match state.redis.hit_window(key, window).await {
        Ok((count, _)) if count <= limit => Ok(()),
        Ok((_, remaining)) => Err(Error::new(Code::ResourceExhausted, "too many attempts, retry later")
            .with_reason("RATE_LIMITED")
            .with_retry_after(remaining.max(Duration::from_secs(1)))),
        Err(error) => {
            tracing::warn!(%error, limit.key = key, "rate limit skipped: Redis unavailable");
            Ok(())
        }
    }
}
