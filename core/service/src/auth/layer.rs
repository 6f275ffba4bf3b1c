//! The tower layer in front of every transport: reads the bearer token and
//! the client address once per request.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, Request, header::AUTHORIZATION};
use ipnet::IpNet;
use ticketing_domain::{checkin, identity};
use tower::{Layer, Service};

use super::{Authn, RequestContext, token::Tokens};

/// The TCP peer of a connection; the server puts it into each request.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

#[derive(Clone)]
pub struct AuthLayer {
    tokens: Arc<Tokens>,
    trusted_proxies: Arc<[IpNet]>,
}

impl AuthLayer {
    pub fn new(tokens: Arc<Tokens>, trusted_proxies: Arc<[IpNet]>) -> AuthLayer {
        AuthLayer { tokens, trusted_proxies }
    }

    fn context(&self, headers: &HeaderMap, peer: Option<PeerAddr>) -> RequestContext {
        let authn = match headers.get(AUTHORIZATION).map(|v| v.to_str()) {
            None => Authn::Anonymous,
            Some(Ok(value)) => match value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
                Some(token) if identity::is_api_key(token.trim()) => match identity::parse_api_key(token.trim()) {
                    Some(credential) => Authn::ApiKey(credential),
                    None => Authn::Invalid("the API key is malformed"),
                },
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
        let client_ip = client_ip(peer_ip, headers, &self.trusted_proxies);
        RequestContext { authn, client_ip }
    }
}

/// `X-Forwarded-For` hops examined at most, right to left: a longer chain
/// is no real path, and a hostile header must not cost more.
const MAX_FORWARDED_HOPS: usize = 16;

/// The client's address: the peer, unless the peer is a trusted proxy; then
/// the right-most `X-Forwarded-For` address that is not a trusted proxy (each
/// trusted hop appends the address it saw; everything left of the last
/// untrusted one was written by the client). A hop that does not parse ends
/// the walk at the last address vouched for.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|network| network.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|value| value.to_str().unwrap_or("-").rsplit(','))
        .take(MAX_FORWARDED_HOPS);
    let mut client = peer;
    for hop in hops {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => client = ip,
            Ok(ip) => return ip,
            Err(_) => return client,
        }
    }
    client
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn a_client_cannot_choose_its_address_through_the_edge() {
        let edge: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // The edge appends what it saw (203.0.113.7) to what the client sent.
        let headers = forwarded(&["1.2.3.4, 5.6.7.8, 203.0.113.7"]);
        assert_eq!(client_ip(ip("10.0.0.5"), &headers, &edge), ip("203.0.113.7"));
        // Two trusted hops: the right-most untrusted address still wins.
        let headers = forwarded(&["1.2.3.4, 203.0.113.7", "10.1.2.3"]);
        assert_eq!(client_ip(ip("10.0.0.5"), &headers, &edge), ip("203.0.113.7"));
        // From outside the trusted networks the header is the client's own words.
        assert_eq!(client_ip(ip("198.51.100.1"), &headers, &edge), ip("198.51.100.1"));
        // No trusted proxies: never read.
        assert_eq!(client_ip(ip("10.0.0.5"), &headers, &[]), ip("10.0.0.5"));
    }

    #[test]
    fn garbage_and_overlong_chains_end_at_the_last_vouched_address() {
        let edge: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(client_ip(ip("10.0.0.5"), &forwarded(&["1.2.3.4, nonsense"]), &edge), ip("10.0.0.5"));
        assert_eq!(client_ip(ip("10.0.0.5"), &forwarded(&["1.2.3.4, nonsense, 10.9.9.9"]), &edge), ip("10.9.9.9"));
        let long = vec!["10.0.0.1"; 1000].join(",");
        assert_eq!(client_ip(ip("10.0.0.5"), &forwarded(&[&format!("6.6.6.6,{long}")]), &edge), ip("10.0.0.1"));
        assert_eq!(client_ip(ip("10.0.0.5"), &forwarded(&[]), &edge), ip("10.0.0.5"));
    }
}
