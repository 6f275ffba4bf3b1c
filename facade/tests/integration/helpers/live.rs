//! Live streams as clients read them: Server-Sent Events (as `EventSource`
//! parses them) and gRPC-Web server streams (as a browser's fetch reads
//! them), from real HTTP/1.1 connections.

use std::{pin::Pin, time::Duration};

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use prost::Message;
use reqwest::StatusCode;
use serde_json::Value;

/// How long a test waits for a stream's next message before it fails: a
/// guard against hanging, never a measure of speed.
pub const STREAM_PATIENCE: Duration = Duration::from_secs(30);

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// `message` unless the event was named.
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data))
    }
}

pub struct SseStream {
    body: Body,
    buffer: String,
    /// Bytes of the body read so far.
    pub bytes: usize,
}

/// Opens `url` as `EventSource` would; the answer's status and headers,
/// and the stream when it is one.
pub async fn open_sse(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    last_event_id: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Option<SseStream>, String) {
    let mut request = http.get(url).header("accept", "text/event-stream");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.expect("stream request answered");
    let (status, headers) = (response.status(), response.headers().clone());
    let is_stream =
        headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("text/event-stream"));
    if !is_stream {
        return (status, headers, None, response.text().await.unwrap_or_default());
    }
    let stream = SseStream { body: Box::pin(response.bytes_stream()), buffer: String::new(), bytes: 0 };
    (status, headers, Some(stream), String::new())
}

impl SseStream {
    /// The next event (comments skipped); `None` once the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent { event: "message".into(), id: None, data: String::new() };
                let mut fields = 0;
                for line in block.lines() {
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match name {
                        "event" => event.event = value.to_owned(),
                        "id" => event.id = Some(value.to_owned()),
                        "data" if event.data.is_empty() => event.data = value.to_owned(),
                        "data" => event.data = format!("{}\n{value}", event.data),
                        _ => continue,
                    }
                    fields += 1;
                }
                if fields == 0 {
                    continue; // a heartbeat comment or a bare retry
                }
                return Some(event);
            }
            let chunk = tokio::time::timeout(STREAM_PATIENCE, self.body.next()).await.expect("the stream went quiet");
            match chunk {
                Some(Ok(bytes)) => {
                    self.bytes += bytes.len();
                    self.buffer.push_str(&String::from_utf8_lossy(&bytes));
                }
                _ => return None,
            }
        }
    }

    /// Reads until a message's JSON satisfies `until`; returns it.
    pub async fn until(&mut self, until: impl Fn(&Value) -> bool) -> Value {
        loop {
            let event = self.next().await.expect("the stream ended before the awaited state");
            assert_eq!(event.event, "message", "unexpected event: {event:?}");
            let json = event.json();
            if until(&json) {
                return json;
            }
        }
    }
}

/// A gRPC-Web request body: one uncompressed data frame.
pub fn grpc_web_frame(message: &impl Message) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(bytes.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(&bytes);
    frame
}

/// A gRPC-Web server stream as a browser reads it: data frames, then a
/// trailers frame.
pub struct GrpcWebStream {
    body: Body,
    buffer: BytesMut,
}

/// What a gRPC-Web stream gives next.
pub enum GrpcWebItem<T> {
    Message(T),
    /// The trailers frame (`grpc-status: …` lines).
    Trailers(String),
}

/// POSTs `request` to the gRPC method at `url` as grpc-web-javascript does.
pub async fn open_grpc_web(http: &reqwest::Client, url: &str, request: &impl Message) -> GrpcWebStream {
    let response = http
        .post(url)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(grpc_web_frame(request))
        .send()
        .await
        .expect("gRPC-Web call answered");
    assert_eq!(response.status(), StatusCode::OK);
    GrpcWebStream { body: Box::pin(response.bytes_stream()), buffer: BytesMut::new() }
}

impl GrpcWebStream {
    pub async fn next<T: Message + Default>(&mut self) -> Option<GrpcWebItem<T>> {
        loop {
            if self.buffer.len() >= 5 {
                let flag = self.buffer[0];
                let length = u32::from_be_bytes(self.buffer[1..5].try_into().expect("4 bytes")) as usize;
                if self.buffer.len() >= 5 + length {
                    self.buffer.advance(5);
                    let payload = self.buffer.split_to(length);
                    return Some(if flag & 0x80 != 0 {
                        GrpcWebItem::Trailers(String::from_utf8_lossy(&payload).into_owned())
                    } else {
                        GrpcWebItem::Message(T::decode(payload).expect("a message"))
                    });
                }
            }
            let chunk = tokio::time::timeout(STREAM_PATIENCE, self.body.next()).await.expect("the stream went quiet");
            match chunk {
                Some(Ok(bytes)) => self.buffer.extend_from_slice(&bytes),
                _ => return None,
            }
        }
    }

    /// Reads until a message satisfies `until`; returns it.
    pub async fn until<T: Message + Default>(&mut self, until: impl Fn(&T) -> bool) -> T {
        loop {
            match self.next::<T>().await {
                Some(GrpcWebItem::Message(message)) if until(&message) => return message,
                Some(GrpcWebItem::Message(_)) => {}
                Some(GrpcWebItem::Trailers(trailers)) => panic!("the stream ended: {trailers}"),
                None => panic!("the stream ended without trailers"),
            }
        }
    }
}

/// Reads a tonic stream until a message satisfies `until`.
pub async fn grpc_until<T>(stream: &mut tonic::Streaming<T>, until: impl Fn(&T) -> bool) -> T {
    loop {
        let next = tokio::time::timeout(STREAM_PATIENCE, stream.message()).await.expect("the stream went quiet");
        match next {
            Ok(Some(message)) if until(&message) => return message,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended before the awaited state"),
            Err(status) => panic!("the stream failed: {status:?}"),
        }
    }
}
