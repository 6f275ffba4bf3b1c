//! A two-level cache for public reads: a small in-process cache in front of
//! Redis. An entry is rebuilt by one request per replica, so an expiry never
//! becomes a stampede on the database. For one more TTL past its expiry the
//! entry is served as it was while a task of its own rebuilds it
//! (stale-while-revalidate, as the HTTP caches in front are told), so no
//! reader waits for a routine refresh; past that, or for a key not cached,
//! readers wait for the rebuild and share its result or its error. Redis
//! errors only cost speed: the value is then built from the database.
//!
//! The in-process cache is `quick_cache`, not moka (which the rest of the
//! service uses): every hit here is a browse request, and moka's bookkeeping
//! per hit (an access time written on the shared entry, a read recorded for
//! its eviction policy, housekeeping run inline) was a tenth of browse's
//! server time. quick_cache's hit is a shard read lock and a clone; its
//! placeholders coalesce loads as moka's `try_get_with` did.
//!
//! An entry keeps its message encoded (gRPC's form, and Redis's) and, once a
//! REST reader asks, rendered as JSON with its `ETag`: every reader of a page
//! gets the same bytes until the entry expires, so they are rendered once per
//! entry rather than decoded, serialized and digested per request.

use std::{
    borrow::Cow,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::HeaderValue;
use prost::Message;
use quick_cache::sync::{Cache, EntryAction, EntryResult};
use rand::Rng;
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
    local: Arc<Cache<String, Slot>>,
    /// Numbers each loaded slot, so a refresh puts its result only over the
    /// slot it refreshed, never over a writer's newer one.
    generations: Arc<AtomicU64>,
    local_ttl: Duration,
    /// `None`: local only (entries whose shared copies could not be invalidated by key).
    shared_ttl: Option<Duration>,
}

/// What the local cache holds for a key.
#[derive(Clone)]
enum Slot {
    /// A load's result, served until `expires`; then, until `stale_until`,
    /// served while it reloads.
    Loaded { entry: Entry, expires: Instant, stale_until: Instant, generation: u64 },
    /// A load that failed at `at`: the requests that waited for it share its
    /// error; a request that asks later loads again.
    Failed { error: Arc<Error>, at: Instant },
}

/// What a read that missed the fast path found in the local cache.
enum Found {
    /// Another request's result: a fresh entry, or the error of a load this
    /// read waited for.
    Shared(Result<Entry, Arc<Error>>),
    /// An expired entry this read is to have reloaded, and is served.
    Refresh { stale: Entry, generation: u64 },
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
const LOCAL_CAPACITY: usize = 10_000;

impl ReadCache {
    pub fn new(name: &'static str, local_ttl: Duration, shared_ttl: Option<Duration>) -> ReadCache {
        ReadCache {
            name,
            lookups: Arc::new(LookupCounters::new(name)),
            local: Arc::new(Cache::new(LOCAL_CAPACITY)),
            generations: Arc::new(AtomicU64::new(0)),
            local_ttl,
            shared_ttl,
        }
    }

    /// The cached value of `key`, or what `load` builds (then cached).
    /// `load`'s future owns what it reads with: a refresh runs it on a task
    /// of its own.
    pub async fn get_or_load<F, Fut>(&self, redis: &Redis, key: String, load: F) -> Result<Entry, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Vec<u8>>, Error>> + Send + 'static,
    {
        let asked = Instant::now();
        if let Some(Slot::Loaded { entry, expires, .. }) = self.local.get(key.as_str())
            && expires > asked
        {
            self.count(Lookup::HitLocal);
            return Ok(entry);
        }
        // Boxed: the miss's futures (the placeholder, Redis, the database)
        // take kilobytes, and every caller's future would carry, and move,
        // that much on every hit.
        Box::pin(self.get_or_load_missing(redis, key, load, asked)).await
    }

