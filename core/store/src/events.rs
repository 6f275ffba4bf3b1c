//! Events and their ticket categories.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use ticketing_domain::{
    catalog::{CategoryDetails, EventDetails, EventStatus},
    money::Money,
    paging::Cursor,
};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::{
    Conn, Database, StoreError,
    lanes::{Batch, request_index},
    schema::{events, ticket_categories},
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct EventRow {
    pub id: Uuid,
    pub organizer_id: Uuid,
    pub name: String,
    pub description: String,
    pub venue: String,
    pub time_zone: String,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub sales_start_time: DateTime<Utc>,
    pub sales_end_time: DateTime<Utc>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl EventRow {
    pub fn status(&self) -> EventStatus {
        // The CHECK constraint admits only known statuses.
        EventStatus::parse(&self.status).unwrap_or(EventStatus::Draft)
    }

    pub fn details(&self) -> EventDetails {
        EventDetails {
            name: self.name.clone(),
            description: self.description.clone(),
            venue: self.venue.clone(),
            time_zone: self.time_zone.clone(),
            start_time: self.start_time,
            end_time: self.end_time,
            sales_start_time: self.sales_start_time,
            sales_end_time: self.sales_end_time,
        }
    }
}

/// The writable columns of an event, for insert and update alike.
#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = events)]
struct EventColumns<'a> {
    name: &'a str,
    description: &'a str,
    venue: &'a str,
    time_zone: &'a str,
    start_time: DateTime<Utc>,
    end_time: DateTime<Utc>,
    sales_start_time: DateTime<Utc>,
    sales_end_time: DateTime<Utc>,
}

impl<'a> From<&'a EventDetails> for EventColumns<'a> {
    fn from(d: &'a EventDetails) -> Self {
        EventColumns {
            name: d.name.trim(),
            description: &d.description,
            venue: d.venue.trim(),
            time_zone: &d.time_zone,
            start_time: d.start_time,
            end_time: d.end_time,
            sales_start_time: d.sales_start_time,
            sales_end_time: d.sales_end_time,
        }
    }
}

pub async fn insert_event(conn: &mut Conn, organizer_id: Uuid, details: &EventDetails) -> Result<EventRow, StoreError> {
    Ok(diesel::insert_into(events::table)
        .values((
            events::id.eq(Uuid::now_v7()),
            events::organizer_id.eq(organizer_id),
            events::status.eq(EventStatus::Draft.as_str()),
            EventColumns::from(details),
        ))
        .returning(EventRow::as_returning())
        .get_result(conn)
        .await?)
}

pub async fn find_event(conn: &mut Conn, id: Uuid) -> Result<Option<EventRow>, StoreError> {
    Ok(events::table.find(id).select(EventRow::as_select()).first(conn).await.optional()?)
}

/// Locks the event row for the rest of the transaction, so concurrent
/// changes to one event (and its categories) apply one after another.
/// `FOR NO KEY UPDATE`, not `FOR UPDATE`: an event's id never changes, and
/// the weaker lock leaves alone the key-share locks that every new order's
/// and category's foreign key takes on the event, so a sale goes on while
/// its organizer edits the event.
pub async fn lock_event(conn: &mut Conn, id: Uuid) -> Result<Option<EventRow>, StoreError> {
    Ok(events::table.find(id).select(EventRow::as_select()).for_no_key_update().first(conn).await.optional()?)
}

pub async fn update_event(conn: &mut Conn, id: Uuid, details: &EventDetails) -> Result<EventRow, StoreError> {
    Ok(diesel::update(events::table.find(id))
        .set((EventColumns::from(details), events::updated_at.eq(diesel::dsl::now)))
        .returning(EventRow::as_returning())
        .get_result(conn)
        .await?)
}

pub async fn set_event_status(conn: &mut Conn, id: Uuid, status: EventStatus) -> Result<EventRow, StoreError> {
    Ok(diesel::update(events::table.find(id))
        .set((events::status.eq(status.as_str()), events::updated_at.eq(diesel::dsl::now)))
        .returning(EventRow::as_returning())
        .get_result(conn)
        .await?)
}

