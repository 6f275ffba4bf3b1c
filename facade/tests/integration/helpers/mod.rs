//! Everything the integration tests share. A test module imports from
//! `crate::helpers` only, never from another test module, so each test file
//! can be read (and moved) on its own.
//!
//! - `stack`: the local stack's settings and a fresh database per test.
//! - `app`: [`TestApp`], the server in-process, its users, and the worker.
//! - `http`: answers as tests read them ([`Response`]), gRPC auth, metrics.
//! - `sale`: arranging data over the API: events, orders, paid tickets, scanners.
//! - `db`: direct queries for arranging data and checking invariants.
//! - `logs`: `TEST_LOG`, the switch for the servers' logs.
//! - `wait`: [`eventually`], for what the replica or the worker does later.
//! - `processes`: `ticketing serve` and `worker` processes of the real binary, and tools.
//! - `live`: live streams as clients read them (SSE, gRPC-Web).
//! - `queue`: the waiting room as a browser goes through it (challenge, join, entry).
//! - `redis`: a Redis of a test's own, and reads of what the service keeps in Redis.
//! - `midtrans`, `smtp`, `nginx`: the outside world: the Midtrans simulator,
//!   a real SMTP server, real nginx.

mod app;
mod db;
mod ha;
mod http;
mod live;
mod logs;
mod midtrans;
mod nginx;
mod processes;
mod proxy;
mod queue;
mod redis;
mod sale;
mod smtp;
mod stack;
mod wait;

pub use app::*;
pub use db::*;
pub use ha::*;
pub use http::*;
pub use live::*;
pub use logs::*;
pub use midtrans::*;
pub use nginx::*;
pub use processes::*;
pub use proxy::*;
pub use queue::*;
pub use redis::*;
pub use sale::*;
pub use smtp::*;
pub use stack::*;
pub use wait::*;
