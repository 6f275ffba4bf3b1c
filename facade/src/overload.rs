//! Overload control in front of every transport: adaptive concurrency
//! limits (AIMD, as in Netflix's concurrency-limits) per replica. Past a
//! limit a request waits briefly for room, then is shed at once with 503 /
//! UNAVAILABLE, reason OVERLOADED, `Retry-After` — a fast answer instead of a
//! queue that ends in timeouts.
//!
//! Two bulkheads, each with its own limit adapting on its own latency:
//! browsing (cacheable catalog reads) and everything else. Orders queueing
//! for the database during a sale then shed orders, not the cheap reads
//! beside them (one shared limit shed browsing first: at 5,000 arrivals/s
//! with a tenth of them orders it refused 70 % of answers, nearly all cache
//! hits). Within the second bulkhead standard calls fill 90 % of the limit
//! and check-in and payment notifications all of it plus a reserve: they are
//! shed last.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{body::HttpBody as _, extract::Request, http::HeaderMap, response::Response};
use futures::future::{BoxFuture, Either};
use ticketing_domain::{Code, Error, error::Resource};
use ticketing_service::{
    Config,
    grpc::{
        Services,
        status::{DatabaseOverloaded, is_database_overload},
    },
    load_class::LoadClass as Class,
};
use tokio::sync::Notify;

/// The part of its bulkhead's limit standard calls may fill: the rest is
/// check-in's reserve when writes pile up.
pub const STANDARD_SHARE: f64 = 0.9;

/// The part of its bulkhead's limit a class may fill.
fn share(class: Class) -> f64 {
    match class {
        Class::Browse | Class::Critical => 1.0,
        Class::Standard => STANDARD_SHARE,
    }
}

/// What the limit adapts on: a smoothed latency (one slow outlier is not
/// overload) and when it last backed off (at most once per objective
/// interval, as AIMD backs off once per round trip).
struct Control {
    smoothed_latency: Duration,
    last_decrease: Option<Instant>,
}

/// The bulkheads: browsing, and everything else.
#[derive(Clone)]
pub struct Bulkheads {
    browse: AdaptiveLimit,
    other: AdaptiveLimit,
    /// A body must arrive within this, and be at most `max_body_bytes`.
    body_read_timeout: Duration,
    max_body_bytes: usize,
}

impl Bulkheads {
    pub fn new(config: &Config) -> Bulkheads {
        Bulkheads {
            browse: AdaptiveLimit::new(config, "browse"),
            other: AdaptiveLimit::new(config, "other"),
            body_read_timeout: config.body_read_timeout,
            max_body_bytes: config.max_request_bytes,
        }
    }

    /// The request with its body read into memory, or why it could not be.
    async fn read_body(&self, request: Request, is_grpc: bool) -> Result<Request, Error> {
        let (parts, body) = request.into_parts();
        // The routes judge sizes themselves (REST's body limit, tonic's
        // message limit, each with its own answer); this only bounds what a
        // request may make the replica hold.
        let limit = self.max_body_bytes.saturating_mul(4).saturating_add(64);
        match tokio::time::timeout(self.body_read_timeout, axum::body::to_bytes(body, limit)).await {
            Ok(Ok(bytes)) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
            Ok(Err(_)) if is_grpc => Err(Error::new(Code::ResourceExhausted, "the request is too large or broken")
                .with_reason(ticketing_domain::Reason::RequestTooLarge)),
            Ok(Err(_)) => Err(Error::invalid_argument("the request body is too large or broken")
                .with_reason(ticketing_domain::Reason::RequestTooLarge)),
            Err(_) => {
                metrics::counter!("ticketing_body_read_timeouts_total").increment(1);
                Err(Error::invalid_argument("the request body did not arrive in time")
                    .with_reason(ticketing_domain::Reason::RequestBodyTimeout))
            }
        }
    }

    fn of(&self, class: Class) -> &AdaptiveLimit {
        if class == Class::Browse { &self.browse } else { &self.other }
    }
}

#[derive(Clone)]
pub struct AdaptiveLimit {
    inner: Arc<Inner>,
}

struct Inner {
    /// `ticketing_concurrency_limit` of this bulkhead, registered once:
    /// every request moves it.
    limit_gauge: metrics::Gauge,
    /// Held while the limit adapts, so adaptations never interleave.
    control: Mutex<Control>,
    /// The limit (an f64's bits): every admission reads it without the lock.
    limit: AtomicU64,
    in_flight: AtomicUsize,
    /// Slots only critical requests may take, beyond the limit: when the
    /// limit has just shrunk below what browsing and buying hold, the gates
    /// and payment notifications still get in.
    reserved_in_flight: AtomicUsize,
    reserve: usize,
    room: Notify,
    min: f64,
    max: f64,
    objective: Duration,
    max_wait: Duration,
}

