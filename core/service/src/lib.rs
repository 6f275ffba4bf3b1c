//! The service core: application use cases (`app`), the gRPC transport
//! (`grpc`) and what both share (config, auth). The REST facade reaches the
//! use cases only through the gRPC services, so each behaviour exists once.

pub mod adapters;
pub mod app;
pub mod auth;
pub mod config;
pub mod grpc;
pub mod load_class;
pub mod state;
pub mod wire;
pub mod worker;

pub use config::Config;
pub use state::AppState;
