//! Integration tests: the real server on a random port against the real
//! local stack (`ci/stack start`): PostgreSQL through PgBouncer, the
//! streaming replica, and Redis. Each test gets its own database.

mod auth;
mod cache;
mod catalog;
mod checkin;
mod clients;
mod edge;
mod errors;
mod grpc;
mod helpers;
mod limits;
mod observability;
mod orders;
mod outbox;
mod overload;
mod payments;
mod pgbouncer;
mod reports;
mod scaleout;
mod server;
