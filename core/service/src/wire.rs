//! The contract's messages ⇄ domain and store values, in one place for
//! every transport and for the caches that keep pages in their wire form.

use chrono::{DateTime, Utc};
use pbjson_types::Timestamp;
use ticketing_domain::{
    Error,
    audit::AuditAction,
    catalog::{EventStatus, WaitingRoom},
    error::Violations,
    identity::ApiKeyScope,
    money::Money,
    orders::TicketStatus,
    payments::{PaymentSettings, SnapPaymentMethod},
    refunds::{RefundCause, RefundStatus},
};
use ticketing_proto::v1;
use ticketing_store::{
    api_keys::ApiKeyRow,
    audit::AuditEntryRow,
    events::{CategoryRow, EventRow},
    orders::TicketRow,
    refunds::{CancellationProgress, RefundRow},
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
        cancellation: None,
        payment: Some(payment_to_proto(&details.payment)),
        name: details.name,
        description: details.description,
        venue: details.venue,
        time_zone: details.time_zone,
    }
}

pub fn payment_to_proto(settings: &PaymentSettings) -> v1::PaymentSettings {
    v1::PaymentSettings {
        enabled_methods: settings.enabled_methods.iter().map(|m| m.as_str().to_owned()).collect(),
        hold_minutes_by_method: settings
            .hold_minutes_by_method
            .iter()
            .map(|(method, minutes)| (method.as_str().to_owned(), *minutes))
            .collect(),
    }
}