impl AdaptiveLimit {
    pub fn new(config: &Config, name: &'static str) -> AdaptiveLimit {
        let max = f64::from(config.concurrency_max.max(1));
        let limit_gauge = metrics::gauge!("ticketing_concurrency_limit", "bulkhead" => name);
        limit_gauge.set(max);
        AdaptiveLimit {
            inner: Arc::new(Inner {
                limit_gauge,
                control: Mutex::new(Control { smoothed_latency: Duration::ZERO, last_decrease: None }),
                limit: AtomicU64::new(max.to_bits()),
                in_flight: AtomicUsize::new(0),
                reserved_in_flight: AtomicUsize::new(0),
                reserve: (config.concurrency_min as usize / 4).max(2),
                room: Notify::new(),
                min: f64::from(config.concurrency_min.clamp(1, config.concurrency_max.max(1))),
                max,
                objective: config.latency_objective,
                max_wait: config.concurrency_max_wait,
            }),
        }
    }

    fn limit(&self) -> f64 {
        f64::from_bits(self.inner.limit.load(Ordering::Relaxed))
    }

    /// Takes a slot if this class still has room under the limit (critical
    /// requests, failing that, in the reserve).
    fn try_admit(&self, class: Class) -> Option<Pool> {
        let take = |counter: &AtomicUsize, allowed: usize| {
            counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < allowed).then_some(n + 1)).is_ok()
        };
        let allowed = ((self.limit() * share(class)).floor() as usize).max(1);
        if take(&self.inner.in_flight, allowed) {
            return Some(Pool::Shared);
        }
        (class == Class::Critical && take(&self.inner.reserved_in_flight, self.inner.reserve)).then_some(Pool::Reserve)
    }

    async fn admit(&self, class: Class) -> Option<Pool> {
        // Room at once is the common case: no clock read for it.
        if let Some(pool) = self.try_admit(class) {
            return Some(pool);
        }
        let deadline = tokio::time::Instant::now() + self.inner.max_wait;
        loop {
            let room = self.inner.room.notified();
            if let Some(pool) = self.try_admit(class) {
                return Some(pool);
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return self.try_admit(class);
            }
        }
    }

    fn free(&self, pool: Pool) {
        let counter = match pool {
            Pool::Shared => &self.inner.in_flight,
            Pool::Reserve => &self.inner.reserved_in_flight,
        };
        counter.fetch_sub(1, Ordering::AcqRel);
        self.inner.room.notify_one();
    }

    /// Multiplicative decrease on overload — the smoothed latency past the
    /// objective, or the database pool gave up — at most once per objective
    /// interval; additive increase (about +1 per limit's worth of good
    /// answers) otherwise.
    fn adapt(&self, latency: Duration, overloaded_downstream: bool, now: Instant) {
        let mut control = self.inner.control.lock().unwrap_or_else(|p| p.into_inner());
        let before = self.limit();
        let mut limit = before;
        control.smoothed_latency = control.smoothed_latency.mul_f64(0.9) + latency.mul_f64(0.1);
        let overloaded = overloaded_downstream || control.smoothed_latency > self.inner.objective;
        let may_decrease = control.last_decrease.is_none_or(|at| now.duration_since(at) >= self.inner.objective);
        if overloaded && may_decrease {
            limit = (limit * 0.9).max(self.inner.min);
            control.last_decrease = Some(now);
        } else if !overloaded {
            limit = (limit + 1.0 / limit).min(self.inner.max);
        }
        // At its maximum (a healthy replica's usual state) the limit stays put.
        if limit != before {
            self.inner.limit.store(limit.to_bits(), Ordering::Relaxed);
            self.inner.limit_gauge.set(limit);
        }
    }
}

/// Where an admitted request's slot came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pool {
    Shared,
    Reserve,
}

/// An admitted request's slot; freed when dropped, so a request abandoned
/// mid-flight (client gone) never keeps its slot.
pub(crate) struct Slot(AdaptiveLimit, Pool);

