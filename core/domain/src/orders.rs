//! Orders: the shape of a valid purchase, its price, and the allowed moves
//! `PENDING → PAID | EXPIRED | CANCELLED`, `PAID → REFUNDED`, and
//! `EXPIRED → PAID` when a late payment finds its tickets still for sale.

use crate::Reason;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Code, Error, error::Violations, money::Money};

crate::vocabulary! {
    pub enum OrderStatus {
        Pending = "pending",
        Paid = "paid",
        Expired = "expired",
        Cancelled = "cancelled",
        Refunded = "refunded",
    }
}

impl OrderStatus {
    pub fn can_become(self, next: OrderStatus) -> bool {
        matches!(
            (self, next),
            (OrderStatus::Pending, OrderStatus::Paid | OrderStatus::Expired | OrderStatus::Cancelled)
                | (OrderStatus::Paid, OrderStatus::Refunded)
                | (OrderStatus::Expired, OrderStatus::Paid)
        )
    }

    /// Pending and paid orders hold inventory; the others gave it back.
    pub fn holds_inventory(self) -> bool {
        matches!(self, OrderStatus::Pending | OrderStatus::Paid)
    }

    /// The move to `next`, or ORDER_NOT_PENDING-style refusal.
    pub fn transition(self, next: OrderStatus) -> Result<OrderStatus, Error> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(Error::failed_precondition(
                Reason::OrderNotPending,
                format!("the order is {} and cannot become {}", self.as_str(), next.as_str()),
            ))
        }
    }
}

crate::vocabulary! {
    /// A ticket as its holder sees it: `checked_in` is read from the gate's
    /// log, never stored on the ticket.
    pub enum TicketStatus {
        Valid = "valid",
        CheckedIn = "checked_in",
        /// Its order was refunded or cancelled: turned away at the gate.
        Void = "void",
    }
}

/// Distinct categories in one order.
pub const MAX_LINES_PER_ORDER: usize = 10;
/// Tickets in one order, all categories together.
pub const MAX_TICKETS_PER_ORDER: i32 = 20;
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderLine {
    pub ticket_category_id: Uuid,
    pub quantity: i32,
}

/// The request's own shape, before any category is looked up.
pub fn validate_lines(lines: &[OrderLine]) -> Result<(), Error> {
    let mut violations = Violations::default();
    violations.check(!lines.is_empty(), "items", "must list at least one ticket category");
    violations.check(lines.len() <= MAX_LINES_PER_ORDER, "items", "must list at most 10 ticket categories");
    let mut seen = HashSet::new();
    let mut total: i64 = 0;
    for (i, line) in lines.iter().enumerate() {
        violations.check(line.quantity >= 1, &format!("items[{i}].quantity"), "must be at least 1");
        violations.check(
            seen.insert(line.ticket_category_id),
            &format!("items[{i}].ticketCategoryId"),
            "appears twice; put the whole quantity on one line",
        );
        total += i64::from(line.quantity.max(0));
    }
    violations.into_result()?;
    if total > i64::from(MAX_TICKETS_PER_ORDER) {
        return Err(
            Error::invalid_field("items", "an order holds at most 20 tickets").with_reason(Reason::OrderLimitExceeded)
        );
    }
    Ok(())
}

pub fn validate_idempotency_key(key: &str) -> Result<(), Error> {
    let valid = !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_CHARS && key.bytes().all(|b| b.is_ascii_graphic());
    if valid { Ok(()) } else { Err(Error::invalid_field("requestId", "must be 1 to 255 visible ASCII characters")) }
}

/// What an order needs to know of a category at order time (from the database).
#[derive(Debug, Clone)]
pub struct CategoryForSale {
    pub price: Money,
    pub max_per_order: i32,
    pub sales_start_time: DateTime<Utc>,
    pub sales_end_time: DateTime<Utc>,
}

