//! Events and their ticket categories.

use chrono::{DateTime, Utc};
use diesel::{deserialize, pg::Pg, prelude::*};
use diesel_async::RunQueryDsl;
use ticketing_domain::{
    Error,
    catalog::{CategoryDetails, EventDetails, EventStatus, WaitingRoom},
    money::Money,
    paging::Cursor,
    payments::{PaymentSettings, SnapPaymentMethod},
};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::{
    Conn, Database, StoreError,
    lanes::{Batch, request_index},
    schema::{events, ticket_categories},
    words::{self, Word},
};

/// An event as stored: the domain's details and what the store adds.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: Uuid,
    pub organizer_id: Uuid,
    pub status: EventStatus,
    pub details: EventDetails,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The columns an [`EventRow`] is read from: its keys, its details, its
/// times (nested, so the selection is this type's `Default`).
type EventSelection = (
    (events::id, events::organizer_id, events::status),
    (
        events::name,
        events::description,
        events::venue,
        events::time_zone,
        events::start_time,
        events::end_time,
        events::sales_start_time,
        events::sales_end_time,
    ),
    (events::max_tickets_per_customer, events::waiting_room, events::payment),
    (events::created_at, events::updated_at),
);

impl Selectable<Pg> for EventRow {
    type SelectExpression = EventSelection;

    fn construct_selection() -> EventSelection {
        EventSelection::default()
    }
}

type Time = DateTime<Utc>;

impl Queryable<<EventSelection as Expression>::SqlType, Pg> for EventRow {
    type Row = (
        (Uuid, Uuid, Word<EventStatus>),
        (String, String, String, String, Time, Time, Time, Time),
        (i32, Option<serde_json::Value>, Option<serde_json::Value>),
        (Time, Time),
    );

    fn build(row: Self::Row) -> deserialize::Result<EventRow> {
        let ((id, organizer_id, Word(status)), details, front_door, (created_at, updated_at)) = row;
        let (name, description, venue, time_zone, start_time, end_time, sales_start_time, sales_end_time) = details;
        let (max_tickets_per_customer, waiting_room, payment) = front_door;
        let details = EventDetails {
            name,
            description,
            venue,
            time_zone,
            start_time,
            end_time,
            sales_start_time,
            sales_end_time,
            max_tickets_per_customer,
            waiting_room: room_from_document(waiting_room)?,
            payment: payment_from_document(payment)?,
        };
        Ok(EventRow { id, organizer_id, status, details, created_at, updated_at })
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
    max_tickets_per_customer: i32,
    waiting_room: serde_json::Value,
    payment: serde_json::Value,
}

/// The `waiting_room` column's document.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoomDocument {
    enabled: bool,
    admit_per_minute: i32,
    admission_minutes: i32,
    max_active_buyers: i32,
    challenge_difficulty: i32,
}

fn room_document(room: WaitingRoom) -> serde_json::Value {
    let WaitingRoom { enabled, admit_per_minute, admission_minutes, max_active_buyers, challenge_difficulty } = room;
    let document =
        RoomDocument { enabled, admit_per_minute, admission_minutes, max_active_buyers, challenge_difficulty };
    serde_json::to_value(document).unwrap_or_default()
}

fn room_from_document(document: Option<serde_json::Value>) -> Result<WaitingRoom, serde_json::Error> {
    let Some(document) = document else { return Ok(WaitingRoom::default()) };
    let RoomDocument { enabled, admit_per_minute, admission_minutes, max_active_buyers, challenge_difficulty } =
        serde_json::from_value(document)?;
    Ok(WaitingRoom { enabled, admit_per_minute, admission_minutes, max_active_buyers, challenge_difficulty })
}

/// The `payment` column's document.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentDocument {
    enabled_methods: Vec<String>,
    hold_minutes_by_method: std::collections::BTreeMap<String, i32>,
}

fn payment_document(settings: &PaymentSettings) -> serde_json::Value {
    let document = PaymentDocument {
        enabled_methods: settings.enabled_methods.iter().map(|m| m.as_str().to_owned()).collect(),
        hold_minutes_by_method: settings
            .hold_minutes_by_method
            .iter()
            .map(|(method, minutes)| (method.as_str().to_owned(), *minutes))
            .collect(),
    };
    serde_json::to_value(document).unwrap_or_default()
}

/// A stored method the domain no longer knows fails the read.
fn payment_from_document(
    document: Option<serde_json::Value>,
) -> Result<PaymentSettings, Box<dyn std::error::Error + Send + Sync>> {
    let Some(document) = document else { return Ok(PaymentSettings::default()) };
    let PaymentDocument { enabled_methods, hold_minutes_by_method } = serde_json::from_value(document)?;
    let method = |name: &str| words::parse::<SnapPaymentMethod>(name);
    Ok(PaymentSettings {
        enabled_methods: enabled_methods.iter().map(|m| method(m)).collect::<Result<_, _>>()?,
        hold_minutes_by_method: hold_minutes_by_method
            .iter()
            .map(|(m, minutes)| Ok((method(m)?, *minutes)))
            .collect::<Result<_, String>>()?,
    })
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
            max_tickets_per_customer: d.max_tickets_per_customer,
            waiting_room: room_document(d.waiting_room),
            payment: payment_document(&d.payment),
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

/// Published events whose waiting room is enabled and whose sales are open
/// now: (id, room, sales end). The partial index `events_open_waiting_rooms`
/// keeps this to those events however many others there are.
pub async fn open_waiting_rooms(conn: &mut Conn) -> Result<Vec<(Uuid, WaitingRoom, DateTime<Utc>)>, StoreError> {
    let rows: Vec<(Uuid, Option<serde_json::Value>, DateTime<Utc>)> = events::table
        .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
            "(waiting_room->>'enabled')::boolean AND status = 'published'",
        ))
        .filter(events::sales_start_time.le(diesel::dsl::now))
        .filter(events::sales_end_time.gt(diesel::dsl::now))
        .select((events::id, events::waiting_room, events::sales_end_time))
        .load(conn)
        .await?;
    rows.into_iter()
        .map(|(id, room, sales_end)| Ok((id, room_from_document(room).map_err(Error::internal)?, sales_end)))
        .collect()
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

