//! What the Rust load tools in loadtest/ share.

use serde_json::json;

/// An HS256 access token for a seeded account, minted instead of logging
/// in: logins are argon2-hashed and rate limited by design, which would
/// measure the login path instead of the scenario (as loadtest/lib/common.js
/// mints them for k6).
pub fn mint(secret: &str, subject: &str, role: &str) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({ "sub": subject, "role": role, "iss": "ticketing", "iat": now, "exp": now + 7200 });
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    Ok(jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)?)
}