/// Checks every line against its category and returns each line's unit price
/// and the total. Prices come from the database, never from the client.
pub fn price_order(
    lines: &[OrderLine],
    categories: &HashMap<Uuid, CategoryForSale>,
    now: DateTime<Utc>,
) -> Result<(Vec<Money>, Money), Error> {
    let mut violations = Violations::default();
    for (i, line) in lines.iter().enumerate() {
        if !categories.contains_key(&line.ticket_category_id) {
            violations.add(&format!("items[{i}].ticketCategoryId"), "is not a ticket category of this event");
        }
    }
    violations.into_result()?;

    let mut unit_prices = Vec::with_capacity(lines.len());
    let mut total: i128 = 0;
    let currency = &categories[&lines[0].ticket_category_id].price.currency_code;
    for line in lines {
        let category = &categories[&line.ticket_category_id];
        if now < category.sales_start_time || now >= category.sales_end_time {
            return Err(Error::failed_precondition(Reason::SalesClosed, "this ticket category is not on sale now")
                .with_metadata("ticketCategoryId", line.ticket_category_id.to_string()));
        }
        if line.quantity > category.max_per_order {
            return Err(Error::new(
                Code::InvalidArgument,
                format!("at most {} tickets of this category per order", category.max_per_order),
            )
            .with_reason(Reason::OrderLimitExceeded)
            .with_metadata("ticketCategoryId", line.ticket_category_id.to_string())
            .with_metadata("maxPerOrder", category.max_per_order.to_string()));
        }
        if &category.price.currency_code != currency {
            return Err(Error::invalid_argument("all ticket categories of one order must share a currency"));
        }
        total += category.price.times(line.quantity);
        unit_prices.push(category.price.clone());
    }
    let total =
        Money::from_nanos(currency, total).ok_or_else(|| Error::invalid_argument("the order total is too large"))?;
    Ok((unit_prices, total))
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn line(quantity: i32) -> OrderLine {
        OrderLine { ticket_category_id: Uuid::now_v7(), quantity }
    }

    fn on_sale(units: i64, max_per_order: i32) -> CategoryForSale {
        let now = Utc::now();
        CategoryForSale {
            price: Money { currency_code: "IDR".into(), units, nanos: 0 },
            max_per_order,
            sales_start_time: now - Duration::hours(1),
            sales_end_time: now + Duration::hours(1),
        }
    }

    #[test]
    fn transitions_follow_the_state_machine() {
        use OrderStatus::*;
        assert!(Pending.can_become(Paid) && Pending.can_become(Expired) && Pending.can_become(Cancelled));
        assert!(Paid.can_become(Refunded));
        assert!(Expired.can_become(Paid), "a late payment revives an expired order");
        for (from, to) in [
            (Paid, Expired),
            (Expired, Pending),
            (Cancelled, Paid),
            (Cancelled, Pending),
            (Paid, Cancelled),
            (Refunded, Paid),
            (Pending, Refunded),
        ] {
            assert!(!from.can_become(to), "{from:?} -> {to:?}");
            assert_eq!(from.transition(to).unwrap_err().reason, Some(Reason::OrderNotPending));
        }
        for status in [Pending, Paid, Expired, Cancelled, Refunded] {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn line_shape_rules() {
        assert!(validate_lines(&[line(2)]).is_ok());
        assert!(validate_lines(&[]).is_err());
        let bad = validate_lines(&[line(0), line(-3)]).unwrap_err();
        let fields: Vec<_> = bad.field_violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["items[0].quantity", "items[1].quantity"]);
        let dup = line(1);
        let err = validate_lines(&[dup, dup]).unwrap_err();
        assert_eq!(err.field_violations[0].field, "items[1].ticketCategoryId");
        assert_eq!(validate_lines(&[line(15), line(6)]).unwrap_err().reason, Some(Reason::OrderLimitExceeded));
        assert_eq!(
            validate_lines(&[line(i32::MAX), line(i32::MAX)]).unwrap_err().reason,
            Some(Reason::OrderLimitExceeded)
        );
    }

    #[test]
    fn pricing_uses_the_category_price_and_limits() {
        let (a, b) = (line(2), line(1));
        let categories =
            HashMap::from([(a.ticket_category_id, on_sale(750_000, 4)), (b.ticket_category_id, on_sale(2_500_000, 4))]);
        let (units, total) = price_order(&[a, b], &categories, Utc::now()).unwrap();
        assert_eq!(units[0].units, 750_000);
        assert_eq!(total, Money { currency_code: "IDR".into(), units: 4_000_000, nanos: 0 });

        let too_many = OrderLine { quantity: 5, ..a };
        assert_eq!(
            price_order(&[too_many], &categories, Utc::now()).unwrap_err().reason,
            Some(Reason::OrderLimitExceeded)
        );
        let foreign = line(1);
        let err = price_order(&[foreign], &categories, Utc::now()).unwrap_err();
        assert_eq!(err.field_violations[0].field, "items[0].ticketCategoryId");
        let closed = price_order(&[a], &categories, Utc::now() + Duration::hours(2)).unwrap_err();
        assert_eq!(closed.reason, Some(Reason::SalesClosed));
    }

    #[test]
    fn idempotency_keys() {
        assert!(validate_idempotency_key("3f2c9a1e-order-1").is_ok());
        assert!(validate_idempotency_key("").is_err());
        assert!(validate_idempotency_key("has space").is_err());
        assert!(validate_idempotency_key(&"k".repeat(256)).is_err());
    }
}