/// Published events that have not ended, soonest first, after `cursor`.
pub async fn list_published_events(
    conn: &mut Conn,
    after: Option<Cursor>,
    limit: i64,
    now: DateTime<Utc>,
) -> Result<Vec<EventRow>, StoreError> {
    let mut query = events::table
        .filter(events::status.eq(EventStatus::Published.as_str()))
        .filter(events::end_time.gt(now))
        .order((events::start_time, events::id))
        .limit(limit)
        .select(EventRow::as_select())
        .into_boxed();
    if let Some(Cursor { time, id }) = after {
        query = query.filter(events::start_time.gt(time).or(events::start_time.eq(time).and(events::id.gt(id))));
    }
    Ok(query.load(conn).await?)
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ticket_categories)]
pub struct CategoryRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub name: String,
    pub currency_code: String,
    pub price_units: i64,
    pub price_nanos: i32,
    pub capacity: i32,
    pub max_per_order: i32,
    pub sales_start_time: Option<DateTime<Utc>>,
    pub sales_end_time: Option<DateTime<Utc>>,
}

impl CategoryRow {
    pub fn details(&self) -> CategoryDetails {
        CategoryDetails {
            name: self.name.clone(),
            price: Money {
                currency_code: self.currency_code.clone(),
                units: self.price_units,
                nanos: self.price_nanos,
            },
            capacity: self.capacity,
            max_per_order: self.max_per_order,
            sales_start_time: self.sales_start_time,
            sales_end_time: self.sales_end_time,
        }
    }
}

#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = ticket_categories, treat_none_as_null = true)]
struct CategoryColumns<'a> {
    name: &'a str,
    currency_code: &'a str,
    price_units: i64,
    price_nanos: i32,
    capacity: i32,
    max_per_order: i32,
    sales_start_time: Option<DateTime<Utc>>,
    sales_end_time: Option<DateTime<Utc>>,
}

impl<'a> From<&'a CategoryDetails> for CategoryColumns<'a> {
    fn from(d: &'a CategoryDetails) -> Self {
        CategoryColumns {
            name: d.name.trim(),
            currency_code: &d.price.currency_code,
            price_units: d.price.units,
            price_nanos: d.price.nanos,
            capacity: d.capacity,
            max_per_order: d.max_per_order,
            sales_start_time: d.sales_start_time,
            sales_end_time: d.sales_end_time,
        }
    }
}

pub async fn insert_category(
    conn: &mut Conn,
    event_id: Uuid,
    details: &CategoryDetails,
) -> Result<CategoryRow, StoreError> {
    Ok(diesel::insert_into(ticket_categories::table)
        .values((
            ticket_categories::id.eq(Uuid::now_v7()),
            ticket_categories::event_id.eq(event_id),
            CategoryColumns::from(details),
        ))
        .returning(CategoryRow::as_returning())
        .get_result(conn)
        .await?)
}

pub async fn update_category(conn: &mut Conn, id: Uuid, details: &CategoryDetails) -> Result<CategoryRow, StoreError> {
    Ok(diesel::update(ticket_categories::table.find(id))
        .set((CategoryColumns::from(details), ticket_categories::updated_at.eq(diesel::dsl::now)))
        .returning(CategoryRow::as_returning())
        .get_result(conn)
        .await?)
}

