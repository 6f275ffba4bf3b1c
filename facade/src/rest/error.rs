//! Google's JSON error form for every REST failure, built from the same
//! `tonic::Status` the gRPC transport sends, so both say the same thing.

use std::collections::BTreeMap;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header::RETRY_AFTER},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::Value;
use ticketing_domain::Error;
use ticketing_service::grpc::status::{
    DOMAIN, DatabaseOverloaded, HEADERS_FROM_METADATA, StatusParts, parts, to_status,
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
        let body = ErrorBody::of(&parts);
        (body.error.code, serde_json::to_value(&body).unwrap_or(Value::Null))
    }
}

/// Google's JSON error, serialized straight from the status's parts (a
/// `serde_json::Value` tree would be built, allocated and dropped on every
/// failure: 404s, sold-out answers, shed requests). Fields are in
/// alphabetical order, as a `Value`'s map prints them.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorFields<'a>,
}

#[derive(Serialize)]
pub struct ErrorFields<'a> {
    pub code: u16,
    details: Vec<Detail<'a>>,
    message: &'a str,
    status: &'static str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Detail<'a> {
    ErrorInfo(ErrorInfoDetail<'a>),
    BadRequest(BadRequestDetail<'a>),
}

#[derive(Serialize)]
struct ErrorInfoDetail<'a> {
    #[serde(rename = "@type")]
    type_url: &'static str,
    domain: &'a str,
    metadata: BTreeMap<&'a str, &'a str>,
    reason: &'a str,
}

#[derive(Serialize)]
struct BadRequestDetail<'a> {
    #[serde(rename = "@type")]
    type_url: &'static str,
    #[serde(rename = "fieldViolations")]
    field_violations: Vec<FieldViolation<'a>>,
}

#[derive(Serialize)]
struct FieldViolation<'a> {
    description: &'a str,
    field: &'a str,
}

impl<'a> ErrorBody<'a> {
    pub fn of(parts: &'a StatusParts) -> ErrorBody<'a> {
        // Statuses tonic makes itself (unimplemented methods) carry no
        // ErrorInfo; clients may still rely on one being there.
        let info = parts.details.error_info();
        let info = ErrorInfoDetail {
            type_url: "type.googleapis.com/google.rpc.ErrorInfo",
            domain: info.map_or(DOMAIN, |info| info.domain.as_str()),
            metadata: info
                .map(|info| info.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
                .unwrap_or_default(),
            reason: info.map_or(parts.code.name(), |info| info.reason.as_str()),
        };
        let mut details = vec![Detail::ErrorInfo(info)];
        details.extend(parts.details.bad_request().map(|bad| {
            Detail::BadRequest(BadRequestDetail {
                type_url: "type.googleapis.com/google.rpc.BadRequest",
                field_violations: bad
                    .field_violations
                    .iter()
                    .map(|v| FieldViolation { description: &v.description, field: &v.field })
                    .collect(),
            })
        }));
        ErrorBody {
            error: ErrorFields {
                code: parts.http_status(),
                details,
                message: &parts.message,
                status: parts.code.name(),
            },
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        // Read back once: decoding the status's details is most of the cost.
        let parts = parts(&self.0);
        let body = ErrorBody::of(&parts);
        let status = StatusCode::from_u16(body.error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = parts.retry_after_secs {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if parts.is_database_overload() {
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

#[cfg(test)]
mod tests {
    use ticketing_domain::Reason;

    use super::*;

    /// The bytes clients have always been sent: keys in alphabetical order
    /// (as a `serde_json::Value` printed them), ErrorInfo first, BadRequest
    /// only when a field was wrong.
    #[test]
    fn the_error_body_is_googles_json_error_with_its_keys_in_order() {
        let error = Error::invalid_field("quantity", "must be at least 1")
            .with_reason(Reason::OrderLimitExceeded)
            .with_metadata("ticketCategoryId", "c1")
            .with_metadata("limit", "4");
        let read = parts(&to_status(error));
        let json = serde_json::to_string(&ErrorBody::of(&read)).unwrap();
        assert_eq!(
            json,
            r#"{"error":{"code":400,"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"ticketing","metadata":{"limit":"4","ticketCategoryId":"c1"},"reason":"ORDER_LIMIT_EXCEEDED"},{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"description":"must be at least 1","field":"quantity"}]}],"message":"invalid request: quantity: must be at least 1","status":"INVALID_ARGUMENT"}}"#
        );

        let plain = parts(&Status::unimplemented("no such method"));
        let json = serde_json::to_string(&ErrorBody::of(&plain)).unwrap();
        assert_eq!(
            json,
            r#"{"error":{"code":501,"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"ticketing","metadata":{},"reason":"UNIMPLEMENTED"}],"message":"no such method","status":"UNIMPLEMENTED"}}"#
        );
    }
}
