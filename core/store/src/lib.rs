//! Adapters to the outside state: PostgreSQL (always through PgBouncer in
//! transaction pooling mode, see [`db`]) and Redis (see [`redis`]).

pub mod api_keys;
pub mod audit;
pub mod checkin;
pub mod db;
pub mod error;
pub mod events;
pub mod inventory;
pub mod lanes;
pub mod migrate;
pub mod orders;
pub mod outbox;
pub mod payments;
pub mod redis;
pub mod refunds;
pub mod reports;
pub mod schema;
pub mod signals;
pub mod users;
pub mod waiting_room;
pub mod words;

pub use db::{Conn, Database, PoolSettings};
pub use error::StoreError;
