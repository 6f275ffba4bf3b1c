//! API keys for internal tools: created, listed and revoked by their owner,
//! and each call made with one resolved to its creator within its scopes.
//! Keys are read from the primary at every use, so a revocation holds from
//! the next call on, on every replica.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::RngCore;
use scoped_futures::ScopedFutureExt;
use ticketing_domain::{
    Code, Error, Reason,
    error::Violations,
    identity::{self, ApiKeyCredential, ApiKeyScope, Principal, Role},
    secret_token::SECRET_BYTES,
};
use ticketing_store::api_keys::{self as store, ApiKeyRow, NewApiKey};
use uuid::Uuid;

use crate::{
    AppState,
    app::limits::{self, Limit},
};

/// Live keys one user may hold; the list shows at most this many and the
/// revoked ones after them.
pub const MAX_LIVE_KEYS: i64 = 50;
const LISTED_KEYS: i64 = 200;
const MAX_NAME_CHARS: usize = 100;
const MAX_LIFETIME_DAYS: i64 = 366;

/// The scope a method needs when called with a key; `None`: no key may call
/// it (buying, paying, queueing, checking in, signing in, managing keys).
/// `method` is `Service.Method` of ticketing.v1, or a REST-only operation.
pub fn scope_for(method: &str) -> Option<ApiKeyScope> {
    use ApiKeyScope::*;
    Some(match method {
        "CatalogService.ListEvents"
        | "CatalogService.GetEvent"
        | "CatalogService.WatchAvailability"
        | "CatalogService.ListAuditEntries" => EventsRead,
        "CatalogService.CreateEvent"
        | "CatalogService.UpdateEvent"
        | "CatalogService.PublishEvent"
        | "CatalogService.CancelEvent"
        | "CatalogService.CreateTicketCategory"
        | "CatalogService.UpdateTicketCategory" => EventsWrite,
        "OrderService.GetOrder"
        | "OrderService.ListRefunds"
        | "PaymentService.GetPayment"
        | "PaymentService.ListPayments" => OrdersRead,
        "ReportService.CreateReport" | "ReportService.GetReport" | "DownloadReport" => Reports,
        "CheckInService.CreateScanner" | "CheckInService.RevokeScanner" | "CheckInService.GetCheckinStats" => {
            CheckinAdmin
        }
        _ => return None,
    })
}

/// The creator a key acts as, for one call of `method`: the key must exist,
/// match, be neither revoked nor expired, and have the method's scope; and
/// its calls are rate limited per key, across replicas.
#[tracing::instrument(name = "api_keys.authenticate", skip_all, fields(api_key_id = %credential.key_id))]
pub async fn authenticate(state: &AppState, credential: &ApiKeyCredential, method: &str) -> Result<Principal, Error> {
    let Some(scope) = scope_for(method) else {
        return Err(Error::permission_denied(format!("an API key cannot call {method}"))
            .with_reason(Reason::ApiKeyScopeMissing));
    };
    let key_id = credential.key_id;
    let found = state.db.read(|conn| async move { store::find_for_use(conn, key_id).await }.scope_boxed()).await?;
    let invalid = |why: &str| Error::unauthenticated(why.to_owned()).with_reason(Reason::InvalidToken);
    let Some((key, role)) = found.filter(|(key, _)| credential.matches(&key.secret_sha256)) else {
        return Err(invalid("the API key is not valid"));
    };
    if key.revoke_time.is_some() {
        return Err(invalid("the API key was revoked"));
    }
    if key.expire_time.is_some_and(|expiry| expiry <= Utc::now()) {
        return Err(invalid("the API key has expired"));
    }
    if !key.scopes()?.contains(&scope) {
        return Err(Error::permission_denied(format!("the API key lacks the {scope} scope"))
            .with_reason(Reason::ApiKeyScopeMissing)
            .with_metadata("scope", scope.as_str()));
    }
    let limit =
        Limit { name: "api_key", quota: state.config.api_key_limit_per_minute, window: Duration::from_secs(60) };
    limits::check(state, limit, &key.id.to_string()).await?;
    Ok(Principal { user_id: key.owner_id, role, api_key: Some(key.id) })
}

