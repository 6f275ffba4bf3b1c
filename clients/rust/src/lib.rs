//! Typed gRPC clients for the `ticketing.v1` contract, with what every caller
//! needs around the generated stubs:
//!
//! - credentials: a user's access token, a scanner's device token or an API key, sent as
//!   `authorization: Bearer …` on every call ([`Connection::with_token`]);
//! - deadlines: every call carries `grpc-timeout` so the server stops work the
//!   caller gave up on, and the channel enforces the same limit locally;
//! - retries of UNAVAILABLE and RESOURCE_EXHAUSTED that wait what the server's
//!   `retry-after` asks for ([`Connection::call`]), and a waiting-room join
//!   that retries from a fresh challenge ([`Connection::join_queue`]);
//! - the `google.rpc.ErrorInfo` reason (`SOLD_OUT`, `RATE_LIMITED`, …) parsed
//!   into [`ApiError`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), ticketing_client::ApiError> {
//! use ticketing_client::{Connection, v1};
//! let connection = Connection::lazy("http://127.0.0.1:8080")?.with_token("eyJ…")?;
//! let request = v1::ListEventsRequest::default();
//! let events = connection
//!     .call(connection.catalog(), request, |mut catalog, r| async move { catalog.list_events(r).await })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! [`scanner`] is a gate scanner built on these clients that keeps working
//! offline; `examples/scanner.rs` is its command line.

pub mod scanner;

