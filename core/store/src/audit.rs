//! The append-only audit trail (the table refuses updates and deletes).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use ticketing_domain::audit::AuditAction;
use uuid::Uuid;

use crate::{Conn, StoreError, schema::audit_log, words::Word};

pub struct NewAuditEntry<'a> {
    pub event_id: Uuid,
    pub actor_id: Option<Uuid>,
    /// The API key the actor used, if any.
    pub api_key_id: Option<Uuid>,
    pub action: AuditAction,
    pub subject_id: &'a str,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Call it inside the transaction of the change it records.
pub async fn record(conn: &mut Conn, entry: NewAuditEntry<'_>) -> Result<(), StoreError> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::event_id.eq(entry.event_id),
            audit_log::actor_id.eq(entry.actor_id),
            audit_log::api_key_id.eq(entry.api_key_id),
            audit_log::action.eq(entry.action.as_str()),
            audit_log::subject_id.eq(entry.subject_id),
            audit_log::before.eq(entry.before),
            audit_log::after.eq(entry.after),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct AuditEntryRow {
    pub id: i64,
    pub event_id: Uuid,
    pub actor_id: Option<Uuid>,
    #[diesel(deserialize_as = Word<AuditAction>)]
    pub action: AuditAction,
    pub subject_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub api_key_id: Option<Uuid>,
}

/// An event's entries, oldest first, after entry `after`.
pub async fn list(conn: &mut Conn, event_id: Uuid, after: i64, limit: i64) -> Result<Vec<AuditEntryRow>, StoreError> {
    Ok(audit_log::table
        .filter(audit_log::event_id.eq(event_id))
        .filter(audit_log::id.gt(after))
        .order(audit_log::id)
        .limit(limit)
        .select(AuditEntryRow::as_select())
        .load(conn)
        .await?)
}
