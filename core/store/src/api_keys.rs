//! API keys: a hash of each secret, its scopes, expiry and revocation.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use ticketing_domain::identity::{ApiKeyScope, Role};
use uuid::Uuid;

use crate::{
    Conn, StoreError,
    schema::{api_keys, users},
    words::{Word, parse},
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    pub secret_sha256: Vec<u8>,
    pub expire_time: Option<DateTime<Utc>>,
    pub revoke_time: Option<DateTime<Utc>>,
    pub create_time: DateTime<Utc>,
}

impl ApiKeyRow {
    /// The scopes as the domain's words; a word it does not know fails the read.
    pub fn scopes(&self) -> Result<Vec<ApiKeyScope>, StoreError> {
        self.scopes.iter().map(|s| parse(s).map_err(|e| ticketing_domain::Error::internal(e).into())).collect()
    }
}

pub struct NewApiKey<'a> {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: &'a str,
    pub scopes: &'a [ApiKeyScope],
    pub secret_sha256: &'a [u8],
    pub expire_time: Option<DateTime<Utc>>,
}

pub async fn insert(conn: &mut Conn, key: NewApiKey<'_>) -> Result<ApiKeyRow, StoreError> {
    let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
    Ok(diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(key.id),
            api_keys::owner_id.eq(key.owner_id),
            api_keys::name.eq(key.name),
            api_keys::scopes.eq(scopes),
            api_keys::secret_sha256.eq(key.secret_sha256),
            api_keys::expire_time.eq(key.expire_time),
        ))
        .returning(ApiKeyRow::as_returning())
        .get_result(conn)
        .await?)
}

/// Keys that still work (not revoked, not expired) of one owner.
pub async fn count_live(conn: &mut Conn, owner_id: Uuid, now: DateTime<Utc>) -> Result<i64, StoreError> {
    Ok(api_keys::table
        .filter(api_keys::owner_id.eq(owner_id))
        .filter(api_keys::revoke_time.is_null())
        .filter(api_keys::expire_time.is_null().or(api_keys::expire_time.gt(now)))
        .count()
        .get_result(conn)
        .await?)
}

/// An owner's keys, newest first (bounded by what they may create).
pub async fn list(conn: &mut Conn, owner_id: Uuid, limit: i64) -> Result<Vec<ApiKeyRow>, StoreError> {
    Ok(api_keys::table
        .filter(api_keys::owner_id.eq(owner_id))
        .order(api_keys::create_time.desc())
        .limit(limit)
        .select(ApiKeyRow::as_select())
        .load(conn)
        .await?)
}

pub async fn find(conn: &mut Conn, id: Uuid) -> Result<Option<ApiKeyRow>, StoreError> {
    Ok(api_keys::table.find(id).select(ApiKeyRow::as_select()).first(conn).await.optional()?)
}

/// A key with its owner's role now (not when the key was made): one
/// indexed read per call made with a key.
pub async fn find_for_use(conn: &mut Conn, id: Uuid) -> Result<Option<(ApiKeyRow, Role)>, StoreError> {
    let row: Option<(ApiKeyRow, Word<Role>)> = api_keys::table
        .inner_join(users::table)
        .filter(api_keys::id.eq(id))
        .select((ApiKeyRow::as_select(), users::role))
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(|(key, role)| (key, role.0)))
}

/// Revokes a live key; the row as it is afterwards (revoked earlier stays so).
pub async fn revoke(conn: &mut Conn, id: Uuid, now: DateTime<Utc>) -> Result<Option<ApiKeyRow>, StoreError> {
    diesel::update(api_keys::table.find(id).filter(api_keys::revoke_time.is_null()))
        .set(api_keys::revoke_time.eq(now))
        .execute(conn)
        .await?;
    find(conn, id).await
}
