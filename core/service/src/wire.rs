//! The contract's messages ⇄ domain and store values, in one place for
//! every transport and for the caches that keep pages in their wire form.

use chrono::{DateTime, Utc};
use pbjson_types::Timestamp;
use ticketing_domain::{
    Error,
    catalog::{EventStatus, WaitingRoom},
    error::Violations,
    money::Money,
    orders::TicketStatus,
};
use ticketing_proto::v1;
use ticketing_store::{
    events::{CategoryRow, EventRow},
    orders::TicketRow,
};
use uuid::Uuid;

pub fn timestamp(time: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp { seconds: time.timestamp(), nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0) })
}

/// A timestamp as a time; `None` when unset or out of range.
pub fn time_from_proto(value: Option<Timestamp>) -> Option<DateTime<Utc>> {
    let ts = value?;
    u32::try_from(ts.nanos).ok().and_then(|n| DateTime::from_timestamp(ts.seconds, n))
}

/// An optional timestamp field; out-of-range values are a field violation.
pub fn optional_time(value: Option<Timestamp>, field: &str, violations: &mut Violations) -> Option<DateTime<Utc>> {
    let time = time_from_proto(value);
    if value.is_some() && time.is_none() {
        violations.add(field, "is not a valid timestamp");
    }
    time
}

/// A required timestamp field; a placeholder is returned with the violation
/// recorded, so validation can go on and report every problem at once.
pub fn required_time(value: Option<Timestamp>, field: &str, violations: &mut Violations) -> DateTime<Utc> {
    if value.is_none() {
        violations.add(field, "is required");
    }
    optional_time(value, field, violations).unwrap_or(DateTime::UNIX_EPOCH)
}

pub fn ticket_to_proto(ticket: TicketRow) -> v1::Ticket {
    let status = match ticket.status {
        TicketStatus::Valid => v1::TicketStatus::Valid,
        TicketStatus::CheckedIn => v1::TicketStatus::CheckedIn,
        TicketStatus::Void => v1::TicketStatus::Void,
    };
    v1::Ticket {
        id: ticket.id.to_string(),
        order_id: ticket.order_id.to_string(),
        event_id: ticket.event_id.to_string(),
        ticket_category_id: ticket.ticket_category_id.to_string(),
        code: ticket.code,
        status: status.into(),
    }
}

pub fn parse_id(value: &str, field: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(value).map_err(|_| Error::invalid_field(field, "must be a UUID"))
}

pub fn money_from_proto(value: Option<v1::Money>) -> Option<Money> {
    value.map(|m| Money { currency_code: m.currency_code, units: m.units, nanos: m.nanos })
}

pub fn money_to_proto(value: Money) -> v1::Money {
    v1::Money { currency_code: value.currency_code, units: value.units, nanos: value.nanos }
}

pub fn event_to_proto(event: EventRow, categories: Vec<(i32, CategoryRow)>) -> v1::Event {
    let status = match event.status {
        EventStatus::Draft => v1::EventStatus::Draft,
        EventStatus::Published => v1::EventStatus::Published,
        EventStatus::Cancelled => v1::EventStatus::Cancelled,
    };
    let details = event.details;
    v1::Event {
        id: event.id.to_string(),
        organizer_id: event.organizer_id.to_string(),
        start_time: timestamp(details.start_time),
        end_time: timestamp(details.end_time),
        sales_start_time: timestamp(details.sales_start_time),
        sales_end_time: timestamp(details.sales_end_time),
        create_time: timestamp(event.created_at),
        update_time: timestamp(event.updated_at),
        status: status.into(),
        ticket_categories: categories.into_iter().map(|(available, c)| category_to_proto(available, c)).collect(),
        max_tickets_per_customer: details.max_tickets_per_customer(),
        waiting_room: Some(waiting_room_to_proto(details.waiting_room)),
        name: details.name,
        description: details.description,
        venue: details.venue,
        time_zone: details.time_zone,
    }
}

pub fn waiting_room_from_proto(room: v1::WaitingRoom) -> WaitingRoom {
    WaitingRoom {
        enabled: room.enabled,
        admit_per_minute: room.admit_per_minute,
        admission_minutes: room.admission_minutes,
        max_active_buyers: room.max_active_buyers,
        challenge_difficulty: room.challenge_difficulty,
    }
}

pub fn waiting_room_to_proto(room: WaitingRoom) -> v1::WaitingRoom {
    v1::WaitingRoom {
        enabled: room.enabled,
        admit_per_minute: room.admit_per_minute,
        admission_minutes: room.admission_minutes,
        max_active_buyers: room.max_active_buyers,
        challenge_difficulty: room.challenge_difficulty,
    }
}

pub fn category_to_proto(available: i32, category: CategoryRow) -> v1::TicketCategory {
    let details = category.details();
    v1::TicketCategory {
        id: category.id.to_string(),
        event_id: category.event_id.to_string(),
        name: details.name,
        price: Some(money_to_proto(details.price)),
        capacity: details.capacity,
        available,
        max_per_order: details.max_per_order,
        sales_start_time: details.sales_start_time.and_then(timestamp),
        sales_end_time: details.sales_end_time.and_then(timestamp),
    }
}
