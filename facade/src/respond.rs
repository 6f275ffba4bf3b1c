//! Answers made outside any service (routing, shedding), shaped for the
//! caller's transport. Shared by the server's fallback and the overload
//! middleware, which must not depend on each other.

use axum::{
    http::header,
    response::{IntoResponse, Response},
};
use ticketing_domain::Error;
use ticketing_service::grpc;

use crate::rest::error::RestError;

/// gRPC and gRPC-Web requests, by content type.
pub fn is_grpc<B>(request: &http::Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// An error answered before any service ran (routing, shedding): a gRPC
/// status for gRPC callers, Google's JSON error for REST.
pub fn error_response(is_grpc: bool, error: Error) -> Response {
    if is_grpc {
        grpc::status::to_status(error).into_http::<axum::body::Body>()
    } else {
        RestError::from(error).into_response()
    }
}
