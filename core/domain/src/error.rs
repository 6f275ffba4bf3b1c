//! One error type for every use case: a `google.rpc.Code`, a stable
//! [`Reason`] clients branch on, and what a caller needs to retry. How a code
//! becomes a gRPC status or an HTTP status is the transports' one table
//! (`ticketing_service::grpc::status`), not the domain's.

use std::{fmt, time::Duration};

crate::vocabulary! {
    /// `ErrorInfo.reason`: the stable word clients branch on (shared/API.md).
    /// Errors without one carry their code's name.
    pub enum Reason {
        SoldOut = "SOLD_OUT",
        /// The customer already holds as many unpaid orders as allowed.
        PendingOrderLimit = "PENDING_ORDER_LIMIT",
        OrderLimitExceeded = "ORDER_LIMIT_EXCEEDED",
        /// The order would take the customer past the event's
        /// `maxTicketsPerCustomer` (metadata `limit`, `held`).
        CustomerLimitExceeded = "CUSTOMER_LIMIT_EXCEEDED",
        /// The event's waiting room is enabled and the order carries no
        /// valid admission of this customer for this event.
        AdmissionRequired = "ADMISSION_REQUIRED",
        /// JoinQueue without a valid, unused proof-of-work solution.
        ChallengeFailed = "CHALLENGE_FAILED",
        /// The event has no enabled waiting room.
        WaitingRoomDisabled = "WAITING_ROOM_DISABLED",
        SalesClosed = "SALES_CLOSED",
        EventNotPublished = "EVENT_NOT_PUBLISHED",
        EventNotDraft = "EVENT_NOT_DRAFT",
        EventHasNoCategories = "EVENT_HAS_NO_CATEGORIES",
        EventEnded = "EVENT_ENDED",
        EventCancelled = "EVENT_CANCELLED",
        CapacityBelowSold = "CAPACITY_BELOW_SOLD",
        IdempotencyKeyRequired = "IDEMPOTENCY_KEY_REQUIRED",
        IdempotencyKeyReused = "IDEMPOTENCY_KEY_REUSED",
        IdempotencyKeyInUse = "IDEMPOTENCY_KEY_IN_USE",
        /// Internal: the unique (user, key) index found an order made with
        /// this key; the use case replays it (never answered as such).
        IdempotencyRace = "IDEMPOTENCY_RACE",
        OrderNotPending = "ORDER_NOT_PENDING",
        /// Only a paid order's tickets can be refunded.
        OrderNotPaid = "ORDER_NOT_PAID",
        /// A named ticket (metadata `ticketId`), or every ticket of the
        /// order, has a refund already.
        AlreadyRefunded = "ALREADY_REFUNDED",
        /// CompleteManualRefund on a refund no person needs to finish.
        RefundNotManual = "REFUND_NOT_MANUAL",
        /// ApprovePayment/DenyPayment on a payment no fraud review holds.
        PaymentNotChallenged = "PAYMENT_NOT_CHALLENGED",
        UnsupportedCurrency = "UNSUPPORTED_CURRENCY",
        AmountMismatch = "AMOUNT_MISMATCH",
        InvalidSignature = "INVALID_SIGNATURE",
        PaymentProviderUnavailable = "PAYMENT_PROVIDER_UNAVAILABLE",
        ReportNotReady = "REPORT_NOT_READY",
        Unauthenticated = "UNAUTHENTICATED",
        InvalidToken = "INVALID_TOKEN",
        /// An API key used for what none of its scopes covers, or for what
        /// no key may do (buy, pay, queue, sign in, manage keys).
        ApiKeyScopeMissing = "API_KEY_SCOPE_MISSING",
        /// The caller already has as many live API keys as allowed.
        ApiKeyLimit = "API_KEY_LIMIT",
        InvalidCredentials = "INVALID_CREDENTIALS",
        EmailTaken = "EMAIL_TAKEN",
        RateLimited = "RATE_LIMITED",
        Overloaded = "OVERLOADED",
        RequestTooLarge = "REQUEST_TOO_LARGE",
        /// The body did not arrive within the listener's deadline.
        RequestBodyTimeout = "REQUEST_BODY_TIMEOUT",
        MalformedJson = "MALFORMED_JSON",
    }
}