use std::{collections::HashMap, future::Future, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use tonic::{
    Code, Request, Status,
    metadata::{AsciiMetadataValue, errors::InvalidMetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};
use tonic_types::StatusExt;

pub use ticketing_proto::v1;
use v1::{
    auth_service_client::AuthServiceClient, catalog_service_client::CatalogServiceClient,
    check_in_service_client::CheckInServiceClient, order_service_client::OrderServiceClient,
    payment_service_client::PaymentServiceClient, report_service_client::ReportServiceClient,
    waiting_room_service_client::WaitingRoomServiceClient,
};

/// The channel every generated client of a [`Connection`] shares.
pub type AuthedChannel = InterceptedService<Channel, Credentials>;

/// A lazily connected channel plus the credentials, deadline and retry
/// policy its clients use. Cheap to clone: clones share the channel.
#[derive(Clone, Debug)]
pub struct Connection {
    channel: Channel,
    credentials: Credentials,
    retry: RetryPolicy,
}

impl Connection {
    /// A connection to `url` (`http://host:port`) that dials on first use and
    /// redials after failures, so it can be built while the server is down.
    pub fn lazy(url: &str) -> Result<Connection, ApiError> {
        Connection::lazy_with_deadline(url, DEFAULT_DEADLINE)
    }

    /// As [`Connection::lazy`], with a deadline for each call other than the
    /// default 10 s.
    pub fn lazy_with_deadline(url: &str, deadline: Duration) -> Result<Connection, ApiError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| ApiError::local(Code::InvalidArgument, format!("bad server address {url}: {e}")))?
            .connect_timeout(deadline.min(CONNECT_TIMEOUT))
            // No `.timeout(deadline)`: the channel enforces each call's own
            // `grpc-timeout` (set by `Credentials`), and an endpoint timeout
            // would cap a call that asks for longer.
            .tcp_nodelay(true);
        Ok(Connection {
            channel: endpoint.connect_lazy(),
            credentials: Credentials { authorization: None, deadline: Some(deadline) },
            retry: RetryPolicy::default(),
        })
    }

    /// Sends `token` (a user's access token, a scanner's device token, or an
    /// internal tool's API key `tk_…`, which acts as the user who created it
    /// within its scopes) with every call.
    pub fn with_token(mut self, token: &str) -> Result<Connection, ApiError> {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|e: InvalidMetadataValue| ApiError::local(Code::InvalidArgument, format!("token: {e}")))?;
        self.credentials.authorization = Some(value);
        Ok(self)
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Connection {
        self.retry = retry;
        self
    }

    pub fn deadline(&self) -> Duration {
        self.credentials.deadline.unwrap_or(DEFAULT_DEADLINE)
    }

    fn authed(&self) -> AuthedChannel {
        InterceptedService::new(self.channel.clone(), self.credentials.clone())
    }

    /// The same credentials without a deadline, for live streams.
    fn live(&self) -> AuthedChannel {
        InterceptedService::new(self.channel.clone(), Credentials { deadline: None, ..self.credentials.clone() })
    }

    /// `event_id`'s availability as it changes: the current state first,
    /// then each change. Opening is retried like a read; the stream has no
    /// deadline and lasts until dropped, or until the server drains
    /// (`UNAVAILABLE`: open it again).
    pub async fn watch_availability(
        &self,
        event_id: &str,
    ) -> Result<tonic::Streaming<v1::AvailabilityUpdate>, ApiError> {
        let request = v1::WatchAvailabilityRequest { event_id: event_id.to_owned() };
        let client = CatalogServiceClient::new(self.live());
        self.call(client, request, |mut catalog, r| async move { catalog.watch_availability(r).await }).await
    }

    /// The caller's queue entry as it moves, its admission (with the token)
    /// the moment it is granted, until it expires; like
    /// [`Connection::watch_availability`].
    pub async fn watch_queue_entry(
        &self,
        event_id: &str,
        queue_entry_id: &str,
    ) -> Result<tonic::Streaming<v1::QueueEntry>, ApiError> {
        let request =
            v1::WatchQueueEntryRequest { event_id: event_id.to_owned(), queue_entry_id: queue_entry_id.to_owned() };
        let client = WaitingRoomServiceClient::new(self.live());
        self.call(client, request, |mut room, r| async move { room.watch_queue_entry(r).await }).await
    }

    pub fn auth(&self) -> AuthServiceClient<AuthedChannel> {
        AuthServiceClient::new(self.authed())
    }

    pub fn catalog(&self) -> CatalogServiceClient<AuthedChannel> {
        CatalogServiceClient::new(self.authed())
    }

    pub fn orders(&self) -> OrderServiceClient<AuthedChannel> {
        OrderServiceClient::new(self.authed())
    }

    pub fn payments(&self) -> PaymentServiceClient<AuthedChannel> {
        PaymentServiceClient::new(self.authed())
    }

    pub fn checkin(&self) -> CheckInServiceClient<AuthedChannel> {
        CheckInServiceClient::new(self.authed())
    }

    pub fn reports(&self) -> ReportServiceClient<AuthedChannel> {
        ReportServiceClient::new(self.authed())
    }

    /// GetChallenge and GetQueueEntry are reads, fine through [`Connection::call`];
    /// join with [`Connection::join_queue`].
    pub fn waiting_room(&self) -> WaitingRoomServiceClient<AuthedChannel> {
        WaitingRoomServiceClient::new(self.authed())
    }

    /// Sends `request` with `client` through `call`, again after a pause
    /// while it fails with a retryable code, and returns the response message
    /// or the last error:
    ///
    /// ```ignore
    /// connection.call(connection.orders(), request, |mut c, r| async move { c.create_order(r).await })
    /// ```
    ///
    /// Retry only calls that are safe to repeat: reads, and writes that carry
    /// their own idempotency key (`CreateOrder.request_id`, `Redeem.scan_id`,
    /// offline scans' `scan_id`). A repeated write without one may be applied
    /// twice when the first attempt reached the server. JoinQueue is neither:
    /// see [`Connection::join_queue`].
    pub async fn call<C, R, T, F, Fut>(&self, client: C, request: R, call: F) -> Result<T, ApiError>
    where
        C: Clone,
        R: Clone,
        F: Fn(C, R) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.retrying(|| {
            let response = call(client.clone(), request.clone());
            async move { response.await.map(tonic::Response::into_inner).map_err(ApiError::from) }
        })
        .await
    }

    /// Joins `event_id`'s waiting room: fetches a challenge, has `solve` turn
    /// it into the ALTCHA widget's value (`serde_json::to_value(&challenge)`
    /// is the JSON ALTCHA's solvers read) and sends JoinQueue; then poll
    /// GetQueueEntry until the entry is ADMITTED.
    ///
    /// The server spends a solution on the first join that reaches it, so
    /// sending the same one again after a lost answer would be refused
    /// (`CHALLENGE_FAILED`) even though the customer joined. A retry here
    /// starts over from a new challenge instead, which is safe: joining again
    /// returns the customer's existing entry.
    pub async fn join_queue<S, Fut>(&self, event_id: &str, solve: S) -> Result<v1::QueueEntry, ApiError>
    where
        S: Fn(v1::AltchaChallenge) -> Fut,
        Fut: Future<Output = String>,
    {
        let solve = &solve;
        self.retrying(|| async move {
            let request = v1::GetChallengeRequest { event_id: event_id.to_owned() };
            let challenge = self.waiting_room().get_challenge(request).await?.into_inner();
            let altcha = solve(challenge).await;
            let request = v1::JoinQueueRequest { event_id: event_id.to_owned(), altcha };
            Ok(self.waiting_room().join_queue(request).await?.into_inner())
        })
        .await
    }

    /// Runs `attempt` again after a pause while it fails with a retryable code.
    async fn retrying<T, A, Fut>(&self, attempt: A) -> Result<T, ApiError>
    where
        A: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let policy = self.retry;
        attempt
            .retry(policy.backoff())
            .when(ApiError::is_retryable)
            // The server's Retry-After replaces our own guess; past the
            // policy's longest pause we stop and let the caller decide.
            .adjust(move |error, backoff| match error.retry_after {
                Some(after) if after > policy.max_delay => None,
                Some(after) => Some(after),
                None => backoff,
            })
            .await
    }
}

