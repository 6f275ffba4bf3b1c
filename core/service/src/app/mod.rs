//! One function per use case. Transports convert their inputs into these
//! calls and the results back; the rules live here and in the domain crate.

pub mod api_keys;
pub mod auth;
pub mod catalog;
pub mod checkin;
pub mod idempotency;
pub mod jobs;
pub mod limits;
pub mod live;
pub mod orders;
pub mod payments;
pub mod read_cache;
pub mod refunds;
pub mod reports;
pub mod tickets;
pub mod waiting_room;
