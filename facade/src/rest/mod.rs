//! REST/JSON over the gRPC services. `operations` declares each operation
//! once; the router mounts them and `openapi` documents them from the same
//! rows; `handlers` bind each request onto its RPC.

mod docs;
pub mod error;
pub mod extract;
mod handlers;
mod live;
pub mod openapi;
pub mod operations;
mod state;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::LazyLock,
};

use axum::{
    Json, Router,
    extract::{MatchedPath, Request},
    http::{HeaderValue, Method, StatusCode, Uri, header::ALLOW},
    response::{IntoResponse, Response},
    routing::MethodRouter,
};
use rustc_hash::FxHashMap;
use ticketing_domain::{Code, Error};
use ticketing_service::{grpc::Services, load_class::LoadClass};

use self::operations::{Verb, operations};
pub use self::state::RestState;

/// The REST routes. Overload control (by [`load_class`]), the body limit
/// and [`custom_method_misuse`] are layers of the server's one stack, not
/// boxes around each route here: every box is cloned per request.
pub fn router(services: Services) -> Router {
    let mut paths: BTreeMap<&str, MethodRouter<RestState>> = BTreeMap::new();
    for operation in mounted() {
        let path = operation.route_path();
        let route = (operation.handler)(operation.verb.filter());
        let merged = match paths.remove(path) {
            Some(existing) => existing.merge(route),
            None => route,
        };
        paths.insert(path, merged);
    }
    paths
        .into_iter()
        .fold(Router::new(), |router, (path, route)| router.route(path, route.fallback(other_method)))
        .route("/openapi.json", axum::routing::get(openapi::serve))
        .merge(docs::routes())
        .with_state(RestState::new(services))
}

/// The load class of a REST request: its operation's, found by the route
/// it matched and its method (HEAD is GET's). Requests that match no
/// operation (the documents, a method the route lacks) have none.
pub fn load_class(request: &Request) -> Option<LoadClass> {
    // Keyed by the route templates (a closed set): Fx, not SipHash.
    static CLASSES: LazyLock<FxHashMap<&'static str, Vec<(&'static str, LoadClass)>>> = LazyLock::new(|| {
        let mut classes: FxHashMap<&'static str, Vec<(&'static str, LoadClass)>> = FxHashMap::default();
        for operation in mounted() {
            classes.entry(operation.route_path()).or_default().push((operation.verb.http(), operation.class));
        }
        classes
    });
    let matched = request.extensions().get::<MatchedPath>()?;
    let method = if request.method() == Method::HEAD { "GET" } else { request.method().as_str() };
    CLASSES.get(matched.as_str())?.iter().find(|(verb, _)| *verb == method).map(|(_, class)| *class)
}

/// The methods the table has for a request path.
fn allowed_methods(path: &str) -> BTreeSet<&'static str> {
    operations()
        .iter()
        .filter(|operation| operation.matches(path))
        .flat_map(|operation| match operation.verb {
            Verb::Get => vec!["GET", "HEAD"],
            verb => vec![verb.http()],
        })
        .collect()
}

/// A custom method (`{id}:cancel`) shares its resource's route but not its
/// methods: a method the custom method lacks (PATCH on `:cancel`) is 405
/// here, before the resource's handler would read `id:cancel` as an id.
/// Only paths whose last segment has a `:` are looked up.
pub fn custom_method_misuse(request: &Request) -> Option<Response> {
    let path = request.uri().path();
    if !path.rsplit('/').next().is_some_and(|last| last.contains(':')) {
        return None;
    }
    let allowed = allowed_methods(path);
    (!allowed.is_empty() && !allowed.contains(request.method().as_str()))
        .then(|| method_answer(request.method(), request.uri()))
}

/// A plain OPTIONS (not a CORS preflight, which the CORS layer answers):
/// 204 with the path's methods. It must run outside CORS, which answers
/// every OPTIONS: `AnswerFirst(plain_options)` in the server's stack.
pub fn plain_options(request: &Request) -> Option<Response> {
    let plain = request.method() == Method::OPTIONS
        && !request.headers().contains_key(axum::http::header::ACCESS_CONTROL_REQUEST_METHOD);
    (plain && !allowed_methods(request.uri().path()).is_empty()).then(|| method_answer(&Method::OPTIONS, request.uri()))
}

/// A layer that may answer a request itself, at once, before the stack
/// below sees it; a tower layer rather than `from_fn`, which would clone the
/// whole stack below it on every request.
#[derive(Clone, Copy)]
pub struct AnswerFirst(pub fn(&Request) -> Option<Response>);

impl<S> tower::Layer<S> for AnswerFirst {
    type Service = AnswerFirstService<S>;

    fn layer(&self, inner: S) -> AnswerFirstService<S> {
        AnswerFirstService { answer: self.0, inner }
    }
}

#[derive(Clone)]
pub struct AnswerFirstService<S> {
    answer: fn(&Request) -> Option<Response>,
    inner: S,
}

impl<S> tower::Service<Request> for AnswerFirstService<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures::future::Either<std::future::Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match (self.answer)(&request) {
            Some(answer) => futures::future::Either::Left(std::future::ready(Ok(answer))),
            None => futures::future::Either::Right(self.inner.call(request)),
        }
    }
}

/// A method the path does not have: OPTIONS lists the ones it has, others
/// are 405 in the documented error form. Both read the table, not the
/// routed path.
async fn other_method(method: Method, uri: Uri) -> Response {
    method_answer(&method, &uri)
}

