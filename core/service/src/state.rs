use std::sync::Arc;

use ticketing_store::{Database, redis::Redis};

use crate::{Config, auth::token::Tokens};

/// What every use case may reach. Cheap to clone; holds no per-instance
/// business state (replicas are interchangeable).
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Database,
    pub redis: Redis,
    pub tokens: Arc<Tokens>,
}

impl AppState {
    /// Builds pools and clients without waiting for Postgres or Redis: a
    /// replica starts while they are down and reports it through readiness.
    pub fn new(config: Config) -> Result<AppState, String> {
        let db = Database::new(&config.database, config.database_replica.as_ref());
        let redis = Redis::start(&config.redis).map_err(|e| format!("REDIS_URL: {e}"))?;
        let tokens = Arc::new(Tokens::new(&config.jwt_secret, config.jwt_ttl));
        Ok(AppState { config: Arc::new(config), db, redis, tokens })
    }
}