const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Adds the bearer token and the call's deadline to every request.
#[derive(Clone, Debug)]
pub struct Credentials {
    authorization: Option<AsciiMetadataValue>,
    /// `None`: the call has no deadline (a live stream).
    deadline: Option<Duration>,
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(authorization) = &self.authorization {
            request.metadata_mut().insert("authorization", authorization.clone());
        }
        if let Some(deadline) = self.deadline
            && !request.metadata().contains_key("grpc-timeout")
        {
            request.set_timeout(deadline);
        }
        Ok(request)
    }
}

/// How [`Connection::call`] retries: exponential pauses with jitter from
/// `min_delay`, or the server's `retry-after` when it sends one, up to
/// `max_retries` times and never longer than `max_delay` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy { max_retries: 3, min_delay: Duration::from_millis(100), max_delay: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// No retries: every failure goes straight back to the caller.
    pub const NEVER: RetryPolicy = RetryPolicy { max_retries: 0, min_delay: Duration::ZERO, max_delay: Duration::ZERO };

    fn backoff(self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_jitter()
    }
}

/// A failed call: the gRPC status and, for domain errors, the reason the
/// server gave in `google.rpc.ErrorInfo` (see `shared/API.md`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}{}: {message}", reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// `ErrorInfo.reason`: `SOLD_OUT`, `RATE_LIMITED`, `OVERLOADED`, …
    pub reason: Option<String>,
    /// `ErrorInfo.metadata`, e.g. the `ticketCategoryId` that sold out.
    pub metadata: HashMap<String, String>,
    /// The server's `retry-after`, sent with RESOURCE_EXHAUSTED and UNAVAILABLE.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    fn local(code: Code, message: String) -> ApiError {
        ApiError { code, message, reason: None, metadata: HashMap::new(), retry_after: None }
    }

    /// Worth trying again later: the server (or the path to it) is down or
    /// shedding load, or asked us to slow down.
    pub fn is_retryable(&self) -> bool {
        matches!(self.code, Code::Unavailable | Code::ResourceExhausted)
    }

    /// The server could not be reached or did not answer in time: what a
    /// scanner treats as "offline".
    pub fn is_unreachable(&self) -> bool {
        matches!(self.code, Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown)
            && self.reason.is_none()
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> ApiError {
        let info = status.get_details_error_info();
        let retry_after = status
            .metadata()
            .get("retry-after")
            .and_then(|value| value.to_str().ok()?.trim().parse().ok())
            .map(Duration::from_secs);
        ApiError {
            code: status.code(),
            message: status.message().to_owned(),
            reason: info.as_ref().map(|info| info.reason.clone()),
            metadata: info.map(|info| info.metadata).unwrap_or_default(),
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use tonic::metadata::MetadataValue;
    use tonic_types::{ErrorDetails, StatusExt};
    use v1::waiting_room_service_server::{WaitingRoomService, WaitingRoomServiceServer};

    use super::*;

    #[test]
    fn the_reason_metadata_and_retry_after_are_read_from_the_status() {
        let details = ErrorDetails::with_error_info(
            "RATE_LIMITED",
            "ticketing",
            [("policy".to_owned(), "scans_scanner".to_owned())],
        );
        let mut status = Status::with_error_details(Code::ResourceExhausted, "slow down", details);
        status.metadata_mut().insert("retry-after", MetadataValue::from(3u64));

        let error = ApiError::from(status);

        assert_eq!(error.code, Code::ResourceExhausted);
        assert_eq!(error.reason.as_deref(), Some("RATE_LIMITED"));
        assert_eq!(error.metadata["policy"], "scans_scanner");
        assert_eq!(error.retry_after, Some(Duration::from_secs(3)));
        assert!(error.is_retryable());
        assert!(!error.is_unreachable(), "a server that answers is not offline");
    }

    #[test]
    fn a_plain_status_has_no_reason() {
        let error = ApiError::from(Status::unavailable("connection refused"));
        assert_eq!(error.reason, None);
        assert!(error.is_retryable() && error.is_unreachable());
    }

    #[tokio::test]
    async fn every_request_carries_the_token_and_a_deadline() {
        let connection = Connection::lazy("http://127.0.0.1:1").unwrap().with_token("tks_abc").unwrap();
        let mut credentials = connection.credentials.clone();

        let request = credentials.call(Request::new(())).unwrap();

        assert_eq!(request.metadata().get("authorization").unwrap(), "Bearer tks_abc");
        assert_eq!(request.metadata().get("grpc-timeout").unwrap(), "10000000u");
    }

    /// A server that answers every call UNAVAILABLE after `delay`.
    async fn answering_after(delay: Duration) -> Connection {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let slow = axum::Router::new().fallback(move || async move {
            tokio::time::sleep(delay).await;
            ([("content-type", "application/grpc"), ("grpc-status", "14"), ("grpc-message", "late")], "")
        });
        tokio::spawn(async move { axum::serve(listener, slow).await });
        Connection::lazy_with_deadline(&format!("http://{address}"), Duration::from_millis(100)).unwrap()
    }

    #[tokio::test]
    async fn a_call_gives_up_at_the_connections_deadline() {
        let connection = answering_after(Duration::from_secs(2)).await;
        let status = connection.catalog().list_events(v1::ListEventsRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), Code::Cancelled, "the local deadline, not the server's answer: {status:?}");
    }

    #[tokio::test]
    async fn a_call_that_asks_for_a_longer_deadline_gets_it() {
        let connection = answering_after(Duration::from_millis(300)).await;
        let mut request = Request::new(v1::ListEventsRequest::default());
        request.set_timeout(Duration::from_secs(10));
        let status = connection.catalog().list_events(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "the server's answer, not the connection's deadline: {status:?}");
    }

    /// A waiting room that loses the answer to the first join after
    /// spending its solution (UNAVAILABLE), and records every solution sent.
    #[derive(Clone, Default)]
    struct LossyRoom {
        challenges: Arc<AtomicUsize>,
        joins: Arc<Mutex<Vec<String>>>,
    }

    #[tonic::async_trait]
    impl WaitingRoomService for LossyRoom {
        async fn get_challenge(
            &self,
            _: Request<v1::GetChallengeRequest>,
        ) -> Result<tonic::Response<v1::AltchaChallenge>, Status> {
            let number = self.challenges.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(tonic::Response::new(v1::AltchaChallenge {
                signature: format!("challenge {number}"),
                ..Default::default()
            }))
        }

        async fn join_queue(
            &self,
            request: Request<v1::JoinQueueRequest>,
        ) -> Result<tonic::Response<v1::QueueEntry>, Status> {
            let mut joins = self.joins.lock().unwrap();
            joins.push(request.into_inner().altcha);
            match joins.len() {
                1 => Err(Status::unavailable("the answer was lost")),
                _ => Ok(tonic::Response::new(v1::QueueEntry { id: "entry".into(), ..Default::default() })),
            }
        }
    }

    #[tokio::test]
    async fn a_join_is_retried_from_a_fresh_challenge_not_with_the_spent_solution() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let room = LossyRoom::default();
        let routes = tonic::service::Routes::new(WaitingRoomServiceServer::new(room.clone())).into_axum_router();
        tokio::spawn(async move { axum::serve(listener, routes).await });
        let connection = Connection::lazy(&format!("http://{address}"))
            .unwrap()
            .with_retry(RetryPolicy { min_delay: Duration::from_millis(10), ..RetryPolicy::default() });

        // The "solution" is the challenge's signature, so each join names the challenge it answers.
        let entry = connection.join_queue("event", |challenge| async move { challenge.signature }).await.unwrap();

        assert_eq!(entry.id, "entry");
        assert_eq!(*room.joins.lock().unwrap(), ["challenge 1", "challenge 2"]);
    }

    #[tokio::test]
    async fn a_token_that_is_not_ascii_is_refused_here() {
        let error = Connection::lazy("http://127.0.0.1:1").unwrap().with_token("tök\n").unwrap_err();
        assert_eq!(error.code, Code::InvalidArgument);
    }
}
