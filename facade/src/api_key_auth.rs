//! Calls made with an API key, on either transport: the key is resolved to
//! its creator for the method called (scope, expiry, revocation, the key's
//! rate limit: `app::api_keys::authenticate`) before any service runs, so
//! the services see an ordinary signed-in caller that carries the key's id.
//! Other requests pass straight through: no boxing, no clone of the stack.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use axum::{extract::Request, response::Response};
use futures::future::{BoxFuture, Either};
use ticketing_domain::identity::ApiKeyCredential;
use ticketing_service::{
    AppState,
    app::api_keys,
    auth::{Authn, RequestContext},
};
use tower::{Layer, Service};

use crate::{respond, rest::operations};

#[derive(Clone)]
pub struct ApiKeyLayer {
    state: AppState,
}

impl ApiKeyLayer {
    pub fn new(state: AppState) -> ApiKeyLayer {
        ApiKeyLayer { state }
    }
}

impl<S> Layer<S> for ApiKeyLayer {
    type Service = ApiKeys<S>;

    fn layer(&self, inner: S) -> ApiKeys<S> {
        ApiKeys { state: self.state.clone(), inner }
    }
}

#[derive(Clone)]
pub struct ApiKeys<S> {
    state: AppState,
    inner: S,
}

impl<S> Service<Request> for ApiKeys<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<BoxFuture<'static, Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let credential = match request.extensions().get::<RequestContext>() {
            Some(RequestContext { authn: Authn::ApiKey(credential), .. }) => credential.clone(),
            _ => return Either::Right(self.inner.call(request)),
        };
        // The service polled ready serves this call; the clone waits for the next.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        Either::Left(Box::pin(resolve(self.state.clone(), credential, request, ready)))
    }
}

async fn resolve<S>(
    state: AppState,
    credential: ApiKeyCredential,
    mut request: Request,
    mut inner: S,
) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let grpc = respond::is_grpc(&request);
    let method = if grpc {
        // `/ticketing.v1.CatalogService/GetEvent` → `CatalogService.GetEvent`.
        request.uri().path().trim_start_matches('/').strip_prefix("ticketing.v1.").unwrap_or("").replace('/', ".")
    } else {
        operations::find(request.method(), request.uri().path())
            .map(|operation| operation.calls.name().to_owned())
            .unwrap_or_default()
    };
    tracing::Span::current().record("api_key_id", tracing::field::display(credential.key_id));
    match api_keys::authenticate(&state, &credential, &method).await {
        Ok(principal) => {
            if let Some(context) = request.extensions_mut().get_mut::<RequestContext>() {
                context.authn = Authn::User(principal);
            }
            inner.call(request).await
        }
        Err(error) => Ok(respond::error_response(grpc, error)),
    }
}
