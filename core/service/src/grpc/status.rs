//! Domain errors ⇄ gRPC status. Every error carries a `google.rpc.ErrorInfo`
//! (reason, domain "ticketing", metadata), field problems a `BadRequest`,
//! and waits a `retry-after` trailer the REST facade turns into a header.

use std::collections::HashMap;

use ticketing_domain::{Code, Error};
use tonic::{Status, metadata::MetadataValue};
use tonic_types::{ErrorDetails, StatusExt};

pub const DOMAIN: &str = "ticketing";
pub const RETRY_AFTER: &str = "retry-after";
pub const RATE_LIMIT: &str = "ratelimit";
pub const RATE_LIMIT_POLICY: &str = "ratelimit-policy";
/// Status metadata that REST answers as response headers.
pub const HEADERS_FROM_METADATA: &[&str] = &[RATE_LIMIT, RATE_LIMIT_POLICY];

pub fn to_status(error: Error) -> Status {
    if error.code == Code::Internal {
        // Logged once, here at the boundary; the caller sees a generic message.
        tracing::error!(error = %error, "internal error");
    }
    let error = error.into_parts();
    let reason = error.reason.unwrap_or(error.code.name());
    let metadata: HashMap<String, String> = error.metadata.into_iter().collect();
    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, metadata);
    if !error.field_violations.is_empty() {
        details.set_bad_request(
            error
                .field_violations
                .into_iter()
                .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
                .collect::<Vec<_>>(),
        );
    }
    let mut status = Status::with_error_details(to_tonic_code(error.code), error.message, details);
    if let Some(after) = error.retry_after {
        status.metadata_mut().insert(RETRY_AFTER, MetadataValue::from(after.as_secs()));
    }
    if let Some(limit) = error.rate_limit {
        for (key, value) in [(RATE_LIMIT_POLICY, limit.policy_header()), (RATE_LIMIT, limit.state_header())] {
            if let Ok(value) = value.parse() {
                status.metadata_mut().insert(key, value);
            }
        }
    }
    status
}

pub fn to_tonic_code(code: Code) -> tonic::Code {
    match code {
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::OutOfRange => tonic::Code::OutOfRange,
        Code::Unauthenticated => tonic::Code::Unauthenticated,
        Code::PermissionDenied => tonic::Code::PermissionDenied,
        Code::NotFound => tonic::Code::NotFound,
        Code::AlreadyExists => tonic::Code::AlreadyExists,
        Code::Aborted => tonic::Code::Aborted,
        Code::ResourceExhausted => tonic::Code::ResourceExhausted,
        Code::Unavailable => tonic::Code::Unavailable,
        Code::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        Code::Unimplemented => tonic::Code::Unimplemented,
        Code::Internal => tonic::Code::Internal,
    }
}

/// The inverse of [`to_tonic_code`], for statuses tonic makes itself (decode
/// errors, unimplemented methods). Codes we never send map to the nearest.
pub fn from_tonic_code(code: tonic::Code) -> Code {
    match code {
        tonic::Code::InvalidArgument => Code::InvalidArgument,
        tonic::Code::FailedPrecondition => Code::FailedPrecondition,
        tonic::Code::OutOfRange => Code::OutOfRange,
        tonic::Code::Unauthenticated => Code::Unauthenticated,
        tonic::Code::PermissionDenied => Code::PermissionDenied,
        tonic::Code::NotFound => Code::NotFound,
        tonic::Code::AlreadyExists => Code::AlreadyExists,
        tonic::Code::Aborted => Code::Aborted,
        tonic::Code::ResourceExhausted => Code::ResourceExhausted,
        tonic::Code::Unavailable => Code::Unavailable,
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => Code::DeadlineExceeded,
        tonic::Code::Unimplemented => Code::Unimplemented,
        tonic::Code::Ok | tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::DataLoss => Code::Internal,
    }
}

/// Reads back what [`to_status`] wrote, for the REST facade.
pub struct StatusParts {
    pub code: Code,
    pub message: String,
    pub details: ErrorDetails,
    pub retry_after_secs: Option<u64>,
}

pub fn parts(status: &Status) -> StatusParts {
    StatusParts {
        code: from_tonic_code(status.code()),
        message: status.message().to_owned(),
        details: status.get_error_details(),
        retry_after_secs: status.metadata().get(RETRY_AFTER).and_then(|v| v.to_str().ok()?.parse().ok()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn domain_error_survives_the_round_trip() {
        let error = Error::invalid_field("quantity", "must be at least 1")
            .with_reason("BAD_QUANTITY")
            .with_metadata("ticketCategoryId", "c1")
            .with_retry_after(Duration::from_secs(3));
        let parts = parts(&to_status(error));
        assert_eq!(parts.code, Code::InvalidArgument);
        assert_eq!(parts.retry_after_secs, Some(3));
        let info = parts.details.error_info().unwrap();
        assert_eq!(info.reason, "BAD_QUANTITY");
        assert_eq!(info.domain, DOMAIN);
        assert_eq!(info.metadata["ticketCategoryId"], "c1");
        let bad = parts.details.bad_request().unwrap();
        assert_eq!(bad.field_violations[0].field, "quantity");
    }

    #[test]
    fn every_code_maps_back_to_itself() {
        for code in [
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::OutOfRange,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::NotFound,
            Code::AlreadyExists,
            Code::Aborted,
            Code::ResourceExhausted,
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Unimplemented,
            Code::Internal,
        ] {
            assert_eq!(from_tonic_code(to_tonic_code(code)), code);
        }
    }

    #[test]
    fn errors_without_reason_still_carry_error_info() {
        let parts = parts(&to_status(Error::not_found("event")));
        assert_eq!(parts.details.error_info().unwrap().reason, "NOT_FOUND");
    }
}