crate::vocabulary! {
    /// What ran out when an answer is OVERLOADED (`ErrorInfo.metadata.resource`):
    /// only the database's own overload may shrink the shared concurrency limit.
    pub enum Resource {
        /// The replica's concurrency limit: shed before any work.
        Capacity = "capacity",
        /// The database pool gave up, or the database could not be reached.
        Database = "database",
        /// Password hashing's bounded turns.
        PasswordHashing = "password_hashing",
        /// The replica's live streams (`MAX_WATCHERS`).
        Watchers = "watchers",
    }
}

/// `ErrorInfo.metadata` key naming the [`Resource`] of an OVERLOADED answer.
pub const RESOURCE: &str = "resource";

/// The subset of `google.rpc.Code` this service answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument,
    FailedPrecondition,
    OutOfRange,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    Aborted,
    ResourceExhausted,
    Unavailable,
    DeadlineExceeded,
    Unimplemented,
    Internal,
}

impl Code {
    /// The `google.rpc.Code` name, as used in the JSON error's `status`.
    pub fn name(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::Aborted => "ABORTED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::Unavailable => "UNAVAILABLE",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
        }
    }
}

/// A bad field of a request: `field` is the JSON (lowerCamelCase) path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// An error answered to a caller; boxed so `Result`s stay small on the
/// happy path. Its fields are read through [`ErrorParts`].
#[derive(Debug)]
pub struct Error(Box<ErrorParts>);

/// `reason` is the stable `ErrorInfo.reason` clients branch on; `message` is
/// for humans. Internal errors keep their cause for the log and never show it
/// to the caller.
#[derive(Debug)]
pub struct ErrorParts {
    pub code: Code,
    pub message: String,
    pub reason: Option<Reason>,
    pub metadata: Vec<(String, String)>,
    pub field_violations: Vec<FieldViolation>,
    pub retry_after: Option<Duration>,
    /// Set on RATE_LIMITED answers: what the IETF `RateLimit` headers say.
    pub rate_limit: Option<RateLimitState>,
    pub cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// A limit's policy and where the caller stands; the transports render it
/// as the IETF `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitState {
    pub policy: &'static str,
    pub quota: u32,
    pub window: Duration,
    pub remaining: u32,
    pub reset: Duration,
}

impl std::ops::Deref for Error {
    type Target = ErrorParts;

    fn deref(&self) -> &ErrorParts {
        &self.0
    }
}

