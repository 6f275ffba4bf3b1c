//! One small wrapper around fred: RESP3, bounded command timeouts, automatic
//! reconnects and a key prefix. Redis holds only what may be lost (cache,
//! rate-limit windows, idempotency fast path), so callers treat every error
//! here as "Redis unavailable" and degrade instead of failing the request.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use fred::{
    prelude::{ClientLike, Config, KeysInterface, Pool, PubsubInterface, ReconnectPolicy},
    types::{Builder, RespVersion, config::TcpConfig, scripts::Script},
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

/// A Lua script run by its SHA-1 (EVALSHA): Redis neither receives nor
/// hashes the script's text on every call (EVAL does both; redis-benchmark
/// here: the GCRA script at 38-41k calls/s by EVAL, 47-62k by EVALSHA). A
/// Redis that lost its script cache (restarted, flushed) answers NOSCRIPT
/// once, and the script is loaded and the call sent again.
pub struct LuaScript {
    lua: &'static str,
    script: OnceLock<Script>,
}

impl LuaScript {
    pub const fn new(lua: &'static str) -> LuaScript {
        LuaScript { lua, script: OnceLock::new() }
    }

    fn script(&self) -> &Script {
        self.script.get_or_init(|| Script::from_lua(self.lua))
    }
}

/// GCRA (generic cell rate algorithm) in one atomic script: `quota`
/// requests per `window`, bursts up to `quota`. Stores one timestamp per key
/// (the theoretical arrival time) and uses the server's clock, so replicas
/// with skewed clocks still share one limit.
/// ARGV[4] asks for up to that many requests at once (a replica's block,
/// see `limits::check_leased`): as many as the limit has room for are
/// granted, at least one or none.
/// With ARGV[3] = 'refund' it gives one request back instead (a login that
/// succeeded was no failure): the stored time moves back one interval, never
/// before now.
/// Returns {granted (0 = limited), remaining, retry_after_ms, reset_ms}.
/// An interval below the float's resolution at today's epoch milliseconds
/// (a quota above ~2.4e8 a minute) adds nothing to the stored time; its
/// expiry is kept at 1 ms, since `PX 0` is an error and an error here would
/// hand the decision to the per-replica fallback on every request.
static GCRA: LuaScript = LuaScript::new(
    r"
local now_parts = redis.call('TIME')
local now = now_parts[1] * 1000 + math.floor(now_parts[2] / 1000)
local window = tonumber(ARGV[1])
local quota = tonumber(ARGV[2])
if ARGV[3] == 'refund' then
  local stored = tonumber(redis.call('GET', KEYS[1]) or now)
  local back = math.max(now, stored - window / quota)
  if back > now then
    redis.call('SET', KEYS[1], tostring(back), 'PX', math.ceil(back - now))
  else
    redis.call('DEL', KEYS[1])
  end
  return {1, 0, 0, 0}
end
local interval = window / quota
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - window
if now < allow_at then
  return {0, 0, math.ceil(allow_at - now), math.ceil(tat - now)}
end
local granted = 1 + math.min(tonumber(ARGV[4]) - 1, math.floor((now - allow_at) / interval))
new_tat = tat + granted * interval
allow_at = new_tat - window
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
return {granted, math.floor((now - allow_at) / interval), 0, math.ceil(new_tat - now)}",
);

/// One GCRA decision.
#[derive(Debug, Clone, Copy)]
pub struct GcraDecision {
    /// Requests counted: 0 when limited, otherwise 1 up to the number asked for.
    pub granted: u32,
    pub remaining: u32,
    pub retry_after: Duration,
    pub reset: Duration,
}

impl Redis {
    /// Starts connecting in the background and returns at once: the service
    /// comes up even while Redis is down.
    pub fn start(settings: &RedisSettings) -> Result<Redis, RedisError> {
        let pool = builder(settings)?.build_pool(settings.pool_size)?;
        pool.connect_pool();
        Ok(Redis { pool, prefix: settings.key_prefix.as_str().into() })
    }