pub async fn find_category(conn: &mut Conn, event_id: Uuid, id: Uuid) -> Result<Option<CategoryRow>, StoreError> {
    Ok(ticket_categories::table
        .filter(ticket_categories::id.eq(id))
        .filter(ticket_categories::event_id.eq(event_id))
        .select(CategoryRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub async fn categories_of_event(conn: &mut Conn, event_id: Uuid) -> Result<Vec<CategoryRow>, StoreError> {
    Ok(ticket_categories::table
        .filter(ticket_categories::event_id.eq(event_id))
        .order(ticket_categories::id)
        .select(CategoryRow::as_select())
        .load(conn)
        .await?)
}

/// What an order reads before its hold: an event and, of the categories it
/// names, those that are the event's.
pub type EventForSale = Option<(EventRow, Vec<CategoryRow>)>;

/// The order path's reads of the event and its categories, on the primary,
/// batched like its holds ([`crate::lanes`]): one statement answers every
/// order that queued while the previous read was in flight, so a sale's rush
/// on one event reads it once a batch instead of once an order (each read
/// was ~170 µs of Postgres CPU, as much as a batched hold). A read still
/// starts after its order arrived, so it is as fresh as one of its own.
pub struct SaleReads;

/// A request is an event id and the category ids an order names.
impl Batch for SaleReads {
    type Request = (Uuid, Vec<Uuid>);
    type Answer = EventForSale;
    /// Reads lock nothing.
    type Key = ();
    const NAME: &'static str = "sale_read";
    /// As the holds' (`orders::Holds`).
    const LANES: usize = 2;
    const MAX_BATCH: usize = 64;

    fn key(_: &(Uuid, Vec<Uuid>)) {}

    async fn decide(&self, db: &Database, reads: &[(Uuid, Vec<Uuid>)]) -> Result<Vec<EventForSale>, StoreError> {
        events_for_sale(db, reads).await
    }
}

/// Each read's event and those of its category ids that are the event's, in
/// one statement (`query_typed`, no transaction: one snapshot for all).
async fn events_for_sale(db: &Database, reads: &[(Uuid, Vec<Uuid>)]) -> Result<Vec<EventForSale>, StoreError> {
    let event_ids: Vec<Uuid> = reads.iter().map(|(event_id, _)| *event_id).collect();
    let (wanted_by, wanted): (Vec<i64>, Vec<Uuid>) =
        (1i64..).zip(reads).flat_map(|(read, (_, ids))| ids.iter().map(move |id| (read, *id))).unzip();
    let rows = db
        .statement(
            "SELECT r.read, e.id, e.organizer_id, e.name, e.description, e.venue, e.time_zone, e.start_time,
                    e.end_time, e.sales_start_time, e.sales_end_time, e.status, e.created_at, e.updated_at,
                    c.id, c.event_id, c.name, c.currency_code, c.price_units, c.price_nanos, c.capacity,
                    c.max_per_order, c.sales_start_time, c.sales_end_time
               FROM unnest($1::uuid[]) WITH ORDINALITY AS r(event_id, read)
               JOIN events e ON e.id = r.event_id
               LEFT JOIN (unnest($2::bigint[], $3::uuid[]) AS w(read, category_id)
                          JOIN ticket_categories c ON c.id = w.category_id)
                 ON w.read = r.read AND c.event_id = e.id",
            &[(&event_ids, Type::UUID_ARRAY), (&wanted_by, Type::INT8_ARRAY), (&wanted, Type::UUID_ARRAY)],
        )
        .await?;
    let mut found: Vec<EventForSale> = vec![None; reads.len()];
    for row in &rows {
        let read = request_index(row.try_get(0)?, found.len())?;
        let (_, categories) = match &mut found[read] {
            Some(sale) => sale,
            empty => empty.insert((event_from(row)?, Vec::new())),
        };
        if let Some(id) = row.try_get::<_, Option<Uuid>>(14)? {
            categories.push(CategoryRow {
                id,
                event_id: row.try_get(15)?,
                name: row.try_get(16)?,
                currency_code: row.try_get(17)?,
                price_units: row.try_get(18)?,
                price_nanos: row.try_get(19)?,
                capacity: row.try_get(20)?,
                max_per_order: row.try_get(21)?,
                sales_start_time: row.try_get(22)?,
                sales_end_time: row.try_get(23)?,
            });
        }
    }
    Ok(found)
}

/// The event's columns of a sale read's row (columns 1-13).
fn event_from(row: &tokio_postgres::Row) -> Result<EventRow, StoreError> {
    Ok(EventRow {
        id: row.try_get(1)?,
        organizer_id: row.try_get(2)?,
        name: row.try_get(3)?,
        description: row.try_get(4)?,
        venue: row.try_get(5)?,
        time_zone: row.try_get(6)?,
        start_time: row.try_get(7)?,
        end_time: row.try_get(8)?,
        sales_start_time: row.try_get(9)?,
        sales_end_time: row.try_get(10)?,
        status: row.try_get(11)?,
        created_at: row.try_get(12)?,
        updated_at: row.try_get(13)?,
    })
}