fn method_answer(method: &Method, uri: &Uri) -> Response {
    let allow = allowed_methods(uri.path()).into_iter().collect::<Vec<_>>().join(", ");
    let mut response = if method == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        let error =
            Error::new(Code::Unimplemented, format!("{method} is not a method of {}; it has {allow}", uri.path()));
        let (_, mut body) = error::RestError::from(error).json();
        body["error"]["code"] = StatusCode::METHOD_NOT_ALLOWED.as_u16().into();
        (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
    };
    if let Ok(allow) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(ALLOW, allow);
    }
    response
}

/// What the router mounts: one handler per verb and routed path. The
/// custom methods of a resource (`{id}:publish`, `{id}:cancel`) share one,
/// the first row's, which dispatches on the verb; they must share its load
/// class (`tests::custom_methods_share_their_resource_route_and_class`), and
/// each reaching its handler is `openapi::every_documented_operation_…`'s.
pub fn mounted() -> Vec<&'static operations::Operation> {
    let mut seen = std::collections::HashSet::new();
    operations().iter().filter(|operation| seen.insert((operation.verb, operation.route_path()))).collect()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use ticketing_service::{AppState, Config};
    use tower::ServiceExt;

    use super::*;
    use crate::overload::{Bulkheads, OverloadLayer};

    /// The REST router over a state whose pools connect lazily: the requests
    /// below are all answered before any database or Redis call.
    fn routes(config: Config, limits: &Bulkheads) -> Router {
        let services = Services::new(&AppState::new(config).expect("state"));
        router(services).layer(OverloadLayer::new(limits.clone(), load_class))
    }

    async fn shed(router: &Router, method: &str, path: &str) -> bool {
        let request = Request::builder().method(method).uri(path).body(Body::empty()).expect("request");
        let response = router.clone().oneshot(request).await.expect("answered");
        response.status() == StatusCode::SERVICE_UNAVAILABLE
    }

    #[tokio::test]
    async fn requests_are_classified_by_route() {
        let config = Config::from_lookup(|name| match name {
            "ENV" => Some("development".into()),
            "DATABASE_URL" => Some("postgres://127.0.0.1:1/none".into()),
            "REDIS_URL" => Some("redis://127.0.0.1:1".into()),
            "CONCURRENCY_LIMIT_MAX" => Some("4".into()),
            _ => None,
        })
        .expect("config");
        let limits = Bulkheads::new(&config);
        let router = routes(config, &limits);

        let browsing = limits.fill(LoadClass::Browse);
        assert!(shed(&router, "GET", "/v1/events/abc").await, "an event page browses");
        assert!(shed(&router, "GET", "/v1/events").await, "the listing browses");
        assert!(!shed(&router, "PATCH", "/v1/events/abc").await, "an edit does not");
        assert!(!shed(&router, "POST", "/v1/orders").await);
        drop(browsing);

        let buying = limits.fill(LoadClass::Standard);
        assert!(shed(&router, "POST", "/v1/orders").await, "orders are standard");
        assert!(shed(&router, "PATCH", "/v1/events/abc").await);
        assert!(!shed(&router, "POST", "/v1/checkins").await, "the gates are critical: shed last");
        assert!(!shed(&router, "POST", "/v1/payments/midtrans/notifications").await, "and payment notifications");
        assert!(!shed(&router, "GET", "/v1/events/abc").await, "browsing has its own bulkhead");
        drop(buying);
    }

    /// Custom methods ride their resource's route, so they must agree on
    /// what is mounted there: the load class.
    #[test]
    fn custom_methods_share_their_resource_route_and_class() {
        let mounted = mounted();
        for operation in operations() {
            let mount = mounted
                .iter()
                .find(|mount| mount.verb == operation.verb && mount.route_path() == operation.route_path())
                .unwrap_or_else(|| panic!("{} {} is not mounted", operation.verb.name(), operation.path));
            assert_eq!(
                mount.class,
                operation.class,
                "{} {} is shed as its route is",
                operation.verb.name(),
                operation.path
            );
        }
    }

    /// Every route the router mounts is in the document, and every
    /// documented operation is mounted.
    #[test]
    fn the_document_covers_every_routed_path() {
        let document = openapi::document();
        let documented: BTreeSet<(String, String)> = document["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                item.as_object().expect("a path item").keys().map(|verb| (verb.clone(), path.clone()))
            })
            .collect();
        let routed: BTreeSet<(String, String)> =
            operations().iter().map(|o| (o.verb.name().to_owned(), o.path.to_owned())).collect();
        assert_eq!(documented, routed);
        let mounted: BTreeSet<(String, String)> =
            mounted().iter().map(|mount| (mount.verb.name().to_owned(), mount.route_path().to_owned())).collect();
        let documented_routes: BTreeSet<(String, String)> = documented
            .iter()
            .map(|(verb, path)| (verb.clone(), path.rfind("}:").map_or(path.as_str(), |at| &path[..=at]).to_owned()))
            .collect();
        assert_eq!(documented_routes, mounted);
    }

    /// `proto/openapi.json` is what the code generates (`ticketing openapi
    /// > proto/openapi.json` after a change).
    #[test]
    fn the_committed_document_is_the_generated_one() {
        let committed = include_str!("../../../proto/openapi.json");
        assert!(
            committed == openapi::text(),
            "proto/openapi.json is stale: run `ticketing openapi > proto/openapi.json`"
        );
    }
}
