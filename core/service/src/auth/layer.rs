//! The tower layer in front of every transport: reads the bearer token and
//! the client address once per request.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, Request, header::AUTHORIZATION};
use ticketing_domain::checkin;
use tower::{Layer, Service};

use super::{Authn, RequestContext, token::Tokens};

/// The TCP peer of a connection; the server puts it into each request.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

#[derive(Clone)]
pub struct AuthLayer {
    tokens: Arc<Tokens>,
    trust_forwarded_for: bool,
}

impl AuthLayer {
    pub fn new(tokens: Arc<Tokens>, trust_forwarded_for: bool) -> AuthLayer {
        AuthLayer { tokens, trust_forwarded_for }
    }

    fn context(&self, headers: &HeaderMap, peer: Option<PeerAddr>) -> RequestContext {
        let authn = match headers.get(AUTHORIZATION).map(|v| v.to_str()) {
            None => Authn::Anonymous,
            Some(Ok(value)) => match value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
                Some(token) if checkin::is_device_token(token.trim()) => {
                    match checkin::parse_device_token(token.trim()) {
                        Some(credential) => Authn::Device(credential),
                        None => Authn::Invalid("the device token is malformed"),
                    }
                }
                Some(token) => match self.tokens.verify(token.trim()) {
                    Ok(principal) => Authn::User(principal),
                    Err(why) => Authn::Invalid(why),
                },
                None => Authn::Invalid("the authorization header must be `Bearer <token>`"),
            },
            Some(Err(_)) => Authn::Invalid("the authorization header is not valid text"),
        };
        let peer_ip = peer.map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |p| p.0.ip());
        let client_ip = if self.trust_forwarded_for { forwarded_client(headers).unwrap_or(peer_ip) } else { peer_ip };
        RequestContext { authn, client_ip }
    }
}

/// The left-most address of `X-Forwarded-For`: the client as the edge saw it.
fn forwarded_client(headers: &HeaderMap) -> Option<IpAddr> {
    headers.get("x-forwarded-for")?.to_str().ok()?.split(',').next()?.trim().parse().ok()
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate { inner, layer: self.clone() }
    }
}

#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S, B> Service<Request<B>> for Authenticate<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let peer = request.extensions().get::<PeerAddr>().copied();
        let context = self.layer.context(request.headers(), peer);
        request.extensions_mut().insert(context);
        self.inner.call(request)
    }
}