impl Slot {
    /// The call answered: its latency, and whether the database said it was
    /// overloaded, adapt the limit; the slot is freed.
    fn answered(self, started: Instant, response: &Response) {
        let finished = Instant::now();
        self.0.adapt(finished - started, database_overloaded(response), finished);
    }
}

#[cfg(test)]
impl Bulkheads {
    /// Every slot `class` may take in its bulkhead, held until dropped.
    pub(crate) fn fill(&self, class: Class) -> Vec<Slot> {
        let limiter = self.of(class);
        std::iter::from_fn(|| limiter.try_admit(class).map(|pool| Slot(limiter.clone(), pool))).collect()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.free(self.1);
    }
}

/// Overload control as one layer in front of every route: each request is
/// admitted (or shed) by the class `classify` gives it; a request without a
/// class (documents, unknown paths) passes. A tower layer rather than
/// `from_fn` per route: those cloned each route's whole stack per request,
/// and the per-route boxes were themselves cloned per request.
#[derive(Clone)]
pub struct OverloadLayer {
    bulkheads: Bulkheads,
    classify: fn(&Request) -> Option<Class>,
}

impl OverloadLayer {
    pub fn new(bulkheads: Bulkheads, classify: fn(&Request) -> Option<Class>) -> OverloadLayer {
        OverloadLayer { bulkheads, classify }
    }
}

impl<S> tower::Layer<S> for OverloadLayer {
    type Service = Overload<S>;

    fn layer(&self, inner: S) -> Overload<S> {
        Overload { layer: self.clone(), inner }
    }
}

#[derive(Clone)]
pub struct Overload<S> {
    layer: OverloadLayer,
    inner: S,
}

impl<S> tower::Service<Request> for Overload<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<BoxFuture<'static, Result<Response, Infallible>>, Guarded<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let Some(class) = (self.layer.classify)(&request) else {
            return Either::Right(Guarded::new(None, self.inner.call(request)));
        };
        // The common case, a request with no body to read that finds room at once
        // (every page view), runs on the service polled ready, in place: no
        // clone of the stack below, no boxed future.
        if !has_body_to_read(&request) {
            let limiter = self.layer.bulkheads.of(class);
            if let Some(pool) = limiter.try_admit(class) {
                return Either::Right(Guarded::new(Some(Slot(limiter.clone(), pool)), self.inner.call(request)));
            }
        }
        // Otherwise it waits (for its body, for room), on the service that
        // was polled ready.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let bulkheads = self.layer.bulkheads.clone();
        Either::Left(Box::pin(async move { Ok(guard(&bulkheads, class, request, ready).await) }))
    }
}

async fn guard<S>(bulkheads: &Bulkheads, class: Class, request: Request, mut ready: S) -> Response
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    let limiter = bulkheads.of(class);
    let is_grpc = crate::respond::is_grpc(&request);
    // The body is read before the request takes a slot, within a deadline:
    // a client dripping its body holds a connection, never a slot.
    let request = if has_body_to_read(&request) {
        match bulkheads.read_body(request, is_grpc).await {
            Ok(request) => request,
            Err(error) => return crate::respond::error_response(is_grpc, error),
        }
    } else {
        request
    };
    let Some(pool) = limiter.admit(class).await else {
        metrics::counter!("ticketing_shed_total", "class" => class.as_str()).increment(1);
        let error =
            Error::overloaded(Resource::Capacity, "the service is overloaded, retry shortly", Duration::from_secs(1));
        return crate::respond::error_response(is_grpc, error);
    };
    let slot = Slot(limiter.clone(), pool);
    let Ok(response) = Guarded::new(Some(slot), ready.call(request)).await;
    response
}

/// Whether a request's body is read before it is admitted: not when it has
/// none (a GET), nor when it is streamed (gRPC reflection: the body is the
/// call itself).
fn has_body_to_read(request: &Request) -> bool {
    !request.body().is_end_stream() && !Services::streams_requests(request.uri().path())
}

pin_project_lite::pin_project! {
    /// A call in flight, holding its slot (none for a request without a
    /// class), which it gives back, adapting the limit, once answered.
    pub struct Guarded<F> {
        #[pin]
        call: F,
        admitted: Option<(Slot, Instant)>,
    }
}

impl<F> Guarded<F> {
    fn new(slot: Option<Slot>, call: F) -> Guarded<F> {
        Guarded { call, admitted: slot.map(|slot| (slot, Instant::now())) }
    }
}

impl<F> Future for Guarded<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = std::task::ready!(this.call.poll(cx));
        if let Some((slot, started)) = this.admitted.take() {
            slot.answered(started, &response);
        }
        Poll::Ready(Ok(response))
    }
}

