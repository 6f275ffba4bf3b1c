//! A two-level cache for public reads: a small in-process cache (moka) in
//! front of Redis. When an entry expires under load, one request per replica
//! rebuilds it and the others wait for that result (moka coalesces loads of
//! one key), so an expiry never becomes a stampede on the database. Redis
//! errors only cost speed: the value is then built from the database.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use moka::future::Cache;
use ticketing_domain::Error;
use ticketing_store::redis::Redis;

/// Encoded entries; `None` remembers "not public" briefly, locally only.
type Entry = Option<Arc<Vec<u8>>>;

#[derive(Clone)]
pub struct ReadCache {
    name: &'static str,
    local: Cache<String, Entry>,
    /// `None`: local only (entries whose shared copies could not be invalidated by key).
    shared_ttl: Option<Duration>,
}

/// At most this many entries per replica and cache.
const LOCAL_CAPACITY: u64 = 10_000;

impl ReadCache {
    pub fn new(name: &'static str, local_ttl: Duration, shared_ttl: Option<Duration>) -> ReadCache {
        ReadCache {
            name,
            local: Cache::builder().max_capacity(LOCAL_CAPACITY).time_to_live(local_ttl).build(),
            shared_ttl,
        }
    }

    /// The cached value of `key`, or what `load` builds (then cached).
    pub async fn get_or_load<F, Fut>(&self, redis: &Redis, key: String, load: F) -> Result<Entry, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Vec<u8>>, Error>>,
    {
        if let Some(entry) = self.local.get(&key).await {
            self.count("hit_local");
            return Ok(entry);
        }
        let loaded_here = AtomicBool::new(false);
        let shared_key = format!("cache:{}:{key}", self.name);
        let entry = self
            .local
            .try_get_with(key, async {
                loaded_here.store(true, Ordering::Relaxed);
                if self.shared_ttl.is_some()
                    && let Ok(Some(bytes)) = redis.get_bytes(&shared_key).await
                {
                    self.count("hit_redis");
                    return Ok(Some(Arc::new(bytes)));
                }
                self.count("miss");
                let built = load().await?;
                if let (Some(bytes), Some(ttl)) = (&built, self.shared_ttl)
                    && let Err(error) = redis.set_bytes(&shared_key, bytes.clone(), ttl).await
                {
                    tracing::debug!(%error, "cache entry not shared");
                }
                Ok::<_, Error>(built.map(Arc::new))
            })
            .await
            .map_err(|error: Arc<Error>| error.reissue())?;
        if !loaded_here.load(Ordering::Relaxed) {
            self.count("coalesced");
        }
        Ok(entry)
    }

    /// Forgets `key` here and in Redis (other replicas' local copies expire
    /// within the local TTL).
    pub async fn invalidate(&self, redis: &Redis, key: &str) {
        self.local.invalidate(key).await;
        if self.shared_ttl.is_some() {
            let _ = redis.delete(&format!("cache:{}:{key}", self.name)).await;
        }
    }

    /// Forgets every local entry.
    pub fn invalidate_all(&self) {
        self.local.invalidate_all();
    }

    fn count(&self, result: &'static str) {
        metrics::counter!("ticketing_cache_requests_total", "cache" => self.name, "result" => result).increment(1);
    }
}
