//! Integration tests: the real server on a random port against the real
//! local stack (`ci/stack start`): PostgreSQL through PgBouncer, the
//! streaming replica, and Redis. Each test gets its own database.
//!
//! Fixtures live in `helpers` (see its module doc); test modules import
//! from there only. Servers are quiet: to rerun a failing test with logs,
//! set `TEST_LOG=1` (or an `EnvFilter` directive such as `TEST_LOG=debug`),
//! e.g. `TEST_LOG=debug cargo test -p ticketing-facade --test integration -- checkin::`.
//! The in-process server's lines are shown with the failing test; the
//! `ticketing serve` processes a test starts log at that level to stderr.

mod api_keys;
mod auth;
mod cache;
mod catalog;
mod checkin;
mod clients;
mod edge;
mod errors;
mod failover;
mod front_door;
mod grpc;
mod helpers;
mod limits;
mod live;
mod observability;
mod openapi;
mod orders;
mod outbox;
mod overload;
mod payments;
mod pgbouncer;
mod refunds;
mod reports;
mod scaleout;
mod security;
mod server;
