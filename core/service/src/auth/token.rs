//! User access tokens: JWT, HS256, with expiry.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use ticketing_domain::{
    Error,
    identity::{Principal, Role},
};
use uuid::Uuid;

const ISSUER: &str = "ticketing";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    role: String,
    iss: String,
    iat: i64,
    exp: i64,
}

pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: Duration,
}

impl Tokens {
    pub fn new(secret: &SecretString, ttl: Duration) -> Tokens {
        let secret = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = 5;
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    pub fn issue(&self, principal: &Principal) -> Result<IssuedToken, Error> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: principal.user_id,
            role: principal.role.as_str().to_owned(),
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now + i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2),
        };
        let access_token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(Error::internal)?;
        Ok(IssuedToken { access_token, expires_in: self.ttl })
    }

    /// The principal of a valid token, or why it is not valid.
    pub fn verify(&self, token: &str) -> Result<Principal, &'static str> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::InvalidSignature => "the token's signature is invalid",
                _ => "the token is malformed",
            })?;
        let role = Role::parse(&data.claims.role).ok_or("the token's role is unknown")?;
        Ok(Principal { user_id: data.claims.sub, role, api_key: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &str, ttl_secs: u64) -> Tokens {
        Tokens::new(&SecretString::from(secret.to_owned()), Duration::from_secs(ttl_secs))
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn issued_token_verifies_to_its_principal() {
        let tokens = tokens(SECRET, 60);
        let principal = Principal { user_id: Uuid::now_v7(), role: Role::Organizer, api_key: None };
        let issued = tokens.issue(&principal).unwrap();
        assert_eq!(tokens.verify(&issued.access_token).unwrap(), principal);
    }

    #[test]
    fn token_signed_with_another_secret_is_rejected() {
        let principal = Principal { user_id: Uuid::now_v7(), role: Role::Admin, api_key: None };
        let forged = tokens("another-secret-another-secret-xx", 60).issue(&principal).unwrap();
        assert_eq!(tokens(SECRET, 60).verify(&forged.access_token), Err("the token's signature is invalid"));
    }

    #[test]
    fn expired_and_garbage_tokens_are_rejected() {
        let tokens = tokens(SECRET, 60);
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: Uuid::now_v7(),
            role: ticketing_domain::identity::Role::Customer.as_str().into(),
            iss: ISSUER.into(),
            iat: now - 120,
            exp: now - 60,
        };
        let expired = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &tokens.encoding).unwrap();
        assert_eq!(tokens.verify(&expired), Err("the token has expired"));
        assert_eq!(tokens.verify("not.a.jwt"), Err("the token is malformed"));
    }
}