    /// A key missing or expired: have it refreshed and be served it as it
    /// was, or take its placeholder, or wait for the request that holds it
    /// and take what it leaves.
    async fn get_or_load_missing<F, Fut>(
        &self,
        redis: &Redis,
        key: String,
        load: F,
        asked: Instant,
    ) -> Result<Entry, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Vec<u8>>, Error>> + Send + 'static,
    {
        let found = self
            .local
            .entry_async(key.as_str(), |_, slot| {
                let now = Instant::now();
                match slot {
                    Slot::Loaded { entry, expires, .. } if *expires > now => {
                        EntryAction::Retain(Found::Shared(Ok(entry.clone())))
                    }
                    // This reader has it reloaded; the slot reads as fresh
                    // to the others until `stale_until`, so they do not wait.
                    Slot::Loaded { entry, expires, stale_until, generation } if *stale_until > now => {
                        *expires = *stale_until;
                        EntryAction::Retain(Found::Refresh { stale: entry.clone(), generation: *generation })
                    }
                    Slot::Failed { error, at } if *at >= asked => {
                        EntryAction::Retain(Found::Shared(Err(error.clone())))
                    }
                    Slot::Loaded { .. } | Slot::Failed { .. } => EntryAction::ReplaceWithGuard,
                }
            })
            .await;
        let placeholder = match found {
            EntryResult::Retained(Found::Shared(shared)) => {
                self.count(Lookup::Coalesced);
                return shared.map_err(|error| error.reissue());
            }
            EntryResult::Retained(Found::Refresh { stale, generation }) => {
                self.refresh(redis, key, load(), generation);
                self.count(Lookup::HitLocal);
                return Ok(stale);
            }
            EntryResult::Vacant(placeholder) | EntryResult::Replaced(placeholder, _) => placeholder,
            // Neither is asked for: no callback above removes, and the async
            // form has no timeout. Load without the placeholder.
            EntryResult::Removed(..) | EntryResult::Timeout => return self.load(redis, &key, load).await,
        };
        let slot = match self.load(redis, &key, load).await {
            Ok(entry) => self.loaded(entry),
            Err(error) => Slot::Failed { error: Arc::new(error), at: Instant::now() },
        };
        // Fails only when the key was invalidated meanwhile: then this
        // answer is not kept, and the next request loads again.
        let _ = placeholder.insert(slot.clone());
        match slot {
            Slot::Loaded { entry, .. } => Ok(entry),
            Slot::Failed { error, .. } => Err(error.reissue()),
        }
    }

    /// Reloads an expired entry on a task of its own while it is served as it
    /// was, and puts the result over it unless a writer has replaced or
    /// removed it since. A failed reload leaves the old entry to its
    /// `stale_until`; then readers wait for a load and share its error.
    fn refresh<Fut>(&self, redis: &Redis, key: String, load: Fut, generation: u64)
    where
        Fut: Future<Output = Result<Option<Vec<u8>>, Error>> + Send + 'static,
    {
        let (cache, redis) = (self.clone(), redis.clone());
        tokio::spawn(async move {
            let fresh = match cache.load(&redis, &key, || load).await {
                Ok(fresh) => fresh,
                Err(error) => {
                    tracing::debug!(%error, cache = cache.name, "expired entry not reloaded; served as it was");
                    return;
                }
            };
            let reloaded = cache.loaded(fresh);
            // A vacant key (invalidated meanwhile) hands back a placeholder,
            // dropped here unfilled: the next reader loads.
            let _ = cache
                .local
                .entry_async(key.as_str(), move |_, slot| {
                    if matches!(slot, Slot::Loaded { generation: current, .. } if *current == generation) {
                        *slot = reloaded;
                    }
                    EntryAction::Retain(())
                })
                .await;
        });
    }

