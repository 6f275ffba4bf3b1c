//! Events and ticket categories: what a valid one looks like and which
//! status changes are allowed.

use crate::Reason;
use chrono::{DateTime, Utc};

use crate::{
    error::{Error, Violations},
    money::Money,
    payments::PaymentSettings,
};

crate::vocabulary! {
    pub enum EventStatus {
        Draft = "draft",
        Published = "published",
        Cancelled = "cancelled",
    }
}

impl EventStatus {
    /// A cancelled event is final; its details no longer change.
    pub fn ensure_editable(self) -> Result<(), Error> {
        match self {
            EventStatus::Cancelled => {
                Err(Error::failed_precondition(Reason::EventCancelled, "a cancelled event cannot be changed"))
            }
            EventStatus::Draft | EventStatus::Published => Ok(()),
        }
    }

    pub fn publish(
        self,
        category_count: usize,
        details: &EventDetails,
        now: DateTime<Utc>,
    ) -> Result<EventStatus, Error> {
        if self != EventStatus::Draft {
            return Err(Error::failed_precondition(Reason::EventNotDraft, "only a draft event can be published"));
        }
        if category_count == 0 {
            return Err(Error::failed_precondition(
                Reason::EventHasNoCategories,
                "an event needs at least one ticket category before it is published",
            ));
        }
        if details.end_time <= now {
            return Err(Error::failed_precondition(Reason::EventEnded, "the event has already ended"));
        }
        Ok(EventStatus::Published)
    }

    pub fn cancel(self) -> Result<EventStatus, Error> {
        self.ensure_editable()?;
        Ok(EventStatus::Cancelled)
    }
}

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;

/// The writable fields of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDetails {
    pub name: String,
    pub description: String,
    pub venue: String,
    pub time_zone: String,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub sales_start_time: DateTime<Utc>,
    pub sales_end_time: DateTime<Utc>,
    /// Tickets one customer may hold for the event across pending and paid
    /// orders; 0 means [`DEFAULT_MAX_TICKETS_PER_CUSTOMER`].
    pub max_tickets_per_customer: i32,
    pub waiting_room: WaitingRoom,
    pub payment: PaymentSettings,
}

/// Tickets one customer may hold for an event that sets no limit.
pub const DEFAULT_MAX_TICKETS_PER_CUSTOMER: i32 = 10;
/// Upper bound on `maxTicketsPerCustomer`.
pub const MAX_TICKETS_PER_CUSTOMER: i32 = 10_000;
/// How long an admission lasts when the organizer leaves it unset.
pub const DEFAULT_ADMISSION_MINUTES: i32 = 10;
pub const MAX_ADMIT_PER_MINUTE: i32 = 1_000_000;
pub const MAX_ADMISSION_MINUTES: i32 = 24 * 60;

/// The event's virtual waiting room (API.md "On-sale front door"): while
/// enabled, buyers queue and only admitted ones may order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitingRoom {
    pub enabled: bool,
    /// Admissions granted per minute.
    pub admit_per_minute: i32,
    /// How long an admission lasts; 0 means [`DEFAULT_ADMISSION_MINUTES`].
    pub admission_minutes: i32,
    /// Unexpired admissions at once; 0 means as many as a full admission
    /// period admits (`admit_per_minute × admission_minutes`).
    pub max_active_buyers: i32,
    /// Proof-of-work to join: the most key derivations a solution may take
    /// (the one asked for is uniform below it); 0 means
    /// [`DEFAULT_CHALLENGE_DIFFICULTY`].
    pub challenge_difficulty: i32,
}

/// About 0.2 s in a browser's WebCrypto; a farm pays it per account.
pub const DEFAULT_CHALLENGE_DIFFICULTY: i32 = 5_000;
pub const MAX_CHALLENGE_DIFFICULTY: i32 = 10_000_000;

impl WaitingRoom {
    pub fn admission_minutes(&self) -> i32 {
        if self.admission_minutes > 0 { self.admission_minutes } else { DEFAULT_ADMISSION_MINUTES }
    }

    pub fn challenge_difficulty(&self) -> u32 {
        u32::try_from(self.challenge_difficulty).ok().filter(|d| *d > 0).unwrap_or(DEFAULT_CHALLENGE_DIFFICULTY as u32)
    }

    pub fn admission_period(&self) -> chrono::Duration {
        chrono::Duration::minutes(self.admission_minutes().into())
    }

    pub fn max_active_buyers(&self) -> i64 {
        if self.max_active_buyers > 0 {
            self.max_active_buyers.into()
        } else {
            i64::from(self.admit_per_minute) * i64::from(self.admission_minutes())
        }
    }

