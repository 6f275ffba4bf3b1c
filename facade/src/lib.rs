//! The edge of the service: REST/JSON mapped onto the gRPC services, the one
//! public port that serves gRPC, gRPC-Web and REST, and the admin listener.

pub mod api_key_auth;
pub mod bench_seed;
pub mod cors;
pub mod db_top;
pub mod header_names;
pub mod metrics;
pub mod overload;
pub mod profiling;
pub mod respond;
pub mod rest;
pub mod seed;
pub mod server;
pub mod telemetry;
