//! One small wrapper around fred: RESP3, bounded command timeouts, automatic
//! reconnects and a key prefix. Redis holds only what may be lost (cache,
//! rate-limit windows, idempotency fast path), so callers treat every error
//! here as "Redis unavailable" and degrade instead of failing the request.

use std::{sync::Arc, time::Duration};

use fred::{
    prelude::{ClientLike, Config, KeysInterface, LuaInterface, Pool, ReconnectPolicy},
    types::{Builder, RespVersion},
};
use secrecy::{ExposeSecret, SecretString};
use tracing::Instrument;

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: SecretString,
    /// Prepended to every key, so several deployments can share one Redis.
    pub key_prefix: String,
    pub pool_size: usize,
    /// A Redis that does not answer within this is treated as down.
    pub command_timeout: Duration,
}

#[derive(Clone)]
pub struct Redis {
    pool: Pool,
    prefix: Arc<str>,
}

pub type RedisError = fred::error::Error;

/// INCR plus PEXPIRE on first use, atomically: a fixed-window counter.
/// Returns the count and the milliseconds left in the window.
const INCR_WINDOW: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}";

impl Redis {
    /// Starts connecting in the background and returns at once: the service
    /// comes up even while Redis is down.
    pub fn start(settings: &RedisSettings) -> Result<Redis, RedisError> {
        let mut config = Config::from_url(settings.url.expose_secret())?;
        config.version = RespVersion::RESP3;
        config.fail_fast = true;
        let timeout = settings.command_timeout;
        let pool = Builder::from_config(config)
            .with_performance_config(|perf| perf.default_command_timeout = timeout)
            .with_connection_config(|conn| {
                conn.connection_timeout = timeout;
                conn.internal_command_timeout = timeout;
                conn.max_command_attempts = 1;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
            .build_pool(settings.pool_size)?;
        pool.connect_pool();
        Ok(Redis { pool, prefix: settings.key_prefix.as_str().into() })
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub async fn is_reachable(&self) -> bool {
        timed("PING", self.pool.next().ping::<String>(None)).await.is_ok()
    }

    /// Counts one hit in the window that `key` names; returns the count so
    /// far and the time left until the window resets.
    pub async fn hit_window(&self, key: &str, window: Duration) -> Result<(u64, Duration), RedisError> {
        let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let (count, left_ms): (u64, i64) =
            self.pool.next().eval(INCR_WINDOW, vec![self.key(key)], vec![millis]).await?;
        Ok((count, Duration::from_millis(u64::try_from(left_ms).unwrap_or(0))))
    }

    pub async fn delete(&self, key: &str) -> Result<(), RedisError> {
        timed("DEL", self.pool.next().del::<(), _>(self.key(key))).await
    }

    pub async fn shutdown(&self) {
        let _ = self.pool.quit().await;
    }
}

impl Redis {
    /// SET NX with a time to live: `true` when this call created the key.
    pub async fn set_if_absent(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, RedisError> {
        let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let set: Option<String> = self
            .pool
            .next()
            .set(
                self.key(key),
                value,
                Some(fred::types::Expiration::PX(millis)),
                Some(fred::types::SetOptions::NX),
                false,
            )
            .await?;
        Ok(set.is_some())
    }

    pub async fn set_with_ttl(&self, key: &str, value: &str, ttl: Duration) -> Result<(), RedisError> {
        let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.pool
            .next()
            .set::<(), _, _>(self.key(key), value, Some(fred::types::Expiration::PX(millis)), None, false)
            .await
    }

    pub async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        timed("GET", self.pool.next().get::<Option<Vec<u8>>, _>(self.key(key))).await
    }

    pub async fn set_bytes(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), RedisError> {
        let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        timed(
            "SET",
            self.pool.next().set::<(), _, _>(
                self.key(key),
                value,
                Some(fred::types::Expiration::PX(millis)),
                None,
                false,
            ),
        )
        .await
    }

    pub async fn incr(&self, key: &str) -> Result<u64, RedisError> {
        timed("INCR", self.pool.next().incr::<u64, _>(self.key(key))).await
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, RedisError> {
        timed("GET", self.pool.next().get(self.key(key))).await
    }
}

/// Measures one command: `ticketing_redis_command_duration_seconds` and
/// `ticketing_redis_errors_total`, by command.
async fn timed<T>(command: &'static str, call: impl Future<Output = Result<T, RedisError>>) -> Result<T, RedisError> {
    let started = std::time::Instant::now();
    let result = call.instrument(tracing::info_span!("redis.command", db.operation = command)).await;
    metrics::histogram!("ticketing_redis_command_duration_seconds", "command" => command)
        .record(started.elapsed().as_secs_f64());
    if result.is_err() {
        metrics::counter!("ticketing_redis_errors_total", "command" => command).increment(1);
    }
    result
}