    fn validate(&self, violations: &mut Violations) {
        let range = |value: i32, max: i32| (0..=max).contains(&value);
        violations.check(
            range(self.admit_per_minute, MAX_ADMIT_PER_MINUTE) && (!self.enabled || self.admit_per_minute > 0),
            "waitingRoom.admitPerMinute",
            "must be between 1 and 1000000 while the room is enabled",
        );
        violations.check(
            range(self.admission_minutes, MAX_ADMISSION_MINUTES),
            "waitingRoom.admissionMinutes",
            "must be between 0 (10 minutes) and 1440",
        );
        violations.check(self.max_active_buyers >= 0, "waitingRoom.maxActiveBuyers", "must not be negative");
        violations.check(
            range(self.challenge_difficulty, MAX_CHALLENGE_DIFFICULTY),
            "waitingRoom.challengeDifficulty",
            "must be between 0 (5000) and 10000000",
        );
    }
}

/// A change to an event; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub venue: Option<String>,
    pub time_zone: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub sales_start_time: Option<DateTime<Utc>>,
    pub sales_end_time: Option<DateTime<Utc>>,
    pub max_tickets_per_customer: Option<i32>,
    /// Replaces the whole room's settings.
    pub waiting_room: Option<WaitingRoom>,
    /// Replaces the whole payment page's settings.
    pub payment: Option<PaymentSettings>,
}

impl EventDetails {
    /// The tickets one customer may hold for this event.
    pub fn max_tickets_per_customer(&self) -> i32 {
        if self.max_tickets_per_customer > 0 { self.max_tickets_per_customer } else { DEFAULT_MAX_TICKETS_PER_CUSTOMER }
    }

    pub fn apply(mut self, patch: EventPatch) -> EventDetails {
        let EventPatch {
            name,
            description,
            venue,
            time_zone,
            start_time,
            end_time,
            sales_start_time,
            sales_end_time,
            max_tickets_per_customer,
            waiting_room,
            payment,
        } = patch;
        if let Some(v) = payment {
            self.payment = v;
        }
        if let Some(v) = max_tickets_per_customer {
            self.max_tickets_per_customer = v;
        }
        if let Some(v) = waiting_room {
            self.waiting_room = v;
        }
        if let Some(v) = name {
            self.name = v;
        }
        if let Some(v) = description {
            self.description = v;
        }
        if let Some(v) = venue {
            self.venue = v;
        }
        if let Some(v) = time_zone {
            self.time_zone = v;
        }
        if let Some(v) = start_time {
            self.start_time = v;
        }
        if let Some(v) = end_time {
            self.end_time = v;
        }
        if let Some(v) = sales_start_time {
            self.sales_start_time = v;
        }
        if let Some(v) = sales_end_time {
            self.sales_end_time = v;
        }
        self
    }

    pub fn validate(&self, violations: &mut Violations) {
        check_name(&self.name, "name", violations);
        violations.check(
            self.description.chars().count() <= MAX_DESCRIPTION_CHARS,
            "description",
            "must be at most 10000 characters",
        );
        violations.check_multiline_text("description", &self.description);
        check_name(&self.venue, "venue", violations);
        violations.check(
            self.time_zone.parse::<chrono_tz::Tz>().is_ok(),
            "timeZone",
            "must be an IANA time zone such as Asia/Jakarta",
        );
        violations.check(self.start_time < self.end_time, "endTime", "must be after startTime");
        violations.check(self.sales_start_time < self.sales_end_time, "salesEndTime", "must be after salesStartTime");
        violations.check(self.sales_end_time <= self.end_time, "salesEndTime", "must not be after endTime");
        violations.check(
            (0..=MAX_TICKETS_PER_CUSTOMER).contains(&self.max_tickets_per_customer),
            "maxTicketsPerCustomer",
            "must be between 0 (10 tickets) and 10000",
        );
        self.waiting_room.validate(violations);
        self.payment.validate(violations);
    }
}

fn check_name(value: &str, field: &str, violations: &mut Violations) {
    let chars = value.trim().chars().count();
    violations.check(chars > 0, field, "must not be empty");
    violations.check(chars <= MAX_NAME_CHARS, field, "must be at most 200 characters");
    violations.check_plain_text(field, value);
}

pub const MAX_CAPACITY: i32 = 10_000_000;
/// Upper bound on `maxPerOrder`: a ticket shop, not a wholesale channel.
pub const MAX_TICKETS_PER_ORDER: i32 = 100;

/// The writable fields of a ticket category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryDetails {
    pub name: String,
    pub price: Money,
    pub capacity: i32,
    pub max_per_order: i32,
    /// `None`: the event's sales window applies.
    pub sales_start_time: Option<DateTime<Utc>>,
    pub sales_end_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategoryPatch {
    pub name: Option<String>,
    pub price: Option<Money>,
    pub capacity: Option<i32>,
    pub max_per_order: Option<i32>,
    pub sales_start_time: Option<DateTime<Utc>>,
    pub sales_end_time: Option<DateTime<Utc>>,
}