    fn loaded(&self, entry: Entry) -> Slot {
        let expires = Instant::now() + self.local_ttl;
        Slot::Loaded {
            entry,
            expires,
            stale_until: expires + self.local_ttl,
            generation: self.generations.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The entry from Redis, or built by `load` (and shared through Redis).
    async fn load<F, Fut>(&self, redis: &Redis, key: &str, load: F) -> Result<Entry, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Vec<u8>>, Error>>,
    {
        let shared_key = self.shared_key(key);
        if self.shared_ttl.is_some()
            && let Ok(Some(bytes)) = redis.get_bytes(&shared_key).await
        {
            self.count(Lookup::HitRedis);
            return Ok(Some(Arc::new(CachedMessage::new(bytes))));
        }
        self.count(Lookup::Miss);
        let built = load().await?;
        // Only where nothing is: a writer's page (see [`ReadCache::replace`])
        // put while this load read an older copy is kept.
        if let (Some(bytes), Some(ttl)) = (&built, self.shared_ttl)
            && let Err(error) = redis.set_if_absent(&shared_key, bytes.clone(), shared_copy_ttl(ttl)).await
        {
            tracing::debug!(%error, "cache entry not shared");
        }
        Ok(built.map(|bytes| Arc::new(CachedMessage::new(bytes))))
    }

    /// Puts `value`, which a writer has just read from the primary, as
    /// `key`'s entry here and in Redis. Loads of `key` under way keep what
    /// they read to themselves: their placeholder no longer holds the key,
    /// and they share through Redis only where nothing is.
    pub async fn replace(&self, redis: &Redis, key: String, value: Option<Vec<u8>>) {
        if let Some(ttl) = self.shared_ttl {
            let shared_key = self.shared_key(&key);
            let shared = match &value {
                Some(bytes) => redis.set_bytes(&shared_key, bytes.clone(), shared_copy_ttl(ttl)).await,
                // "Not public" is remembered locally only.
                None => redis.delete(&shared_key).await,
            };
            if let Err(error) = shared {
                tracing::warn!(%error, "changed cache entry not shared; other replicas keep theirs until its TTL");
            }
        }
        let entry = value.map(|bytes| Arc::new(CachedMessage::new(bytes)));
        self.local.insert(key, self.loaded(entry));
    }

    /// Forgets `key` here and in Redis (other replicas' local copies expire
    /// within the local TTL).
    pub async fn invalidate(&self, redis: &Redis, key: &str) {
        self.local.remove(key);
        if self.shared_ttl.is_some() {
            let _ = redis.delete(&self.shared_key(key)).await;
        }
    }

    fn shared_key(&self, key: &str) -> String {
        format!("cache:{}:{key}", self.name)
    }

    /// Forgets every local entry.
    pub fn invalidate_all(&self) {
        self.local.clear();
    }

    fn count(&self, lookup: Lookup) {
        self.lookups.0[lookup as usize].increment(1);
    }
}

/// A shared copy's life: the TTL less up to a fifth, drawn for each copy.
/// Pages loaded together (a replica's first readers, a bulk publish) would
/// otherwise lapse together, and every TTL all their reloads would hit the
/// read replica in the same moment (ci/bench browse: a slow second every
/// 5 s). Never longer than the TTL, so the documented staleness holds.
fn shared_copy_ttl(ttl: Duration) -> Duration {
    ttl.mul_f64(rand::thread_rng().gen_range(0.8..=1.0))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::future::join_all;
    use secrecy::SecretString;
    use ticketing_proto::v1;
    use ticketing_store::redis::RedisSettings;
    use tokio::sync::Notify;

    use super::*;

    /// A local-only cache never calls Redis: this one points nowhere.
    fn unreachable_redis() -> Redis {
        Redis::start(&RedisSettings {
            url: SecretString::from("redis://127.0.0.1:1".to_owned()),
            key_prefix: "test:".into(),
            pool_size: 1,
            command_timeout: Duration::from_millis(50),
        })
        .expect("a client")
    }

    /// A load that counts itself and answers once `gate` opens.
    #[derive(Clone, Default)]
    struct HeldLoad {
        loads: Arc<AtomicUsize>,
        gate: Arc<Notify>,
    }

    impl HeldLoad {
        fn loads(&self) -> usize {
            self.loads.load(Ordering::SeqCst)
        }
    }

    /// Lets tasks spawned on this (single-threaded) test runtime, such as a
    /// background reload, run as far as they can.
    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    /// Twenty readers of one key while its load is held open: the answers
    /// each got, once the load has answered `answer`.
    async fn twenty_readers(
        cache: &ReadCache,
        redis: &Redis,
        held: &HeldLoad,
        answer: Result<Vec<u8>, Error>,
    ) -> Vec<Result<Entry, Error>> {
        let answer = Arc::new(answer);
        let readers = (0..20).map(|_| {
            let (held, answer) = (held.clone(), answer.clone());
            cache.get_or_load(redis, "event:1".into(), move || async move {
                held.loads.fetch_add(1, Ordering::SeqCst);
                held.gate.notified().await;
                answer.as_ref().as_ref().map(|bytes| Some(bytes.clone())).map_err(Error::reissue)
            })
        });
        let opened = async {
            // Let every reader, and a reload of its own, reach the gate first.
            settle().await;
            held.gate.notify_waiters();
        };
        let (answers, ()) = tokio::join!(join_all(readers), opened);
        settle().await;
        answers
    }

    fn page(answer: Result<Entry, Error>) -> Vec<u8> {
        answer.expect("loaded").expect("public").encoded.clone()
    }

    fn answering(bytes: &'static [u8]) -> impl FnOnce() -> futures::future::Ready<Result<Option<Vec<u8>>, Error>> {
        move || futures::future::ready(Ok(Some(bytes.to_vec())))
    }

    #[tokio::test]
    async fn readers_waiting_for_a_failed_load_share_its_error_and_the_next_reader_loads_again() {
        let (cache, redis) = (ReadCache::new("test", Duration::from_secs(60), None), unreachable_redis());
        let held = HeldLoad::default();
        let failed = Err(Error::unavailable("the replica is gone", Duration::from_secs(1)));
        let answers = twenty_readers(&cache, &redis, &held, failed).await;
        assert_eq!(held.loads(), 1, "one load for twenty readers, though it failed");
        assert!(answers.iter().all(|answer| answer.as_ref().is_err_and(|e| e.message == "the replica is gone")));

        // The failure is not cached: the next reader loads, and succeeds.
        let loaded = cache.get_or_load(&redis, "event:1".into(), answering(b"page")).await;
        assert_eq!(page(loaded), b"page");
    }

    #[tokio::test]
    async fn an_entry_expired_past_its_grace_is_loaded_again_once_for_all_its_readers() {
        let (cache, redis) = (ReadCache::new("test", Duration::from_millis(1), None), unreachable_redis());
        let first = cache.get_or_load(&redis, "event:1".into(), answering(b"old")).await;
        assert_eq!(page(first), b"old");
        // Past its TTL and the one more TTL it may be served as it was.
        tokio::time::sleep(Duration::from_millis(5)).await;

        let held = HeldLoad::default();
        let answers = twenty_readers(&cache, &redis, &held, Ok(b"new".to_vec())).await;
        assert_eq!(held.loads(), 1, "one reload for twenty readers of an expired entry");
        for answer in answers {
            assert_eq!(page(answer), b"new", "no reader gets the page past its grace");
        }
    }

    /// A cache with a TTL of a second and an entry "old" loaded 1.2 s ago:
    /// expired, and within the one more TTL it is served as it was.
    async fn expired_a_moment_ago(redis: &Redis) -> ReadCache {
        let cache = ReadCache::new("test", Duration::from_secs(1), None);
        let first = cache.get_or_load(redis, "event:1".into(), answering(b"old")).await;
        assert_eq!(page(first), b"old");
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        cache
    }

    #[tokio::test]
    async fn an_entry_just_expired_is_served_as_it_was_while_a_task_reloads_it() {
        let redis = unreachable_redis();
        let cache = expired_a_moment_ago(&redis).await;
        let held = HeldLoad::default();
        let pages: Vec<_> =
            twenty_readers(&cache, &redis, &held, Ok(b"new".to_vec())).await.into_iter().map(page).collect();
        assert_eq!(held.loads(), 1, "one reload for twenty readers");
        assert!(
            pages.iter().all(|page| page.as_slice() == b"old"),
            "every reader was served the expired page, none waited for the reload: {pages:?}"
        );
        let next = cache.get_or_load(&redis, "event:1".into(), answering(b"again")).await;
        assert_eq!(page(next), b"new", "the reload is kept");
    }

    #[tokio::test]
    async fn a_failed_reload_leaves_the_expired_page_served_only_until_one_more_ttl_has_passed() {
        let redis = unreachable_redis();
        let cache = expired_a_moment_ago(&redis).await;
        let failing = || async { Err(Error::unavailable("the replica is gone", Duration::from_secs(1))) };
        let reloading = cache.get_or_load(&redis, "event:1".into(), failing).await;
        assert_eq!(page(reloading), b"old");
        settle().await;
        let after_the_failure = cache.get_or_load(&redis, "event:1".into(), failing).await;
        assert_eq!(page(after_the_failure), b"old", "still served as it was, within its grace");

        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let past_grace = cache.get_or_load(&redis, "event:1".into(), failing).await;
        assert!(
            past_grace.is_err_and(|error| error.message == "the replica is gone"),
            "two TTLs after its load the page is no longer served"
        );
    }

    /// What a writer does to the page while a load of its old row runs.
    #[derive(Clone, Copy)]
    enum Change {
        /// The writer puts the new page ("changed").
        PutsItsPage,
        /// The writer invalidates the key.
        Invalidates,
    }

    /// One read of "event:1" whose load reads the old row while a writer
    /// makes `change`: the page that read was answered.
    async fn read_while_a_writer(change: Change, cache: &ReadCache, redis: &Redis) -> Vec<u8> {
        let (writer, writer_redis) = (cache.clone(), redis.clone());
        let read = cache.get_or_load(redis, "event:1".into(), move || async move {
            match change {
                Change::PutsItsPage => writer.replace(&writer_redis, "event:1".into(), Some(b"changed".to_vec())).await,
                Change::Invalidates => writer.invalidate(&writer_redis, "event:1").await,
            }
            Ok(Some(b"read before the change".to_vec()))
        });
        let page = page(read.await);
        // A background reload, if the read started one, finishes first.
        settle().await;
        page
    }

    #[tokio::test]
    async fn a_writers_page_put_while_an_expired_entry_reloads_is_the_one_kept() {
        let redis = unreachable_redis();
        let cache = expired_a_moment_ago(&redis).await;
        let served = read_while_a_writer(Change::PutsItsPage, &cache, &redis).await;
        assert_eq!(served, b"old", "served as it was while it reloads");
        let next = cache.get_or_load(&redis, "event:1".into(), answering(b"reloaded")).await;
        assert_eq!(page(next), b"changed", "the writer's page, not the reload's");
    }

    #[tokio::test]
    async fn a_page_invalidated_while_an_expired_entry_reloads_is_not_kept() {
        let redis = unreachable_redis();
        let cache = expired_a_moment_ago(&redis).await;
        assert_eq!(read_while_a_writer(Change::Invalidates, &cache, &redis).await, b"old");
        let next = cache.get_or_load(&redis, "event:1".into(), answering(b"changed")).await;
        assert_eq!(page(next), b"changed", "the next reader loads the change");
    }

    #[tokio::test]
    async fn a_page_invalidated_while_it_loads_is_not_kept() {
        let (cache, redis) = (ReadCache::new("test", Duration::from_secs(60), None), unreachable_redis());
        // The event changes (and is invalidated) while its old row is read.
        let served = read_while_a_writer(Change::Invalidates, &cache, &redis).await;
        assert_eq!(served, b"read before the change");
        let next = cache.get_or_load(&redis, "event:1".into(), answering(b"changed")).await;
        assert_eq!(page(next), b"changed", "the next reader loads the change");
    }

    #[tokio::test]
    async fn a_writers_page_put_while_an_older_copy_loads_is_the_one_kept() {
        let (cache, redis) = (ReadCache::new("test", Duration::from_secs(60), None), unreachable_redis());
        // The event changes, and its writer puts the new page, while a
        // lagging replica's old row is read.
        let served = read_while_a_writer(Change::PutsItsPage, &cache, &redis).await;
        assert_eq!(served, b"read before the change");
        let next = cache.get_or_load(&redis, "event:1".into(), answering(b"reloaded")).await;
        assert_eq!(page(next), b"changed", "the writer's page, without a load");
    }

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
