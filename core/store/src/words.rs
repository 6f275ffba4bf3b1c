//! Words of the domain's closed sets (statuses, results) read from text
//! columns: parsed once here, where rows are decoded. A word the domain does
//! not know fails the read instead of becoming a default.

use diesel::{
    deserialize::{self, FromSql, FromSqlRow},
    pg::{Pg, PgValue},
    sql_types::Text,
};
use ticketing_domain::Vocabulary;

use crate::StoreError;

/// A field read as `#[diesel(deserialize_as = Word<T>)]`.
#[derive(Debug, Clone, Copy, FromSqlRow)]
pub struct Word<T>(pub T);

impl<T: Vocabulary> FromSql<Text, Pg> for Word<T> {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
        parse(&text).map(Word).map_err(Into::into)
    }
}

/// `text` as a word of `T`, or an error naming both.
pub fn parse<T: Vocabulary>(text: &str) -> Result<T, String> {
    T::parse(text).ok_or_else(|| format!("{text:?} is not a {}", std::any::type_name::<T>()))
}

/// A word from a tokio-postgres row (the batched statements).
pub fn column<T: Vocabulary>(row: &tokio_postgres::Row, column: &str) -> Result<T, StoreError> {
    let text: &str = row.try_get(column)?;
    parse(text).map_err(|e| ticketing_domain::Error::internal(e).into())
}

/// `From<Word<T>> for T` for each word type read with `deserialize_as`
/// (a blanket impl over `T` is not allowed for foreign types).
macro_rules! words {
    ($($word:ty),+ $(,)?) => {
        $(impl From<Word<$word>> for $word {
            fn from(word: Word<$word>) -> $word {
                word.0
            }
        })+
    };
}

words!(
    ticketing_domain::orders::OrderStatus,
    ticketing_domain::orders::TicketStatus,
    ticketing_domain::payments::PaymentStatus,
    ticketing_domain::catalog::EventStatus,
    ticketing_domain::reports::ReportStatus,
    ticketing_domain::identity::Role,
    ticketing_domain::checkin::ScanResult,
    ticketing_domain::refunds::RefundStatus,
    ticketing_domain::refunds::RefundCause,
    ticketing_domain::audit::AuditAction,
);
