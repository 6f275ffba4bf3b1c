//! The live streams as Server-Sent Events: each `data:` the proto3 JSON of
//! one message (encoded once per state for all watchers), `id:` the state's
//! digest, so a client reconnecting with `Last-Event-ID` is sent the current
//! state only when it differs from what it has. Comments keep idle streams
//! open through proxies; a drain ends the stream with a `close` event
//! carrying the error, and the browser's `EventSource` reconnects by itself.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    http::{HeaderValue, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::StreamExt;
use serde::Serialize;
use ticketing_service::app::live::{Pushed, Watch};

use super::error::RestError;

/// A comment this often keeps proxies and load balancers from closing an
/// idle stream (nginx's and most balancers' idle timeouts are 60 s).
const HEARTBEAT: Duration = Duration::from_secs(15);
/// What `EventSource` waits before reconnecting, at least.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);
/// `Last-Event-ID` is ours (a hex digest); anything longer is not.
const MAX_LAST_EVENT_ID: usize = 64;

pub fn events<T: Serialize + Send + Sync + 'static>(watch: Watch<T>, last_event_id: Option<&HeaderValue>) -> Response {
    let last_event_id = last_event_id
        .and_then(|value| value.to_str().ok())
        .filter(|id| id.len() <= MAX_LAST_EVENT_ID)
        .map(str::to_owned);
    if watch.has_final(last_event_id.as_deref()) {
        // Nothing more will come (an expired queue entry): 204 is what ends
        // an EventSource's reconnects.
        return StatusCode::NO_CONTENT.into_response();
    }
    // Up to twice the base, at random: a drained replica's watchers do not
    // all come back to the others in the same instant.
    let reconnect_after = RECONNECT_AFTER.mul_f64(1.0 + rand::random::<f64>());
    let stream = watch.resuming_from(last_event_id).into_stream().enumerate().map(move |(index, item)| {
        let event = match item {
            Ok(pushed) => message(&pushed),
            Err(error) => Event::default().event("close").data(RestError::from(error).json().1.to_string()),
        };
        Ok::<_, Infallible>(if index == 0 { event.retry(reconnect_after) } else { event })
    });
    let mut response = Sse::new(stream).keep_alive(KeepAlive::new().interval(HEARTBEAT)).into_response();
    let headers = response.headers_mut();
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    // nginx passes the stream through unbuffered (the shipped config says so
    // too; this covers one that does not).
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn message<T: Serialize>(pushed: &Arc<Pushed<T>>) -> Event {
    Event::default().id(pushed.id.as_str()).data(pushed.json())
}
