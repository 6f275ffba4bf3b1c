//! Cross-origin access for browsers: tower-http's CORS, for the requests
//! that carry `Origin`. Those without it (apps, scanners, servers,
//! same-origin pages) get only its `Vary`: no client that sends no `Origin`
//! reads CORS headers, and tower-http builds a header map of them, its
//! `Vary` rendered again, for every request it sees (a fifth of a page
//! view's instructions, `ci/instructions`). The configuration is shared, not
//! part of the service: the router clones the stack for every request, and
//! a `CorsLayer` clone is a vector and a dozen header values.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue, Method, header},
    response::Response,
};
use futures::{
    FutureExt as _,
    future::{Either, Map},
};
use ticketing_service::Config;
use tower_http::cors::{self, AllowOrigin, Cors, CorsLayer};

use crate::header_names;

/// What an answer's CORS headers depend on, sent on every answer so that a
/// shared cache keeps a cross-origin answer apart from the others.
const VARY_ON: &str = "origin, access-control-request-method, access-control-request-headers";

/// The public listener's CORS (`CORS_ALLOW_ORIGINS`, any origin when unset).
#[derive(Clone)]
pub struct ForBrowsersLayer(Arc<CorsLayer>);

impl ForBrowsersLayer {
    pub fn new(config: &Config) -> ForBrowsersLayer {
        let origins = match &config.cors_allow_origins {
            Some(list) => AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok())),
            None => AllowOrigin::any(),
        };
        let cors = CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                // EventSource's resume after a reconnect (SSE live streams).
                header_names::LAST_EVENT_ID,
                header_names::IDEMPOTENCY_KEY,
                header_names::TICKETING_ADMISSION,
                HeaderName::from_static("x-grpc-web"),
                HeaderName::from_static("x-user-agent"),
                HeaderName::from_static("grpc-timeout"),
                HeaderName::from_static("traceparent"),
            ])
            .expose_headers([
                header::RETRY_AFTER,
                header::ETAG,
                header_names::GRPC_STATUS,
                HeaderName::from_static("grpc-message"),
                HeaderName::from_static("grpc-status-details-bin"),
                header_names::IDEMPOTENT_REPLAYED,
            ])
            .vary(VARY_ON.split(", ").map(HeaderName::from_static).collect::<Vec<_>>())
            .max_age(Duration::from_secs(3600));
        ForBrowsersLayer(Arc::new(cors))
    }
}

impl<S> tower::Layer<S> for ForBrowsersLayer {
    type Service = ForBrowsers<S>;

    fn layer(&self, inner: S) -> ForBrowsers<S> {
        ForBrowsers { cors: self.0.clone(), inner }
    }
}

/// tower-http's [`Cors`] for requests with `Origin`; its inner service,
/// and `Vary`, for the rest.
#[derive(Clone)]
pub struct ForBrowsers<S> {
    cors: Arc<CorsLayer>,
    inner: S,
}

type AnswerOf<S> = Result<Response, <S as tower::Service<Request>>::Error>;

impl<S> tower::Service<Request> for ForBrowsers<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<cors::ResponseFuture<S::Future>, Map<S::Future, fn(AnswerOf<S>) -> AnswerOf<S>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.headers().contains_key(header::ORIGIN) {
            // Around the service polled ready, for this one call.
            let mut cors: Cors<&mut S> = tower::Layer::layer(&*self.cors, &mut self.inner);
            Either::Left(cors.call(request))
        } else {
            Either::Right(self.inner.call(request).map(varied as fn(AnswerOf<S>) -> AnswerOf<S>))
        }
    }
}

fn varied<E>(answer: Result<Response, E>) -> Result<Response, E> {
    answer.map(|mut response| {
        response.headers_mut().append(header::VARY, HeaderValue::from_static(VARY_ON));
        response
    })
}
