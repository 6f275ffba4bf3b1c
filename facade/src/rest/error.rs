//! Google's JSON error form for every REST failure, built from the same
//! `tonic::Status` the gRPC transport sends, so both say the same thing.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header::RETRY_AFTER},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use ticketing_domain::Error;
use ticketing_service::grpc::status::{
    DOMAIN, DatabaseOverloaded, HEADERS_FROM_METADATA, is_database_overload, parts, to_status,
};
use tonic::Status;

#[derive(Debug)]
pub struct RestError(pub Status);

impl From<Status> for RestError {
    fn from(status: Status) -> Self {
        RestError(status)
    }
}

impl From<Error> for RestError {
    fn from(error: Error) -> Self {
        RestError(to_status(error))
    }
}

impl RestError {
    /// The HTTP status and Google's JSON error body (`{"error": {…}}`).
    pub fn json(&self) -> (u16, Value) {
        let parts = parts(&self.0);
        let http = parts.http_status();
        let mut details: Vec<Value> = Vec::new();
        // Statuses tonic makes itself (unimplemented methods) carry no
        // ErrorInfo; clients may still rely on one being there.
        let info = parts.details.error_info().cloned().unwrap_or_else(|| {
            tonic_types::ErrorInfo::new(parts.code.name(), DOMAIN, std::collections::HashMap::<String, String>::new())
        });
        details.push(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": info.reason,
            "domain": info.domain,
            "metadata": info.metadata,
        }));
        if let Some(bad) = parts.details.bad_request() {
            let violations: Vec<Value> = bad
                .field_violations
                .iter()
                .map(|v| json!({ "field": v.field, "description": v.description }))
                .collect();
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": violations,
            }));
        }
        let body = json!({ "error": {
            "code": http,
            "status": parts.code.name(),
            "message": parts.message,
            "details": details,
        }});
        (http, body)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let (http, body) = self.json();
        let parts = parts(&self.0);
        let status = StatusCode::from_u16(http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = parts.retry_after_secs {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if is_database_overload(&self.0) {
            response.extensions_mut().insert(DatabaseOverloaded);
        }
        for key in HEADERS_FROM_METADATA {
            if let Some(value) = self.0.metadata().get(*key).and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
                response.headers_mut().insert(*key, value);
            }
        }
        response
    }
}
