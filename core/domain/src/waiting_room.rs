//! The on-sale waiting room's rules (API.md "On-sale front door"): where a
//! new entry goes in the queue, what an entry's status is, and how long its
//! wait is likely to be. The queue itself lives in Redis; these are the
//! decisions, free of I/O.

use chrono::{DateTime, Utc};
use rand::Rng;

crate::vocabulary! {
    /// `QueueEntry.status`.
    pub enum QueueStatus {
        /// In the queue, not yet admitted.
        Waiting = "WAITING",
        /// Admitted: the admission token lets its customer order until it expires.
        Admitted = "ADMITTED",
        /// Admitted once, and the admission has run out.
        Expired = "EXPIRED",
    }
}

/// Places below this are the pre-queue's (random), above it arrivals after
/// the start (in order): the pre-queue is admitted first, and within it
/// joining early gives no edge. 2^50 keeps every place exact in a Redis
/// score (a double) with 2^53 − 2^50 arrivals to spare.
pub const PRE_QUEUE_SPAN: u64 = 1 << 50;

/// Where a new entry goes in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// This place in the pre-queue, drawn at random.
    Drawn(u64),
    /// Behind everyone already there: `PRE_QUEUE_SPAN` + its arrival number.
    InArrivalOrder,
}

/// Anyone joining before sales start draws a uniformly random place in the
/// pre-queue — the same as shuffling the whole pre-queue at the start,
/// without a moment at which everything moves; later arrivals queue first
/// come, first served.
pub fn placement(joined_at: DateTime<Utc>, sales_start: DateTime<Utc>) -> Placement {
    if joined_at < sales_start {
        Placement::Drawn(rand::thread_rng().gen_range(0..PRE_QUEUE_SPAN))
    } else {
        Placement::InArrivalOrder
    }
}

/// An entry's status from its admission (`None`: not admitted yet).
pub fn status(admission_expires: Option<DateTime<Utc>>, now: DateTime<Utc>) -> QueueStatus {
    match admission_expires {
        None => QueueStatus::Waiting,
        Some(expires) if now < expires => QueueStatus::Admitted,
        Some(_) => QueueStatus::Expired,
    }
}

/// Seconds until `ahead` entries are admitted at the rate admissions were
/// observed to go (per minute); before any were observed, or while they are
/// stalled, at the room's configured rate.
pub fn estimated_wait_seconds(ahead: u64, observed_per_minute: f64, configured_per_minute: i32) -> u64 {
    let rate = if observed_per_minute >= 1.0 { observed_per_minute } else { f64::from(configured_per_minute.max(1)) };
    // Saturates: a queue that long waits "forever" either way.
    (ahead as f64 * 60.0 / rate).ceil() as u64
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn early_joiners_draw_random_places_and_later_ones_queue_in_order() {
        let start = Utc::now();
        let early: Vec<u64> = (0..200)
            .map(|_| match placement(start - Duration::seconds(1), start) {
                Placement::Drawn(place) => place,
                Placement::InArrivalOrder => panic!("an early joiner queues in arrival order"),
            })
            .collect();
        assert!(early.iter().all(|p| *p < PRE_QUEUE_SPAN));
        let distinct: std::collections::HashSet<_> = early.iter().collect();
        assert_eq!(distinct.len(), early.len(), "places are drawn, not handed out in order");
        assert!(!early.is_sorted(), "joining earlier gives no earlier place");
        assert_eq!(placement(start, start), Placement::InArrivalOrder);
    }

    #[test]
    fn status_follows_the_admission() {
        let now = Utc::now();
        assert_eq!(status(None, now), QueueStatus::Waiting);
        assert_eq!(status(Some(now + Duration::seconds(1)), now), QueueStatus::Admitted);
        assert_eq!(status(Some(now), now), QueueStatus::Expired);
    }

    #[test]
    fn wait_uses_the_observed_rate_and_falls_back_to_the_configured_one() {
        assert_eq!(estimated_wait_seconds(100, 600.0, 60), 10);
        assert_eq!(estimated_wait_seconds(100, 0.0, 60), 100);
        assert_eq!(estimated_wait_seconds(0, 0.0, 0), 0);
    }
}
