//! Events and their ticket categories.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use ticketing_domain::{
    catalog::{CategoryDetails, EventDetails, EventStatus},
    money::Money,
    paging::Cursor,
};
use uuid::Uuid;

use crate::{
    Conn, StoreError,
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
pub async fn lock_event(conn: &mut Conn, id: Uuid) -> Result<Option<EventRow>, StoreError> {
    Ok(events::table.find(id).select(EventRow::as_select()).for_update().first(conn).await.optional()?)
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

/// The event and those of `ids` that are its categories, in one query (the
/// order path reads this on every purchase).
pub async fn find_event_with_categories(
    conn: &mut Conn,
    event_id: Uuid,
    ids: &[Uuid],
) -> Result<Option<(EventRow, Vec<CategoryRow>)>, StoreError> {
    let rows: Vec<(EventRow, Option<CategoryRow>)> = events::table
        .filter(events::id.eq(event_id))
        .left_join(
            ticket_categories::table
                .on(ticket_categories::event_id.eq(events::id).and(ticket_categories::id.eq_any(ids))),
        )
        .select((EventRow::as_select(), Option::<CategoryRow>::as_select()))
        .load(conn)
        .await?;
    let mut rows = rows.into_iter();
    let Some((event, first)) = rows.next() else { return Ok(None) };
    let categories = first.into_iter().chain(rows.filter_map(|(_, c)| c)).collect();
    Ok(Some((event, categories)))
}
