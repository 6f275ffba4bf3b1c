//! Authentication shared by every transport: the [`layer::AuthLayer`]
//! verifies the bearer token of each HTTP request (REST, gRPC and gRPC-Web
//! alike) once and leaves a [`RequestContext`] in the request's extensions.

pub mod layer;
pub mod password;
pub mod token;

use std::net::IpAddr;
use ticketing_domain::Reason;

use ticketing_domain::{
    Error,
    checkin::DeviceCredential,
    identity::{ApiKeyCredential, Principal},
};

/// Who sent a request, as the auth layer found it.
#[derive(Debug, Clone)]
pub enum Authn {
    Anonymous,
    User(Principal),
    /// A scanner device's token: well formed, checked against the database
    /// by the call that uses it (in the same round trip as its work).
    Device(DeviceCredential),
    /// An API key, well formed: the server resolves it to its creator for
    /// the method called (`app::api_keys::authenticate`) before any
    /// service runs, and replaces it with [`Authn::User`].
    ApiKey(ApiKeyCredential),
    /// A credential was presented but is not valid (expired, forged, …):
    /// refused even on public methods, so clients notice.
    Invalid(&'static str),
}

#[derive(Debug, Clone)]
pub struct RequestContext {
    pub authn: Authn,
    pub client_ip: IpAddr,
}

/// Anonymous from localhost: what a request that bypassed the auth layer
/// (an in-process call) is taken to be.
impl Default for RequestContext {
    fn default() -> Self {
        RequestContext { authn: Authn::Anonymous, client_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST) }
    }
}

impl RequestContext {
    /// The caller, who must be signed in.
    pub fn principal(&self) -> Result<&Principal, Error> {
        match &self.authn {
            Authn::User(principal) => Ok(principal),
            Authn::Anonymous => {
                Err(Error::unauthenticated("sign in: this call needs a bearer token")
                    .with_reason(Reason::Unauthenticated))
            }
            Authn::Invalid(why) => Err(Error::unauthenticated(*why).with_reason(Reason::InvalidToken)),
            Authn::Device(_) => Err(Error::permission_denied("scanner devices may only check tickets in")),
            Authn::ApiKey(_) => {
                Err(Error::unauthenticated("the API key was not checked for this call")
                    .with_reason(Reason::InvalidToken))
            }
        }
    }

    /// The scanner device calling (a check-in method).
    pub fn device(&self) -> Result<&DeviceCredential, Error> {
        match &self.authn {
            Authn::Device(credential) => Ok(credential),
            Authn::User(_) | Authn::ApiKey(_) => Err(Error::permission_denied("only scanner devices check tickets in")),
            Authn::Anonymous => {
                Err(Error::unauthenticated("this call needs a scanner's device token")
                    .with_reason(Reason::Unauthenticated))
            }
            Authn::Invalid(why) => Err(Error::unauthenticated(*why).with_reason(Reason::InvalidToken)),
        }
    }

    /// The caller if signed in; anonymous is fine, a bad token is not.
    pub fn optional_principal(&self) -> Result<Option<&Principal>, Error> {
        match &self.authn {
            Authn::Anonymous => Ok(None),
            _ => self.principal().map(Some),
        }
    }
}
