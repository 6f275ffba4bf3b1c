//! The Redis fast path for idempotency keys (IETF httpapi idempotency-key
//! draft). Redis only answers quickly "in flight", "done" or "reused"; the
//! database's unique (user, key) index is what guarantees one order per key,
//! so losing Redis never makes a second order.

use std::time::Duration;
use ticketing_domain::Reason;

use ticketing_domain::{Code, Error};
use uuid::Uuid;

use crate::AppState;

/// Longer than a request normally takes (pool timeout plus the order's
/// transaction), short enough that a client whose replica was killed
/// mid-request is not told "in progress" for long (tests/scaleout.rs). A
/// request outliving it is still safe: the database's unique index decides.
const IN_FLIGHT_TTL: Duration = Duration::from_secs(10);

/// This request holds the key's in-flight marker (or Redis is unavailable
/// and the database alone decides).
pub struct Claim(Option<String>);

pub enum Begin {
    Proceed(Claim),
    /// A request with this key and body already made this order.
    Replay(Uuid),
}

fn redis_key(user_id: Uuid, key: &str) -> String {
    format!("idem:{user_id}:{key}")
}

pub fn reused() -> Error {
    Error::new(Code::FailedPrecondition, "this idempotency key was used with a different request")
        .with_reason(Reason::IdempotencyKeyReused)
}

pub async fn begin(state: &AppState, user_id: Uuid, key: &str, digest: &str) -> Result<Begin, Error> {
    let redis_key = redis_key(user_id, key);
    match state.redis.set_if_absent(&redis_key, &format!("pending:{digest}"), IN_FLIGHT_TTL).await {
        Ok(true) => return Ok(Begin::Proceed(Claim(Some(redis_key)))),
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(%error, "idempotency fast path skipped: Redis unavailable");
            return Ok(Begin::Proceed(Claim(None)));
        }
    }
    match state.redis.get(&redis_key).await {
        Ok(Some(value)) => decide(&value, digest),
        // Expired between the two calls, or Redis went away: the database decides.
        Ok(None) | Err(_) => Ok(Begin::Proceed(Claim(None))),
    }
}

fn decide(value: &str, digest: &str) -> Result<Begin, Error> {
    if let Some(pending) = value.strip_prefix("pending:") {
        if pending != digest {
            return Err(reused());
        }
        return Err(Error::new(Code::Aborted, "a request with this idempotency key is still in progress")
            .with_reason(Reason::IdempotencyKeyInUse)
            .with_retry_after(Duration::from_secs(1)));
    }
    match value.strip_prefix("done:").and_then(|rest| rest.split_once(':')) {
        Some((done, _)) if done != digest => Err(reused()),
        Some((_, order_id)) => Uuid::parse_str(order_id).map(Begin::Replay).map_err(Error::internal),
        None => Err(Error::internal(format!("unreadable idempotency record {value:?}"))),
    }
}

/// Records the outcome so retries replay it without touching the database.
pub async fn complete(state: &AppState, claim: Claim, digest: &str, order_id: Uuid) {
    if let Some(key) = claim.0 {
        let done = format!("done:{digest}:{order_id}");
        if let Err(error) = state.redis.set_with_ttl(&key, &done, state.config.idempotency_ttl).await {
            tracing::warn!(%error, "idempotency record not cached");
        }
    }
}

/// Frees the key after a failure (sold out, invalid…) so a retry is decided afresh.
pub async fn abandon(state: &AppState, claim: Claim) {
    if let Some(key) = claim.0 {
        let _ = state.redis.delete(&key).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_decide_replay_reuse_and_in_flight() {
        let id = Uuid::now_v7();
        assert!(matches!(decide(&format!("done:abc:{id}"), "abc"), Ok(Begin::Replay(found)) if found == id));
        assert_eq!(decide(&format!("done:abc:{id}"), "xyz").err().unwrap().reason, Some(Reason::IdempotencyKeyReused));
        assert_eq!(decide("pending:abc", "abc").err().unwrap().reason, Some(Reason::IdempotencyKeyInUse));
        assert_eq!(decide("pending:abc", "xyz").err().unwrap().reason, Some(Reason::IdempotencyKeyReused));
    }
}
