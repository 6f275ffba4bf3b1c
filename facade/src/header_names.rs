//! The headers the facade reads or writes beyond the standard ones, named
//! once: a lookup by a `HeaderName` skips the parse and check a `&str` name
//! takes, on every request or answer that asks.

use axum::http::HeaderName;

/// A gRPC answer's status, in the headers of a trailers-only (error) answer.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The header an `EventSource` reconnects with.
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
/// REST's name for a request's idempotency key (API.md).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The waiting room's admission on REST CreateOrder (API.md).
pub const TICKETING_ADMISSION: HeaderName = HeaderName::from_static("ticketing-admission");
/// Set on an answer replayed for a reused idempotency key.
pub const IDEMPOTENT_REPLAYED: HeaderName =
    HeaderName::from_static(ticketing_service::grpc::orders::IDEMPOTENT_REPLAYED);
