//! Sales reports: the request rows and the figures they are built from.

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{Text, Uuid as SqlUuid},
};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use ticketing_domain::reports::ReportStatus;

use crate::{Conn, StoreError, schema::reports, words::Word};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = reports)]
pub struct ReportRow {
    pub id: Uuid,
    pub event_id: Uuid,
    #[diesel(deserialize_as = Word<ReportStatus>)]
    pub status: ReportStatus,
    pub created_at: DateTime<Utc>,
}

pub async fn insert_report(
    conn: &mut Conn,
    id: Uuid,
    event_id: Uuid,
    requested_by: Uuid,
) -> Result<ReportRow, StoreError> {
    Ok(diesel::insert_into(reports::table)
        .values((reports::id.eq(id), reports::event_id.eq(event_id), reports::requested_by.eq(requested_by)))
        .returning(ReportRow::as_returning())
        .get_result(conn)
        .await?)
}

pub async fn find_report(conn: &mut Conn, id: Uuid) -> Result<Option<ReportRow>, StoreError> {
    Ok(reports::table.find(id).select(ReportRow::as_select()).first(conn).await.optional()?)
}

/// The CSV of a ready report.
pub async fn report_csv(conn: &mut Conn, id: Uuid) -> Result<Option<String>, StoreError> {
    Ok(reports::table.find(id).select(reports::csv).first::<Option<String>>(conn).await.optional()?.flatten())
}

pub async fn complete(conn: &mut Conn, id: Uuid, csv: Result<String, String>) -> Result<(), StoreError> {
    let (status, csv, error) = match csv {
        Ok(csv) => (ReportStatus::Ready, Some(csv), None),
        Err(error) => (ReportStatus::Failed, None, Some(error)),
    };
    diesel::update(reports::table.find(id))
        .set((
            reports::status.eq(status.as_str()),
            reports::csv.eq(csv),
            reports::error.eq(error),
            reports::completed_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// One line of a report: a figure of a section, for one key.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Figure {
    #[diesel(sql_type = Text)]
    pub section: String,
    #[diesel(sql_type = Text)]
    pub key: String,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Text)]
    pub value: String,
}

/// Every figure of an event's report in one statement, so all sections come
/// from one snapshot. Aggregates only: the report stays small whatever the
/// number of tickets, and the indexes by event keep it off the hot tables'
/// sequential scans.
pub async fn event_figures(conn: &mut Conn, event_id: Uuid) -> Result<Vec<Figure>, StoreError> {
    // The one statement allowed past a request's deadline (PgBouncer sets
    // those on its connections): a worker's report on a large event.
    diesel::sql_query("SET LOCAL statement_timeout = '5min'").execute(conn).await?;
    Ok(diesel::sql_query(
        "WITH categories AS (
             SELECT id, name FROM ticket_categories WHERE event_id = $1
         ), tickets_of_event AS (
             SELECT ticket_category_id, status FROM tickets WHERE event_id = $1
         )
         SELECT 'orders' AS section, status AS key, '' AS name, count(*)::text AS value
           FROM orders WHERE event_id = $1 GROUP BY status
         UNION ALL
         SELECT 'tickets_issued', c.id::text, c.name, count(t.status) FILTER (WHERE t.status <> 'void')::text
           FROM categories c LEFT JOIN tickets_of_event t ON t.ticket_category_id = c.id GROUP BY c.id, c.name
         UNION ALL
         SELECT 'tickets_checked_in', c.id::text, c.name, count(ch.ticket_id)::text
           FROM categories c
           LEFT JOIN tickets t ON t.ticket_category_id = c.id
           LEFT JOIN checkins ch ON ch.ticket_id = t.id
          GROUP BY c.id, c.name
         UNION ALL
         SELECT 'revenue', c.id::text, c.name,
                coalesce(sum(i.quantity * (i.unit_price_units + i.unit_price_nanos / 1e9::numeric)), 0)::numeric(30, 2)::text
           FROM categories c
           LEFT JOIN order_items i ON i.ticket_category_id = c.id
                AND i.order_id IN (SELECT id FROM orders WHERE event_id = $1 AND status = 'paid')
          GROUP BY c.id, c.name
         UNION ALL
         SELECT 'checkins_by_gate', gate, '', count(*)::text FROM checkins WHERE event_id = $1 GROUP BY gate
         ORDER BY 1, 2",
    )
    .bind::<SqlUuid, _>(event_id)
    .load(conn)
    .await?)
}
