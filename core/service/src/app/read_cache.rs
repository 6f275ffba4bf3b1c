//! A two-level cache for public reads: a small in-process cache (moka) in
//! front of Redis. When an entry expires under load, one request per replica
//! rebuilds it and the others wait for that result (moka coalesces loads of
//! one key), so an expiry never becomes a stampede on the database. Redis
//! errors only cost speed: the value is then built from the database.
//!
//! An entry keeps its message encoded (gRPC's form, and Redis's) and, once a
//! REST reader asks, rendered as JSON with its `ETag`: every reader of a page
//! gets the same bytes until the entry expires, so they are rendered once per
//! entry rather than decoded, serialized and digested per request.

use std::{
    borrow::Cow,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::HeaderValue;
use moka::future::Cache;
use prost::Message;
use serde::Serialize;
use sha2::{Digest, Sha256};
use ticketing_domain::Error;
use ticketing_store::redis::Redis;

/// `None` remembers "not public" briefly, locally only.
type Entry = Option<Arc<CachedMessage>>;

/// One cached message: its protobuf encoding, and its JSON rendering made at
/// most once.
pub struct CachedMessage {
    encoded: Vec<u8>,
    json: OnceLock<JsonRendering>,
}

impl CachedMessage {
    fn new(encoded: Vec<u8>) -> CachedMessage {
        CachedMessage { encoded, json: OnceLock::new() }
    }

    fn decode<M: Message + Default>(&self) -> Result<M, Error> {
        M::decode(self.encoded.as_slice()).map_err(Error::internal)
    }

    /// The message as JSON, rendered on the first call. Two first callers
    /// may both render; they render the same bytes, and one is kept. Only
    /// [`Page::json`] calls it, with the type the page was cached as.
    fn json<M: Message + Default + Serialize>(&self) -> Result<&JsonRendering, Error> {
        if let Some(rendered) = self.json.get() {
            return Ok(rendered);
        }
        let rendered = JsonRendering::of(&self.decode::<M>()?)?;
        Ok(self.json.get_or_init(|| rendered))
    }
}

/// A message as REST answers it: the JSON body and a strong `ETag`, the
/// quoted SHA-256 of that body.
#[derive(Clone)]
pub struct JsonRendering {
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl JsonRendering {
    pub fn of<M: Serialize>(message: &M) -> Result<JsonRendering, Error> {
        let body = serde_json::to_vec(message).map_err(Error::internal)?;
        let etag = HeaderValue::from_str(&format!("\"{:x}\"", Sha256::digest(&body))).map_err(Error::internal)?;
        Ok(JsonRendering { body: body.into(), etag })
    }
}

/// A read's answer: shared through a cache, or built for this caller alone.
pub enum Page<M> {
    Shared(Arc<CachedMessage>),
    Own(M),
}

impl<M: Message + Default + Serialize> Page<M> {
    pub fn into_message(self) -> Result<M, Error> {
        match self {
            Page::Shared(entry) => entry.decode(),
            Page::Own(message) => Ok(message),
        }
    }

    /// The JSON rendering: a shared page's memo, or one made now.
    pub fn json(&self) -> Result<Cow<'_, JsonRendering>, Error> {
        match self {
            Page::Shared(entry) => entry.json::<M>().map(Cow::Borrowed),
            Page::Own(message) => JsonRendering::of(message).map(Cow::Owned),
        }
    }
}

#[derive(Clone)]
pub struct ReadCache {
    name: &'static str,
    lookups: Arc<LookupCounters>,
    local: Cache<String, Entry>,
    /// `None`: local only (entries whose shared copies could not be invalidated by key).
    shared_ttl: Option<Duration>,
}

/// How a read found its entry: `ticketing_cache_requests_total{result}`.
/// Its discriminant indexes [`LookupCounters`].
#[derive(Debug, Clone, Copy)]
enum Lookup {
    /// In this replica's memory.
    HitLocal = 0,
    /// In Redis, put there by another replica (or before a restart).
    HitRedis = 1,
    /// Built from the database.
    Miss = 2,
    /// Waited for another request's load of the same key.
    Coalesced = 3,
}

impl Lookup {
    const ALL: [Lookup; 4] = [Lookup::HitLocal, Lookup::HitRedis, Lookup::Miss, Lookup::Coalesced];

    fn as_str(self) -> &'static str {
        match self {
            Lookup::HitLocal => "hit_local",
            Lookup::HitRedis => "hit_redis",
            Lookup::Miss => "miss",
            Lookup::Coalesced => "coalesced",
        }
    }
}

/// One counter per [`Lookup`], registered once: every public read counts.
struct LookupCounters([metrics::Counter; Lookup::ALL.len()]);

impl LookupCounters {
    fn new(cache: &'static str) -> LookupCounters {
        LookupCounters(Lookup::ALL.map(
            |lookup| metrics::counter!("ticketing_cache_requests_total", "cache" => cache, "result" => lookup.as_str()),
        ))
    }
}

/// At most this many entries per replica and cache.
const LOCAL_CAPACITY: u64 = 10_000;

impl ReadCache {
    pub fn new(name: &'static str, local_ttl: Duration, shared_ttl: Option<Duration>) -> ReadCache {
        ReadCache {
            name,
            lookups: Arc::new(LookupCounters::new(name)),
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
            self.count(Lookup::HitLocal);
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
                    self.count(Lookup::HitRedis);
                    return Ok(Some(Arc::new(CachedMessage::new(bytes))));
                }
                self.count(Lookup::Miss);
                let built = load().await?;
                if let (Some(bytes), Some(ttl)) = (&built, self.shared_ttl)
                    && let Err(error) = redis.set_bytes(&shared_key, bytes.clone(), ttl).await
                {
                    tracing::debug!(%error, "cache entry not shared");
                }
                Ok::<_, Error>(built.map(|bytes| Arc::new(CachedMessage::new(bytes))))
            })
            .await
            .map_err(|error: Arc<Error>| error.reissue())?;
        if !loaded_here.load(Ordering::Relaxed) {
            self.count(Lookup::Coalesced);
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

    fn count(&self, lookup: Lookup) {
        self.lookups.0[lookup as usize].increment(1);
    }
}

#[cfg(test)]
mod tests {
    use ticketing_proto::v1;

    use super::*;

    #[test]
    fn a_cached_message_is_rendered_once_and_exactly_as_the_message_itself_renders() {
        let event = v1::Event {
            id: "0b6f7c2e-8a61-4d53-9d1c-3f8f1f4a2b10".into(),
            name: "Stadium \"night\" \u{1F3B8}".into(),
            start_time: Some(pbjson_types::Timestamp { seconds: 1_800_000_000, nanos: 0 }),
            ..Default::default()
        };
        let cached = CachedMessage::new(event.encode_to_vec());
        let first = cached.json::<v1::Event>().unwrap();
        let again = cached.json::<v1::Event>().unwrap();
        assert!(std::ptr::eq(first, again), "the second reader gets the first rendering");

        let fresh = JsonRendering::of(&event).unwrap();
        assert_eq!(first.body, fresh.body);
        assert_eq!(first.etag, fresh.etag);
        let other = JsonRendering::of(&v1::Event { name: "Another night".into(), ..event }).unwrap();
        assert_ne!(first.etag, other.etag, "the ETag follows the body");
    }
}