/// The database's own overload signal on an answer: REST answers carry the
/// marker the error rendering set, gRPC ones their status in the headers
/// (a unary error is trailers-only). Any other 503 (an open payment
/// breaker, a downstream outage) says nothing about the database.
fn database_overloaded(response: &Response) -> bool {
    response.extensions().get::<DatabaseOverloaded>().is_some() || grpc_database_overload(response.headers())
}

fn grpc_database_overload(headers: &HeaderMap) -> bool {
    // Decode the details only for UNAVAILABLE (14): answers that say nothing pay nothing.
    headers.get(crate::header_names::GRPC_STATUS).is_some_and(|code| code == "14")
        && tonic::Status::from_header_map(headers).is_some_and(|status| is_database_overload(&status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(min: u32, max: u32) -> ticketing_service::Config {
        let mut config = ticketing_service::Config::from_lookup(|name| match name {
            "ENV" => Some("development".into()),
            "DATABASE_URL" => Some("postgres://x/y".into()),
            "REDIS_URL" => Some("redis://x".into()),
            _ => None,
        })
        .unwrap();
        config.concurrency_min = min;
        config.concurrency_max = max;
        config.latency_objective = Duration::from_millis(100);
        config
    }

    fn limiter(min: u32, max: u32) -> AdaptiveLimit {
        AdaptiveLimit::new(&config(min, max), "test")
    }

    #[test]
    fn classes_fill_their_share_of_the_limit_and_critical_calls_have_a_reserve() {
        let limiter = limiter(1, 10);
        let standard = (0..20).filter(|_| limiter.try_admit(Class::Standard).is_some()).count();
        assert_eq!(standard, 9, "up to 9 in flight for standard requests");
        let critical: Vec<_> = (0..20).filter_map(|_| limiter.try_admit(Class::Critical)).collect();
        assert_eq!(critical, [Pool::Shared, Pool::Reserve, Pool::Reserve], "the last slot, then the reserve");
    }

    #[test]
    fn browsing_and_writes_fill_separate_bulkheads() {
        let bulkheads = Bulkheads::new(&config(1, 10));
        let standard = (0..20).filter(|_| bulkheads.of(Class::Standard).try_admit(Class::Standard).is_some()).count();
        assert_eq!(standard, 9);
        let browse = (0..20).filter(|_| bulkheads.of(Class::Browse).try_admit(Class::Browse).is_some()).count();
        assert_eq!(browse, 10, "writes holding their bulkhead leave browsing its own");
        assert!(bulkheads.of(Class::Critical).try_admit(Class::Critical).is_some(), "and the gates theirs");
    }

    #[test]
    fn a_shrunken_limit_below_what_is_in_flight_still_admits_critical_calls() {
        let limiter = limiter(4, 8);
        let standard = (0..20).filter(|_| limiter.try_admit(Class::Standard).is_some()).count();
        assert_eq!(standard, 7);
        // Sustained slowness: the limit falls to its minimum while 7 are in flight.
        for n in 0..20 {
            limiter.adapt(Duration::from_secs(1), true, Instant::now() + Duration::from_secs(n));
        }
        assert_eq!(limiter.limit(), 4.0);
        assert_eq!(limiter.try_admit(Class::Standard), None);
        assert_eq!(limiter.try_admit(Class::Critical), Some(Pool::Reserve), "the gates still get in");
    }

    #[test]
    fn sustained_slowness_shrinks_the_limit_once_per_interval_and_fast_answers_grow_it_back() {
        let limiter = limiter(4, 100);
        let start = Instant::now();
        let complete = |latency: Duration, overloaded: bool, at: Duration| {
            let pool = limiter.try_admit(Class::Critical).expect("admitted");
            drop(Slot(limiter.clone(), pool));
            limiter.adapt(latency, overloaded, start + at);
        };
        // One slow outlier among fast answers is not overload.
        complete(Duration::from_secs(1), false, Duration::ZERO);
        assert_eq!(limiter.limit(), 100.0);
        // Sustained slowness: the limit backs off, but once per 100 ms interval only.
        for n in 0..30 {
            complete(Duration::from_secs(1), false, Duration::from_millis(n));
        }
        assert_eq!(limiter.limit(), 90.0, "one decrease within one interval");
        for n in 1..=30 {
            complete(Duration::from_secs(1), false, Duration::from_millis(100 * n));
        }
        let shrunk = limiter.limit();
        assert!(shrunk < 10.0, "{shrunk}");
        for n in 0..60 {
            complete(Duration::from_millis(1), false, Duration::from_secs(10) + Duration::from_millis(n));
        }
        assert!(limiter.limit() > shrunk, "fast answers grow it back");
        for n in 0..200 {
            complete(Duration::from_millis(1), true, Duration::from_secs(20) + Duration::from_millis(100 * n));
        }
        assert_eq!(limiter.limit(), 4.0, "never below the minimum");
    }

    #[test]
    fn an_abandoned_request_gives_its_slot_back() {
        let limiter = limiter(1, 1);
        let slot = Slot(limiter.clone(), limiter.try_admit(Class::Standard).expect("admitted"));
        assert_eq!(limiter.try_admit(Class::Standard), None);
        drop(slot); // as when the request's future is dropped mid-flight
        assert_eq!(limiter.try_admit(Class::Standard), Some(Pool::Shared));
    }

    /// The overload layer around a handler that answers once `answer` says
    /// so; every request is a page view.
    fn held_pages(
        bulkheads: Bulkheads,
        answer: tokio::sync::watch::Receiver<bool>,
    ) -> Overload<impl tower::Service<Request, Response = Response, Error = Infallible, Future: Send> + Clone + Send>
    {
        let handler = tower::service_fn(move |_: Request| {
            let mut answer = answer.clone();
            async move {
                let _ = answer.wait_for(|go| *go).await;
                Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
            }
        });
        tower::Layer::layer(&OverloadLayer::new(bulkheads, |_| Some(Class::Browse)), handler)
    }

    fn page_view() -> Request {
        Request::builder().uri("/v1/events").body(axum::body::Body::empty()).expect("request")
    }

    #[tokio::test]
    async fn a_page_view_admitted_at_once_holds_its_slot_until_it_answers_or_is_abandoned() {
        use tower::{Service, ServiceExt};
        let mut config = config(1, 1);
        config.concurrency_max_wait = Duration::from_millis(5);
        let bulkheads = Bulkheads::new(&config);
        let (answer, answering) = tokio::sync::watch::channel(false);
        let mut pages = held_pages(bulkheads.clone(), answering);

        let in_flight = pages.ready().await.unwrap().call(page_view());
        let shed = pages.clone().oneshot(page_view()).await.unwrap();
        assert_eq!(shed.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE, "the one slot is taken");
        answer.send_replace(true);
        assert_eq!(in_flight.await.unwrap().status(), axum::http::StatusCode::OK);
        let freed = bulkheads.of(Class::Browse).try_admit(Class::Browse);
        assert_eq!(freed, Some(Pool::Shared), "freed once answered");
        drop(Slot(bulkheads.browse.clone(), Pool::Shared));

        answer.send_replace(false);
        let abandoned = pages.ready().await.unwrap().call(page_view());
        assert_eq!(bulkheads.of(Class::Browse).try_admit(Class::Browse), None, "taken by the call in flight");
        drop(abandoned); // the client went away
        assert_eq!(bulkheads.of(Class::Browse).try_admit(Class::Browse), Some(Pool::Shared), "freed when dropped");
    }

    #[test]
    fn only_the_databases_overload_shrinks_the_limit() {
        let answer = |error: Error| crate::respond::error_response(false, error);
        let grpc_answer = |error: Error| crate::respond::error_response(true, error);
        let pool_gave_up =
            || Error::overloaded(Resource::Database, "the service is busy, retry shortly", Duration::from_secs(1));
        let hashing_full =
            || Error::overloaded(Resource::PasswordHashing, "too many sign-ins at once", Duration::from_secs(1));
        let breaker_open = || {
            Error::unavailable("the payment provider is unavailable", Duration::from_secs(5))
                .with_reason(ticketing_domain::Reason::PaymentProviderUnavailable)
        };
        assert!(database_overloaded(&answer(pool_gave_up())));
        assert!(database_overloaded(&grpc_answer(pool_gave_up())));
        assert!(!database_overloaded(&answer(breaker_open())), "a payment breaker's 503 is not the database's");
        assert!(!database_overloaded(&grpc_answer(breaker_open())));
        assert!(!database_overloaded(&answer(hashing_full())), "nor is password hashing's bound");
        assert!(!database_overloaded(&grpc_answer(hashing_full())));
        assert!(!database_overloaded(&answer(Error::not_found("event"))));
    }
}
