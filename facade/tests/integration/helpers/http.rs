//! Answers as the tests read them, and small request helpers.

use reqwest::StatusCode;
use serde_json::Value;
use tonic::metadata::MetadataValue;

/// A gRPC request with a bearer token.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().expect("ascii token");
    request.metadata_mut().insert("authorization", value);
    request
}

#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Response {
    /// Status, headers and the JSON body (Null if none) of an answer.
    pub async fn read(response: reqwest::Response) -> Response {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body read");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Response { status, headers, body }
    }

    /// Asserts the documented error shape and returns its ErrorInfo reason.
    pub fn error_reason(&self, http: u16, status: &str) -> String {
        assert_eq!(self.status.as_u16(), http, "unexpected status; body: {}", self.body);
        let error = &self.body["error"];
        assert_eq!(error["code"], http, "body: {}", self.body);
        assert_eq!(error["status"], status, "body: {}", self.body);
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "body: {}", self.body);
        let info = error["details"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"))
            .unwrap_or_else(|| panic!("no ErrorInfo in {}", self.body));
        assert_eq!(info["domain"], "ticketing");
        info["reason"].as_str().expect("reason").to_owned()
    }

    /// Field paths of the BadRequest detail.
    pub fn bad_fields(&self) -> Vec<String> {
        self.body["error"]["details"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest"))
            .map(|b| {
                b["fieldViolations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| v["field"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// POSTs `body` as JSON with a bearer token; returns the JSON answer.
pub async fn post_json(http: &reqwest::Client, url: &str, token: &str, body: &Value) -> Value {
    http.post(url).bearer_auth(token).json(body).send().await.expect("sent").json().await.expect("JSON answer")
}

/// The value of the first sample whose line starts with `prefix` (0 when none).
/// The sample of the series `prefix` names; panics when it is not exported
/// (unlike [`metric_sample`], which reads a missing series as 0).
pub fn exported_sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{prefix} is not exported"))
}

pub fn metric_sample(text: &str, prefix: &str) -> f64 {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}