impl std::ops::DerefMut for Error {
    fn deref_mut(&mut self) -> &mut ErrorParts {
        &mut self.0
    }
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error(Box::new(ErrorParts {
            code,
            message: message.into(),
            reason: None,
            metadata: Vec::new(),
            field_violations: Vec::new(),
            retry_after: None,
            rate_limit: None,
            cause: None,
        }))
    }

    /// The same error for another caller (a shared result answered to
    /// several waiters); the cause survives as text.
    pub fn reissue(&self) -> Error {
        Error(Box::new(ErrorParts {
            code: self.code,
            message: self.message.clone(),
            reason: self.reason,
            metadata: self.metadata.clone(),
            field_violations: self.field_violations.clone(),
            retry_after: self.retry_after,
            rate_limit: self.rate_limit.clone(),
            cause: self.cause.as_ref().map(|c| c.to_string().into()),
        }))
    }

    pub fn into_parts(self) -> ErrorParts {
        *self.0
    }

    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }

    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// RESOURCE_EXHAUSTED / RATE_LIMITED with Retry-After and the limit's state.
    pub fn rate_limited(state: RateLimitState, retry_after: Duration) -> Self {
        let mut error = Error::new(Code::ResourceExhausted, "too many requests, retry later")
            .with_reason(Reason::RateLimited)
            .with_retry_after(retry_after.max(Duration::from_secs(1)));
        error.rate_limit = Some(state);
        error
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// INVALID_ARGUMENT listing every bad field at once.
    pub fn invalid_fields(violations: Vec<FieldViolation>) -> Self {
        let summary =
            violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ");
        let mut error = Error::new(Code::InvalidArgument, format!("invalid request: {summary}"));
        error.field_violations = violations;
        error
    }

    pub fn invalid_field(field: &str, description: impl Into<String>) -> Self {
        Error::invalid_fields(vec![FieldViolation { field: field.to_owned(), description: description.into() }])
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Error::new(Code::InvalidArgument, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Error::new(Code::Unauthenticated, message)
    }

    pub fn permission_denied(message: impl Into<String>) -> Self {
        Error::new(Code::PermissionDenied, message)
    }

    pub fn not_found(what: &str) -> Self {
        Error::new(Code::NotFound, format!("{what} not found"))
    }

    pub fn failed_precondition(reason: Reason, message: impl Into<String>) -> Self {
        Error::new(Code::FailedPrecondition, message).with_reason(reason)
    }

    pub fn unavailable(message: impl Into<String>, retry_after: Duration) -> Self {
        Error::new(Code::Unavailable, message).with_retry_after(retry_after)
    }

    /// 503 UNAVAILABLE, reason OVERLOADED: `resource` ran out; retry after.
    pub fn overloaded(resource: Resource, message: impl Into<String>, retry_after: Duration) -> Self {
        Error::unavailable(message, retry_after)
            .with_reason(Reason::Overloaded)
            .with_metadata(RESOURCE, resource.as_str())
    }

    /// The resource an OVERLOADED answer names.
    pub fn overloaded_resource(&self) -> Option<Resource> {
        if self.reason != Some(Reason::Overloaded) {
            return None;
        }
        self.metadata.iter().find(|(key, _)| key == RESOURCE).and_then(|(_, value)| Resource::parse(value))
    }

    /// An unexpected failure; `cause` is logged at the boundary, the caller
    /// sees only a generic message.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let mut error = Error::new(Code::Internal, "internal error");
        error.cause = Some(cause.into());
        error
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)?;
        if let Some(cause) = &self.cause {
            write!(f, " ({cause})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Collects field violations so a request is answered with all its problems
/// at once rather than one per round trip.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(FieldViolation { field: field.to_owned(), description: description.into() });
    }

    pub fn check(&mut self, ok: bool, field: &str, description: &str) {
        if !ok {
            self.add(field, description);
        }
    }

    /// One line of text: no control character at all (NUL, which Postgres
    /// refuses, nor those that forge log lines or break CSV cells).
    pub fn check_plain_text(&mut self, field: &str, value: &str) {
        self.check(!value.chars().any(char::is_control), field, "must not contain control characters");
    }

    /// Text that may span lines: line breaks and tabs, no other control character.
    pub fn check_multiline_text(&mut self, field: &str, value: &str) {
        let stray = value.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
        self.check(!stray, field, "must not contain control characters other than line breaks and tabs");
    }

    pub fn into_result(self) -> Result<(), Error> {
        if self.0.is_empty() { Ok(()) } else { Err(Error::invalid_fields(self.0)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_report_every_field() {
        let mut v = Violations::default();
        v.check(false, "name", "must not be empty");
        v.check(true, "venue", "unused");
        v.check(false, "startTime", "is required");
        let err = v.into_result().unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument);
        assert_eq!(err.field_violations.len(), 2);
        assert!(err.message.contains("name: must not be empty"));
        assert!(err.message.contains("startTime: is required"));
    }

    #[test]
    fn internal_error_hides_its_cause_from_the_message() {
        let err = Error::internal("relation \"users\" does not exist");
        assert_eq!(err.message, "internal error");
        assert!(err.to_string().contains("relation"));
    }
}
