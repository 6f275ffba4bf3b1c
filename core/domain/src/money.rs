//! Money as whole units plus nanos, like `google.type.Money`; never floats.

use crate::error::Violations;

pub const NANOS_PER_UNIT: i32 = 1_000_000_000;
/// Prices above this are certainly a typo (10^13 units covers any real ticket
/// in any currency, IDR included) and keep totals far from i64 overflow.
pub const MAX_PRICE_UNITS: i64 = 10_000_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub currency_code: String,
    pub units: i64,
    pub nanos: i32,
}

impl Money {
    /// Checks a price given by a client; `field` is the JSON path for errors.
    pub fn validate_price(&self, field: &str, violations: &mut Violations) {
        let code_ok = self.currency_code.len() == 3 && self.currency_code.bytes().all(|b| b.is_ascii_uppercase());
        violations.check(code_ok, &format!("{field}.currencyCode"), "must be an ISO 4217 code such as IDR");
        violations.check(
            (0..=MAX_PRICE_UNITS).contains(&self.units),
            &format!("{field}.units"),
            "must be between 0 and 10000000000000",
        );
        violations.check(
            (0..NANOS_PER_UNIT).contains(&self.nanos),
            &format!("{field}.nanos"),
            "must be between 0 and 999999999",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(money: Money) -> Vec<String> {
        let mut v = Violations::default();
        money.validate_price("price", &mut v);
        match v.into_result() {
            Ok(()) => vec![],
            Err(e) => e.into_parts().field_violations.into_iter().map(|f| f.field).collect(),
        }
    }

    #[test]
    fn accepts_a_plain_rupiah_price() {
        assert!(check(Money { currency_code: "IDR".into(), units: 150_000, nanos: 0 }).is_empty());
    }

    #[test]
    fn rejects_negative_units_bad_nanos_and_currency() {
        let fields = check(Money { currency_code: "idr".into(), units: -1, nanos: NANOS_PER_UNIT });
        assert_eq!(fields, ["price.currencyCode", "price.units", "price.nanos"]);
    }

    #[test]
    fn rejects_absurd_prices() {
        let fields = check(Money { currency_code: "IDR".into(), units: MAX_PRICE_UNITS + 1, nanos: 0 });
        assert_eq!(fields, ["price.units"]);
    }
}

impl Money {
    fn total_nanos(&self) -> i128 {
        i128::from(self.units) * i128::from(NANOS_PER_UNIT) + i128::from(self.nanos)
    }

    /// This price times `quantity`, exact.
    pub fn times(&self, quantity: i32) -> i128 {
        self.total_nanos() * i128::from(quantity)
    }

    /// A non-negative amount in nanos back to units + nanos; `None` when it
    /// does not fit (never for prices below [`MAX_PRICE_UNITS`] and bounded orders).
    pub fn from_nanos(currency_code: &str, nanos: i128) -> Option<Money> {
        let per_unit = i128::from(NANOS_PER_UNIT);
        Some(Money {
            currency_code: currency_code.to_owned(),
            units: i64::try_from(nanos / per_unit).ok()?,
            nanos: i32::try_from(nanos % per_unit).ok()?,
        })
    }
}

#[cfg(test)]
mod arithmetic_tests {
    use super::*;

    #[test]
    fn totals_are_exact_across_nanos() {
        let price = Money { currency_code: "USD".into(), units: 19, nanos: 990_000_000 };
        let total = Money::from_nanos("USD", price.times(3)).unwrap();
        assert_eq!(total, Money { currency_code: "USD".into(), units: 59, nanos: 970_000_000 });
    }
}