/// CANCELLED, from now: its sweep (pending orders cancelled, paid ones
/// refunded) starts.
pub async fn mark_cancelled(conn: &mut Conn, id: Uuid) -> Result<EventRow, StoreError> {
    diesel::sql_query("UPDATE events SET cancelled_at = now() WHERE id = $1")
        .bind::<diesel::sql_types::Uuid, _>(id)
        .execute(conn)
        .await?;
    set_event_status(conn, id, EventStatus::Cancelled).await
}

/// Cancelled once it was published (a draft's cancellation has no buyers).
pub async fn cancelled_after_publishing(conn: &mut Conn, id: Uuid) -> Result<bool, StoreError> {
    let found: Vec<EventId> = diesel::sql_query("SELECT id FROM events WHERE id = $1 AND cancelled_at IS NOT NULL")
        .bind::<diesel::sql_types::Uuid, _>(id)
        .load(conn)
        .await?;
    Ok(!found.is_empty())
}

#[derive(QueryableByName)]
struct EventId {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// Cancelled events whose sweep has not finished, longest waiting first.
pub async fn cancellations_in_progress(conn: &mut Conn) -> Result<Vec<Uuid>, StoreError> {
    let found: Vec<EventId> = diesel::sql_query(
        "SELECT id FROM events WHERE status = 'cancelled' AND cancellation_settled_at IS NULL ORDER BY cancelled_at",
    )
    .load(conn)
    .await?;
    Ok(found.into_iter().map(|e| e.id).collect())
}

/// The sweep found nothing left to do.
pub async fn mark_cancellation_settled(conn: &mut Conn, id: Uuid) -> Result<(), StoreError> {
    diesel::sql_query("UPDATE events SET cancellation_settled_at = now() WHERE id = $1")
        .bind::<diesel::sql_types::Uuid, _>(id)
        .execute(conn)
        .await?;
    Ok(())
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
            "SELECT r.read, e.id AS event_id, e.organizer_id, e.name AS event_name, e.description, e.venue,
                    e.time_zone, e.start_time, e.end_time, e.sales_start_time AS event_sales_start_time,
                    e.sales_end_time AS event_sales_end_time, e.status AS event_status, e.created_at, e.updated_at,
                    e.max_tickets_per_customer, e.waiting_room, e.payment,
                    c.id AS category_id, c.name AS category_name, c.currency_code, c.price_units, c.price_nanos,
                    c.capacity, c.max_per_order, c.sales_start_time AS category_sales_start_time,
                    c.sales_end_time AS category_sales_end_time
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
        let read = request_index(row.try_get("read")?, found.len())?;
        let (_, categories) = match &mut found[read] {
            Some(sale) => sale,
            empty => empty.insert((event_from(row)?, Vec::new())),
        };
        if let Some(id) = row.try_get::<_, Option<Uuid>>("category_id")? {
            categories.push(CategoryRow {
                id,
                event_id: row.try_get("event_id")?,
                name: row.try_get("category_name")?,
                currency_code: row.try_get("currency_code")?,
                price_units: row.try_get("price_units")?,
                price_nanos: row.try_get("price_nanos")?,
                capacity: row.try_get("capacity")?,
                max_per_order: row.try_get("max_per_order")?,
                sales_start_time: row.try_get("category_sales_start_time")?,
                sales_end_time: row.try_get("category_sales_end_time")?,
            });
        }
    }
    Ok(found)
}

/// The event's columns of a sale read's row.
fn event_from(row: &tokio_postgres::Row) -> Result<EventRow, StoreError> {
    Ok(EventRow {
        id: row.try_get("event_id")?,
        organizer_id: row.try_get("organizer_id")?,
        status: words::column(row, "event_status")?,
        details: EventDetails {
            name: row.try_get("event_name")?,
            description: row.try_get("description")?,
            venue: row.try_get("venue")?,
            time_zone: row.try_get("time_zone")?,
            start_time: row.try_get("start_time")?,
            end_time: row.try_get("end_time")?,
            sales_start_time: row.try_get("event_sales_start_time")?,
            sales_end_time: row.try_get("event_sales_end_time")?,
            max_tickets_per_customer: row.try_get("max_tickets_per_customer")?,
            waiting_room: room_from_document(row.try_get("waiting_room")?).map_err(Error::internal)?,
            payment: payment_from_document(row.try_get("payment")?).map_err(Error::internal)?,
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