/// A new key for the caller (organizer, admin): the row, its scopes, and
/// the secret, which is not kept.
#[tracing::instrument(name = "api_keys.create", skip_all)]
pub async fn create(
    state: &AppState,
    caller: &Principal,
    name: &str,
    scopes: Vec<ApiKeyScope>,
    expire_time: Option<DateTime<Utc>>,
) -> Result<(ApiKeyRow, Vec<ApiKeyScope>, String), Error> {
    if caller.role == Role::Customer {
        return Err(Error::permission_denied("only organizers and admins create API keys"));
    }
    let name = name.trim().to_owned();
    let now = Utc::now();
    let mut scopes = scopes;
    scopes.sort_by_key(|s| s.as_str());
    scopes.dedup();
    let mut violations = Violations::default();
    violations.check(!name.is_empty() && name.chars().count() <= MAX_NAME_CHARS, "name", "must be 1 to 100 characters");
    violations.check_plain_text("name", &name);
    violations.check(!scopes.is_empty(), "scopes", "must name at least one scope");
    if let Some(expiry) = expire_time {
        violations.check(
            expiry > now && expiry <= now + chrono::Duration::days(MAX_LIFETIME_DAYS),
            "expireTime",
            "must be in the future, within a year",
        );
    }
    violations.into_result()?;

    let key_id = Uuid::now_v7();
    let mut secret = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let (token, token_hash) = identity::issue_api_key(key_id, secret);
    let owner_id = caller.user_id;
    let stored_scopes = scopes.clone();
    let row = state
        .db
        .write(|conn| {
            async move {
                // Counted in the insert's transaction: a burst of creations
                // by one user may pass the limit by its concurrency at most.
                if store::count_live(conn, owner_id, now).await? >= MAX_LIVE_KEYS {
                    return Err(Error::new(Code::FailedPrecondition, "revoke a key before creating another")
                        .with_reason(Reason::ApiKeyLimit)
                        .with_metadata("limit", MAX_LIVE_KEYS.to_string())
                        .into());
                }
                let key = NewApiKey {
                    id: key_id,
                    owner_id,
                    name: &name,
                    scopes: &stored_scopes,
                    secret_sha256: &token_hash,
                    expire_time,
                };
                store::insert(conn, key).await
            }
            .scope_boxed()
        })
        .await?;
    tracing::info!(api_key_id = %row.id, "API key created");
    Ok((row, scopes, token))
}

/// The caller's keys, newest first.
pub async fn list(state: &AppState, caller: &Principal) -> Result<Vec<(ApiKeyRow, Vec<ApiKeyScope>)>, Error> {
    let owner_id = caller.user_id;
    let rows =
        state.db.read(|conn| async move { store::list(conn, owner_id, LISTED_KEYS).await }.scope_boxed()).await?;
    rows.into_iter()
        .map(|row| {
            let scopes = row.scopes()?;
            Ok((row, scopes))
        })
        .collect()
}

/// Revokes a key of the caller's (an admin: anyone's). Another user's key
/// is not found, as if it did not exist.
#[tracing::instrument(name = "api_keys.revoke", skip_all, fields(api_key_id = %key_id))]
pub async fn revoke(
    state: &AppState,
    caller: &Principal,
    key_id: Uuid,
) -> Result<(ApiKeyRow, Vec<ApiKeyScope>), Error> {
    let (caller_id, admin) = (caller.user_id, caller.role == Role::Admin);
    let row = state
        .db
        .write(|conn| {
            async move {
                match store::find(conn, key_id).await? {
                    Some(key) if key.owner_id == caller_id || admin => store::revoke(conn, key_id, Utc::now()).await,
                    _ => Ok(None),
                }
            }
            .scope_boxed()
        })
        .await?
        .ok_or_else(|| Error::not_found("API key not found"))?;
    let scopes = row.scopes()?;
    Ok((row, scopes))
}
