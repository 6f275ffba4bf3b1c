//! Request extractors whose failures answer in the documented error shape
//! (axum's own rejections are plain text).

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Query, Request},
    http::{
        HeaderValue,
        header::{AUTHORIZATION, IF_NONE_MATCH},
        request::Parts,
    },
};
use serde::de::DeserializeOwned;
use ticketing_domain::Error;
use ticketing_domain::Reason;
use ticketing_service::auth::RequestContext;

use super::error::RestError;

/// A request message in proto3 JSON. An empty body is the empty message.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = RestError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Error::invalid_argument("the request body is too large").with_reason(Reason::RequestTooLarge)
            } else {
                Error::invalid_argument(format!("could not read the request body: {rejection}"))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A request message from a body already read; an empty body is the empty message.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RestError> {
    let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    serde_json::from_slice(body).map_err(|e| {
        Error::invalid_argument(format!("malformed JSON body: {e}")).with_reason(Reason::MalformedJson).into()
    })
}

/// Query parameters; unknown or malformed ones are INVALID_ARGUMENT.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| QueryParams(q))
            .map_err(|e| Error::invalid_argument(format!("invalid query parameters: {}", e.body_text())).into())
    }
}

/// The headers a public read answers by, taken out of the request: axum's
/// `HeaderMap` extractor copies every header of every page view.
pub struct ReadHeaders {
    /// The caller sent credentials: the answer is theirs, not the public's.
    pub credentials: bool,
    /// The entity tags the caller holds (`If-None-Match`, usually none).
    pub if_none_match: Vec<HeaderValue>,
    /// Where a live stream's reconnect resumes (`Last-Event-ID`).
    pub last_event_id: Option<HeaderValue>,
}

impl<S: Send + Sync> FromRequestParts<S> for ReadHeaders {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let headers = &parts.headers;
        Ok(ReadHeaders {
            credentials: headers.contains_key(AUTHORIZATION),
            if_none_match: headers.get_all(IF_NONE_MATCH).iter().cloned().collect(),
            last_event_id: headers.get(crate::header_names::LAST_EVENT_ID).cloned(),
        })
    }
}

/// The auth layer's verdict on this request.
pub struct Ctx(pub RequestContext);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Ctx(parts.extensions.get::<RequestContext>().cloned().unwrap_or_default()))
    }
}
