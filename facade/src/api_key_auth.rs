//! Calls made with an API key, on either transport: the key is resolved to
//! its creator for the method called (scope, expiry, revocation, the key's
//! rate limit: `app::api_keys::authenticate`) before any service runs, so
//! the services see an ordinary signed-in caller that carries the key's id.

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use ticketing_service::{
    AppState,
    app::api_keys,
    auth::{Authn, RequestContext},
};

use crate::{respond, rest::operations};

pub async fn resolve(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(RequestContext { authn: Authn::ApiKey(credential), .. }) = request.extensions().get::<RequestContext>()
    else {
        return next.run(request).await;
    };
    let credential = credential.clone();
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
            next.run(request).await
        }
        Err(error) => respond::error_response(grpc, error),
    }
}