/// A payment page's settings; a method Snap does not know is a field violation.
pub fn payment_from_proto(settings: v1::PaymentSettings, violations: &mut Violations) -> PaymentSettings {
    let mut method = |name: &str, field: String| {
        let method = SnapPaymentMethod::parse(name);
        if method.is_none() {
            violations.add(&field, "is not a Midtrans Snap payment method (enabled_payments)");
        }
        method
    };
    let enabled_methods = (settings.enabled_methods.iter().enumerate())
        .filter_map(|(i, name)| method(name, format!("payment.enabledMethods[{i}]")))
        .collect();
    let hold_minutes_by_method = (settings.hold_minutes_by_method.iter())
        .filter_map(|(name, minutes)| {
            method(
                name,
                format!(
                    "payment.holdMinutesByMethod.{}",
                    name.chars().take(40).flat_map(char::escape_default).collect::<String>()
                ),
            )
            .map(|m| (m, *minutes))
        })
        .collect();
    PaymentSettings { enabled_methods, hold_minutes_by_method }
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

pub fn cancellation_to_proto(progress: CancellationProgress) -> v1::Cancellation {
    let count = |n: i64| i32::try_from(n).unwrap_or(i32::MAX);
    v1::Cancellation {
        orders_to_refund: count(progress.orders_to_refund),
        refunded: count(progress.refunded),
        manual_required: count(progress.manual_required),
        failed: count(progress.failed),
    }
}

pub fn refund_status_to_proto(status: RefundStatus) -> v1::RefundStatus {
    match status {
        RefundStatus::Pending => v1::RefundStatus::Pending,
        RefundStatus::Succeeded => v1::RefundStatus::Succeeded,
        RefundStatus::Failed => v1::RefundStatus::Failed,
        RefundStatus::ManualRequired => v1::RefundStatus::ManualRequired,
    }
}

/// A status filter; UNSPECIFIED is none.
pub fn refund_status_from_proto(status: v1::RefundStatus) -> Option<RefundStatus> {
    match status {
        v1::RefundStatus::Unspecified => None,
        v1::RefundStatus::Pending => Some(RefundStatus::Pending),
        v1::RefundStatus::Succeeded => Some(RefundStatus::Succeeded),
        v1::RefundStatus::Failed => Some(RefundStatus::Failed),
        v1::RefundStatus::ManualRequired => Some(RefundStatus::ManualRequired),
    }
}

pub fn refund_to_proto(refund: RefundRow) -> v1::Refund {
    let cause = match refund.cause {
        RefundCause::Organizer => v1::RefundCause::Organizer,
        RefundCause::EventCancelled => v1::RefundCause::EventCancelled,
        RefundCause::UnkeptPayment => v1::RefundCause::UnkeptPayment,
        RefundCause::Provider => v1::RefundCause::Provider,
    };
    v1::Refund {
        id: refund.id.to_string(),
        order_id: refund.order_id.to_string(),
        ticket_ids: refund.ticket_ids.iter().map(Uuid::to_string).collect(),
        amount: Some(money_to_proto(Money {
            currency_code: refund.currency_code,
            units: refund.amount_units,
            nanos: 0,
        })),
        status: refund_status_to_proto(refund.status).into(),
        reason: refund.reason,
        create_time: timestamp(refund.created_at),
        update_time: timestamp(refund.updated_at),
        event_id: refund.event_id.to_string(),
        cause: cause.into(),
        return_to_sale: refund.return_to_sale,
        manual_reference: refund.manual_reference.unwrap_or_default(),
        completed_by: refund.completed_by.map(|id| id.to_string()).unwrap_or_default(),
        complete_time: refund.completed_at.and_then(timestamp),
        last_error: refund.last_error.unwrap_or_default(),
    }
}

pub fn audit_entry_to_proto(entry: AuditEntryRow) -> v1::AuditEntry {
    let action = match entry.action {
        AuditAction::EventUpdated => v1::AuditAction::EventUpdated,
        AuditAction::EventPublished => v1::AuditAction::EventPublished,
        AuditAction::EventCancelled => v1::AuditAction::EventCancelled,
        AuditAction::CategoryCreated => v1::AuditAction::CategoryCreated,
        AuditAction::CategoryUpdated => v1::AuditAction::CategoryUpdated,
        AuditAction::ScannerCreated => v1::AuditAction::ScannerCreated,
        AuditAction::ScannerRevoked => v1::AuditAction::ScannerRevoked,
        AuditAction::RefundRequested => v1::AuditAction::RefundRequested,
        AuditAction::RefundCompletedManually => v1::AuditAction::RefundCompletedManually,
        AuditAction::PaymentApproved => v1::AuditAction::PaymentApproved,
        AuditAction::PaymentDenied => v1::AuditAction::PaymentDenied,
    };
    let document = |value: Option<serde_json::Value>| value.map(|v| v.to_string()).unwrap_or_default();
    v1::AuditEntry {
        id: entry.id.to_string(),
        event_id: entry.event_id.to_string(),
        actor_id: entry.actor_id.map(|id| id.to_string()).unwrap_or_default(),
        action: action.into(),
        subject_id: entry.subject_id,
        before: document(entry.before),
        after: document(entry.after),
        create_time: timestamp(entry.created_at),
        api_key_id: entry.api_key_id.map(|id| id.to_string()).unwrap_or_default(),
    }
}

pub fn api_key_scope_to_proto(scope: ApiKeyScope) -> v1::ApiKeyScope {
    match scope {
        ApiKeyScope::EventsRead => v1::ApiKeyScope::EventsRead,
        ApiKeyScope::EventsWrite => v1::ApiKeyScope::EventsWrite,
        ApiKeyScope::OrdersRead => v1::ApiKeyScope::OrdersRead,
        ApiKeyScope::Reports => v1::ApiKeyScope::Reports,
        ApiKeyScope::CheckinAdmin => v1::ApiKeyScope::CheckinAdmin,
    }
}

pub fn api_key_scope_from_proto(scope: v1::ApiKeyScope) -> Option<ApiKeyScope> {
    Some(match scope {
        v1::ApiKeyScope::Unspecified => return None,
        v1::ApiKeyScope::EventsRead => ApiKeyScope::EventsRead,
        v1::ApiKeyScope::EventsWrite => ApiKeyScope::EventsWrite,
        v1::ApiKeyScope::OrdersRead => ApiKeyScope::OrdersRead,
        v1::ApiKeyScope::Reports => ApiKeyScope::Reports,
        v1::ApiKeyScope::CheckinAdmin => ApiKeyScope::CheckinAdmin,
    })
}

/// A key as its owner sees it (never its secret or hash).
pub fn api_key_to_proto(key: &ApiKeyRow, scopes: &[ApiKeyScope]) -> v1::ApiKey {
    v1::ApiKey {
        id: key.id.to_string(),
        name: key.name.clone(),
        scopes: scopes.iter().map(|s| api_key_scope_to_proto(*s).into()).collect(),
        expire_time: key.expire_time.and_then(timestamp),
        create_time: timestamp(key.create_time),
        revoke_time: key.revoke_time.and_then(timestamp),
        owner_id: key.owner_id.to_string(),
    }
}
