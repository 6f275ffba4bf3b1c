//! Domain rules of the ticketing backend. Nothing here performs I/O or knows
//! about gRPC, HTTP, diesel or Redis; adapters and transports depend on this
//! crate, never the other way round.

pub mod audit;
pub mod catalog;
pub mod checkin;
pub mod error;
pub mod identity;
pub mod money;
pub mod orders;
pub mod paging;
pub mod payments;
pub mod refunds;
pub mod reports;
pub mod secret_token;
pub mod ticket_code;
pub mod vocabulary;
pub mod waiting_room;

pub use error::{Code, Error, FieldViolation, Reason};
pub use vocabulary::Vocabulary;