    /// Tells every subscriber of `channel` (prefixed here) that something changed.
    pub async fn publish(&self, channel: &str) -> Result<(), RedisError> {
        timed("PUBLISH", self.pool.next().publish::<(), _, _>(self.key(channel), "")).await
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub async fn is_reachable(&self) -> bool {
        timed("PING", self.pool.next().ping::<String>(None)).await.is_ok()
    }

    /// One decision of the limit `quota` per `window` for `key`: up to
    /// `wanted` requests (at least 1) counted at once, as many as it allows.
    pub async fn gcra(&self, key: &str, quota: u32, window: Duration, wanted: u32) -> Result<GcraDecision, RedisError> {
        self.gcra_call(key, quota, window, "count", wanted.max(1)).await
    }

    /// Gives back one request counted by [`Redis::gcra`].
    pub async fn gcra_refund(&self, key: &str, quota: u32, window: Duration) -> Result<(), RedisError> {
        self.gcra_call(key, quota, window, "refund", 1).await.map(|_| ())
    }

    async fn gcra_call(
        &self,
        key: &str,
        quota: u32,
        window: Duration,
        mode: &str,
        wanted: u32,
    ) -> Result<GcraDecision, RedisError> {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let args = vec![window_ms.to_string(), quota.to_string(), mode.to_owned(), wanted.to_string()];
        let (granted, remaining, retry_ms, reset_ms): (i64, i64, i64, i64) =
            self.eval(&GCRA, vec![key.to_owned()], args).await?;
        let millis = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
        Ok(GcraDecision {
            granted: u32::try_from(granted).unwrap_or(0),
            remaining: u32::try_from(remaining).unwrap_or(0),
            retry_after: millis(retry_ms),
            reset: millis(reset_ms),
        })
    }

    /// Runs `script` atomically on `keys` (prefixed here) with `args`.
    pub async fn eval<R: fred::types::FromValue>(
        &self,
        script: &LuaScript,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<R, RedisError> {
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        timed("EVALSHA", script.script().evalsha_with_reload(self.pool.next(), keys, args)).await
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
    pub async fn set_if_absent<V>(&self, key: &str, value: V, ttl: Duration) -> Result<bool, RedisError>
    where
        V: TryInto<fred::types::Value> + Send,
        V::Error: Into<RedisError> + Send,
    {
        let set: Option<String> = self.set_expiring(key, value, ttl, Some(fred::types::SetOptions::NX)).await?;
        Ok(set.is_some())
    }

    pub async fn set_with_ttl(&self, key: &str, value: &str, ttl: Duration) -> Result<(), RedisError> {
        self.set_expiring(key, value, ttl, None).await
    }

    pub async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        timed("GET", self.pool.next().get::<Option<Vec<u8>>, _>(self.key(key))).await
    }

    pub async fn set_bytes(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), RedisError> {
        self.set_expiring(key, value, ttl, None).await
    }

    /// SET with a time to live (and `options`), as every setter here does.
    async fn set_expiring<R, V>(
        &self,
        key: &str,
        value: V,
        ttl: Duration,
        options: Option<fred::types::SetOptions>,
    ) -> Result<R, RedisError>
    where
        R: fred::types::FromValue,
        V: TryInto<fred::types::Value> + Send,
        V::Error: Into<RedisError> + Send,
    {
        let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let expiry = Some(fred::types::Expiration::PX(millis));
        timed("SET", self.pool.next().set::<R, _, _>(self.key(key), value, expiry, options, false)).await
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, RedisError> {
        timed("GET", self.pool.next().get(self.key(key))).await
    }
}

/// How every connection of ours to Redis is made: RESP3, bounded timeouts,
/// reconnects with backoff.
pub(crate) fn builder(settings: &RedisSettings) -> Result<Builder, RedisError> {
    let mut config = Config::from_url(settings.url.expose_secret())?;
    config.version = RespVersion::RESP3;
    config.fail_fast = true;
    let timeout = settings.command_timeout;
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|perf| perf.default_command_timeout = timeout)
        .with_connection_config(|conn| {
            // fred leaves Nagle's algorithm on: a command written while the
            // previous one is unacknowledged would wait for its ACK.
            conn.tcp = TcpConfig { nodelay: Some(true), ..TcpConfig::default() };
            conn.connection_timeout = timeout;
            conn.internal_command_timeout = timeout;
            conn.max_command_attempts = 1;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2));
    Ok(builder)
}

/// Measures one command: `ticketing_redis_command_duration_seconds` and
/// `ticketing_redis_errors_total`, by command.
async fn timed<T>(command: &'static str, call: impl Future<Output = Result<T, RedisError>>) -> Result<T, RedisError> {
    let started = std::time::Instant::now();
    // Boxed: fred's command futures take kilobytes, and every caller's
    // future (a scan, an order, a page view's miss) would carry and move them.
    let result = Box::pin(call.instrument(tracing::info_span!("redis.command", db.operation = command))).await;
    metrics::histogram!("ticketing_redis_command_duration_seconds", "command" => command)
        .record(started.elapsed().as_secs_f64());
    if result.is_err() {
        metrics::counter!("ticketing_redis_errors_total", "command" => command).increment(1);
    }
    result
}
