//! Notification delivery as Midtrans does it: POST the JSON, retry a failed attempt with
//! backoff, and keep a log of every attempt for tests to inspect.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::app::{AppState, lock};

/// Retries after the first attempt; the waits are 100, 200, 400, 800 and 1600 ms.
const MAX_RETRIES: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Clone, Debug, Serialize)]
pub struct DeliveryAttempt {
    pub order_id: String,
    pub transaction_status: String,
    pub url: String,
    /// Which of the `copies` this attempt belongs to, from 1.
    pub copy: u32,
    /// 1 for the first try, up to 1 + MAX_RETRIES.
    pub attempt: u32,
    /// The HTTP status answered, if the request got an answer.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// In the background, waits `delay`, then posts `copies` copies of `notification` to every
/// URL at once (concurrent duplicates are what a receiver must survive).
pub fn spawn(app: &AppState, urls: &[String], notification: Value, copies: u32, delay: Duration) {
    let notification = Arc::new(notification);
    for url in urls {
        for copy in 1..=copies {
            let (app, url, notification) = (app.clone(), url.clone(), Arc::clone(&notification));
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                deliver(&app, &url, &notification, copy).await;
            });
        }
    }
}

async fn deliver(app: &AppState, url: &str, notification: &Value, copy: u32) {
    let field = |name: &str| notification[name].as_str().unwrap_or_default().to_string();
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=MAX_RETRIES + 1 {
        let (status, error) = match app.http.post(url).json(notification).send().await {
            Ok(response) => (Some(response.status()), None),
            Err(e) => (None, Some(error_chain(&e))),
        };
        tracing::debug!(url, attempt, status = ?status, error, "notification attempt");
        lock(&app.deliveries).push(DeliveryAttempt {
            order_id: field("order_id"),
            transaction_status: field("transaction_status"),
            url: url.to_string(),
            copy,
            attempt,
            status: status.map(|s| s.as_u16()),
            error,
            at: Utc::now(),
        });
        if status.is_some_and(|s| s.is_success()) {
            return;
        }
        if attempt <= MAX_RETRIES {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    tracing::warn!(url, order.id = field("order_id"), "notification not delivered; giving up");
}

/// reqwest's own message hides the cause ("connection refused" sits in the sources).
fn error_chain(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
