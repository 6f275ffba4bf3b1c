//! Bearer tokens that name a stored credential: `PREFIX` + base64url(id ‖
//! 32 random bytes). The id finds the row; the row keeps only a SHA-256 of
//! the whole token (the secret is random, 256 bits: a slow hash adds
//! nothing). Scanner devices (`tks_`) and API keys (`tk_`) use them.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const SECRET_BYTES: usize = 32;

/// Encoded length of id ‖ secret: longer is not one of ours.
const MAX_ENCODED: usize = 100;

/// A new token for `id` from 32 random bytes (the caller's CSPRNG): the
/// token (shown once) and its hash (stored).
pub fn issue(prefix: &str, id: Uuid, secret: [u8; SECRET_BYTES]) -> (String, [u8; 32]) {
    let token = format!("{prefix}{}", URL_SAFE_NO_PAD.encode([id.as_bytes().as_slice(), &secret].concat()));
    let hash = hash(&token);
    (token, hash)
}

/// The id a well-formed token names, and the token's hash.
pub fn parse(prefix: &str, token: &str) -> Option<(Uuid, [u8; 32])> {
    let encoded = token.strip_prefix(prefix)?;
    if encoded.len() > MAX_ENCODED {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    if bytes.len() != 16 + SECRET_BYTES {
        return None;
    }
    Some((Uuid::from_slice(&bytes[..16]).ok()?, hash(token)))
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}
