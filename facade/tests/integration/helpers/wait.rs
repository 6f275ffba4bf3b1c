//! Waiting for what happens asynchronously, bounded by attempts.

use std::time::Duration;

/// Retries `check` until it returns Some (reads from the replica trail the
/// primary by a few milliseconds); bounded by attempts, not wall-clock.
pub async fn eventually<T, F, Fut>(check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(100, Duration::from_millis(20), check).await
}

/// [`eventually`] with its own number of tries and pause between them.
pub async fn eventually_within<T, F, Fut>(tries: usize, pause: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..tries {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(pause).await;
    }
    panic!("condition never held");
}
