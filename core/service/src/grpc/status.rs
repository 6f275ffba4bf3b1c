//! Domain errors ⇄ gRPC status, and the one code table both transports
//! answer from: each code's gRPC code and HTTP status side by side
//! (google/rpc/code.proto's mapping), so gRPC and REST cannot drift. Every
//! error carries a `google.rpc.ErrorInfo` (reason, domain "ticketing",
//! metadata), field problems a `BadRequest`, and waits a `retry-after`
//! trailer the REST facade turns into a header, as it does the IETF
//! `RateLimit` headers rendered here.

use std::collections::HashMap;

use ticketing_domain::{
    Code, Error, Reason,
    error::{RESOURCE, RateLimitState, Resource},
};
use tonic::{Status, metadata::MetadataValue};
use tonic_types::{ErrorDetails, StatusExt};

pub const DOMAIN: &str = "ticketing";
pub const RETRY_AFTER: &str = "retry-after";
pub const RATE_LIMIT: &str = "ratelimit";
pub const RATE_LIMIT_POLICY: &str = "ratelimit-policy";
/// Status metadata that REST answers as response headers.
pub const HEADERS_FROM_METADATA: &[&str] = &[RATE_LIMIT, RATE_LIMIT_POLICY];

/// Marks an answer the database's own overload produced (its pool gave up,
/// or it could not be reached): the one signal that may shrink the shared
/// concurrency limit. Other 503s (an open payment breaker) are not the
/// database's and must not shrink everyone's limit.
#[derive(Debug, Clone, Copy)]
pub struct DatabaseOverloaded;

/// Whether a status says the database was overloaded (reason OVERLOADED,
/// resource `database`).
pub fn is_database_overload(status: &Status) -> bool {
    status.code() == tonic::Code::Unavailable && parts(status).is_database_overload()
}

pub fn to_status(error: Error) -> Status {
    if error.code == Code::Internal {
        // Logged once, here at the boundary; the caller sees a generic message.
        tracing::error!(error = %error, "internal error");
    }
    let error = error.into_parts();
    let reason = error.reason.map_or(error.code.name(), Reason::as_str);
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
        for (key, value) in [(RATE_LIMIT_POLICY, policy_header(&limit)), (RATE_LIMIT, state_header(&limit))] {
            if let Ok(value) = value.parse() {
                status.metadata_mut().insert(key, value);
            }
        }
    }
    status
}

/// `RateLimit-Policy: "login_email";q=10;w=60`
fn policy_header(limit: &RateLimitState) -> String {
    format!("\"{}\";q={};w={}", limit.policy, limit.quota, limit.window.as_secs())
}

/// `RateLimit: "login_email";r=0;t=42`
fn state_header(limit: &RateLimitState) -> String {
    format!("\"{}\";r={};t={}", limit.policy, limit.remaining, limit.reset.as_secs().max(1))
}

/// The code table: each code's gRPC code and HTTP status.
fn codes(code: Code) -> (tonic::Code, u16) {
    match code {
        Code::InvalidArgument => (tonic::Code::InvalidArgument, 400),
        Code::FailedPrecondition => (tonic::Code::FailedPrecondition, 400),
        Code::OutOfRange => (tonic::Code::OutOfRange, 400),
        Code::Unauthenticated => (tonic::Code::Unauthenticated, 401),
        Code::PermissionDenied => (tonic::Code::PermissionDenied, 403),
        Code::NotFound => (tonic::Code::NotFound, 404),
        Code::AlreadyExists => (tonic::Code::AlreadyExists, 409),
        Code::Aborted => (tonic::Code::Aborted, 409),
        Code::ResourceExhausted => (tonic::Code::ResourceExhausted, 429),
        Code::Unavailable => (tonic::Code::Unavailable, 503),
        Code::DeadlineExceeded => (tonic::Code::DeadlineExceeded, 504),
        Code::Unimplemented => (tonic::Code::Unimplemented, 501),
        Code::Internal => (tonic::Code::Internal, 500),
    }
}

pub fn to_tonic_code(code: Code) -> tonic::Code {
    codes(code).0
}

/// The HTTP status of an error: its code's, except where the contract names
/// another for a reason (a reused idempotency key is 422, per the IETF
/// idempotency-key draft).
pub fn http_status(code: Code, reason: Option<Reason>) -> u16 {
    match reason {
        Some(Reason::IdempotencyKeyReused) => 422,
        _ => codes(code).1,
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

impl StatusParts {
    /// The reason as sent; `None` when absent or not one of ours.
    pub fn reason(&self) -> Option<Reason> {
        self.details.error_info().and_then(|info| Reason::parse(&info.reason))
    }

    pub fn http_status(&self) -> u16 {
        http_status(self.code, self.reason())
    }

    /// See [`is_database_overload`].
    pub fn is_database_overload(&self) -> bool {
        self.code == Code::Unavailable
            && self.details.error_info().is_some_and(|info| {
                info.reason == Reason::Overloaded.as_str()
                    && info.metadata.get(RESOURCE).map(String::as_str) == Some(Resource::Database.as_str())
            })
    }
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
            .with_reason(Reason::OrderLimitExceeded)
            .with_metadata("ticketCategoryId", "c1")
            .with_retry_after(Duration::from_secs(3));
        let parts = parts(&to_status(error));
        assert_eq!(parts.code, Code::InvalidArgument);
        assert_eq!(parts.retry_after_secs, Some(3));
        let info = parts.details.error_info().unwrap();
        assert_eq!(info.reason, Reason::OrderLimitExceeded.as_str());
        assert_eq!(parts.reason(), Some(Reason::OrderLimitExceeded));
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
    fn http_status_follows_the_google_rpc_mapping() {
        assert_eq!(http_status(Code::InvalidArgument, None), 400);
        assert_eq!(http_status(Code::FailedPrecondition, None), 400);
        assert_eq!(http_status(Code::Unauthenticated, None), 401);
        assert_eq!(http_status(Code::PermissionDenied, None), 403);
        assert_eq!(http_status(Code::NotFound, None), 404);
        assert_eq!(http_status(Code::Aborted, None), 409);
        assert_eq!(http_status(Code::AlreadyExists, None), 409);
        assert_eq!(http_status(Code::ResourceExhausted, None), 429);
        assert_eq!(http_status(Code::Unavailable, None), 503);
        assert_eq!(http_status(Code::DeadlineExceeded, None), 504);
        assert_eq!(http_status(Code::Internal, None), 500);
    }

    #[test]
    fn reused_idempotency_key_is_422_on_rest() {
        assert_eq!(http_status(Code::FailedPrecondition, Some(Reason::IdempotencyKeyReused)), 422);
        assert_eq!(http_status(Code::FailedPrecondition, Some(Reason::SalesClosed)), 400);
        assert_eq!(http_status(Code::Aborted, None), 409);
    }

    #[test]
    fn rate_limit_headers_follow_the_ietf_draft() {
        let limit = RateLimitState {
            policy: "login_email",
            quota: 10,
            window: Duration::from_secs(60),
            remaining: 0,
            reset: Duration::from_millis(200),
        };
        assert_eq!(policy_header(&limit), "\"login_email\";q=10;w=60");
        assert_eq!(state_header(&limit), "\"login_email\";r=0;t=1", "a reset under a second says 1");
    }

    #[test]
    fn errors_without_reason_still_carry_error_info() {
        let parts = parts(&to_status(Error::not_found("event")));
        assert_eq!(parts.details.error_info().unwrap().reason, Code::NotFound.name());
    }
}
