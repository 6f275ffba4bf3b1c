//! The REST routes' shared state, apart from the handlers and the table
//! that mounts them, which both name it.

use axum::{extract::FromRef, http::HeaderValue};
use ticketing_service::grpc::Services;

/// The REST routes' state: the services, and what is rendered once from
/// the configuration rather than per request.
#[derive(Clone)]
pub struct RestState {
    pub services: Services,
    /// `Cache-Control` of public catalog reads.
    pub public_cache_control: HeaderValue,
}

impl RestState {
    pub fn new(services: Services) -> RestState {
        let config = &services.state.config;
        let value = format!(
            "public, max-age={}, s-maxage={}, stale-while-revalidate={}",
            config.http_cache_max_age, config.http_cache_s_maxage, config.http_cache_stale_while_revalidate
        );
        let public_cache_control = HeaderValue::from_str(&value).expect("digits and ASCII");
        RestState { services, public_cache_control }
    }
}

impl FromRef<RestState> for Services {
    fn from_ref(state: &RestState) -> Services {
        state.services.clone()
    }
}