impl CategoryDetails {
    pub fn apply(mut self, patch: CategoryPatch) -> CategoryDetails {
        let CategoryPatch { name, price, capacity, max_per_order, sales_start_time, sales_end_time } = patch;
        if let Some(v) = name {
            self.name = v;
        }
        if let Some(v) = price {
            self.price = v;
        }
        if let Some(v) = capacity {
            self.capacity = v;
        }
        if let Some(v) = max_per_order {
            self.max_per_order = v;
        }
        if sales_start_time.is_some() {
            self.sales_start_time = sales_start_time;
        }
        if sales_end_time.is_some() {
            self.sales_end_time = sales_end_time;
        }
        self
    }

    pub fn validate(&self, event: &EventDetails, violations: &mut Violations) {
        check_name(&self.name, "name", violations);
        self.price.validate_price("price", violations);
        violations.check((1..=MAX_CAPACITY).contains(&self.capacity), "capacity", "must be between 1 and 10000000");
        violations.check(
            (1..=MAX_TICKETS_PER_ORDER).contains(&self.max_per_order),
            "maxPerOrder",
            "must be between 1 and 100",
        );
        violations.check(self.max_per_order <= self.capacity, "maxPerOrder", "must not exceed capacity");
        let (start, end) = self.sales_window(event);
        violations.check(start < end, "salesEndTime", "must be after salesStartTime");
        violations.check(end <= event.end_time, "salesEndTime", "must not be after the event's endTime");
    }

    /// The category's own window, falling back to the event's.
    pub fn sales_window(&self, event: &EventDetails) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.sales_start_time.unwrap_or(event.sales_start_time), self.sales_end_time.unwrap_or(event.sales_end_time))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn concert(now: DateTime<Utc>) -> EventDetails {
        EventDetails {
            name: "Java Jazz".into(),
            description: String::new(),
            venue: "JIExpo Kemayoran".into(),
            time_zone: "Asia/Jakarta".into(),
            start_time: now + Duration::days(30),
            end_time: now + Duration::days(30) + Duration::hours(5),
            sales_start_time: now,
            sales_end_time: now + Duration::days(29),
            max_tickets_per_customer: 0,
            waiting_room: WaitingRoom::default(),
            payment: PaymentSettings::default(),
        }
    }

    fn violations_of(check: impl FnOnce(&mut Violations)) -> Vec<String> {
        let mut v = Violations::default();
        check(&mut v);
        v.into_result()
            .err()
            .map(|e| e.into_parts().field_violations.into_iter().map(|f| f.field).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_complete_event_is_valid() {
        let event = concert(Utc::now());
        assert!(violations_of(|v| event.validate(v)).is_empty());
    }

    #[test]
    fn every_bad_event_field_is_reported() {
        let now = Utc::now();
        let event = EventDetails {
            name: "  ".into(),
            time_zone: "Mars/Olympus".into(),
            end_time: now,
            start_time: now + Duration::hours(1),
            ..concert(now)
        };
        assert_eq!(violations_of(|v| event.validate(v)), ["name", "timeZone", "endTime", "salesEndTime"]);
    }

    #[test]
    fn patch_changes_only_given_fields() {
        let now = Utc::now();
        let event = concert(now).apply(EventPatch { venue: Some("GBK".into()), ..Default::default() });
        assert_eq!(event.venue, "GBK");
        assert_eq!(event.name, "Java Jazz");
    }

    #[test]
    fn publish_needs_a_draft_with_categories_that_has_not_ended() {
        let now = Utc::now();
        let event = concert(now);
        assert_eq!(EventStatus::Draft.publish(1, &event, now).unwrap(), EventStatus::Published);
        assert_eq!(EventStatus::Draft.publish(0, &event, now).unwrap_err().reason, Some(Reason::EventHasNoCategories));
        assert_eq!(EventStatus::Published.publish(1, &event, now).unwrap_err().reason, Some(Reason::EventNotDraft));
        let later = event.end_time + Duration::seconds(1);
        assert_eq!(EventStatus::Draft.publish(1, &event, later).unwrap_err().reason, Some(Reason::EventEnded));
    }

    #[test]
    fn cancelled_is_final() {
        assert_eq!(EventStatus::Published.cancel().unwrap(), EventStatus::Cancelled);
        assert!(EventStatus::Cancelled.cancel().is_err());
        assert!(EventStatus::Cancelled.ensure_editable().is_err());
    }

    #[test]
    fn category_limits() {
        let now = Utc::now();
        let event = concert(now);
        let category = CategoryDetails {
            name: "VIP".into(),
            price: Money { currency_code: "IDR".into(), units: 1_500_000, nanos: 0 },
            capacity: 2,
            max_per_order: 4,
            sales_start_time: None,
            sales_end_time: Some(event.end_time + Duration::hours(1)),
        };
        assert_eq!(violations_of(|v| category.validate(&event, v)), ["maxPerOrder", "salesEndTime"]);
        let fixed = category.apply(CategoryPatch {
            capacity: Some(500),
            sales_end_time: Some(event.sales_end_time),
            ..Default::default()
        });
        assert!(violations_of(|v| fixed.validate(&event, v)).is_empty());
    }
}
