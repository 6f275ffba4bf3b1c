//! AIP-158 paging: page sizes and opaque keyset page tokens.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::Error;

pub const DEFAULT_PAGE_SIZE: i64 = 20;
pub const MAX_PAGE_SIZE: i64 = 100;

/// 0 means the default; larger than the maximum is clamped (AIP-158).
pub fn page_size(requested: i32) -> Result<i64, Error> {
    match requested {
        n if n < 0 => Err(Error::invalid_field("pageSize", "must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok(i64::from(n).min(MAX_PAGE_SIZE)),
    }
}

/// The token of the page after `page`: the last item's, when the page is
/// full (a shorter page is the last one); empty otherwise.
pub fn next_page_token<T>(page: &[T], limit: i64, token_of: impl FnOnce(&T) -> String) -> String {
    match page.last() {
        Some(last) if i64::try_from(page.len()).is_ok_and(|n| n == limit) => token_of(last),
        _ => String::new(),
    }
}

/// Position after the last item of a page, ordered by (time, id). Keyset
/// paging keeps every page an index range scan, however deep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub time: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", self.time.timestamp_micros(), self.id))
    }

    /// Empty token is the first page.
    pub fn decode(token: &str) -> Result<Option<Cursor>, Error> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || Error::invalid_field("pageToken", "is not a token from a previous page");
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let raw = String::from_utf8(raw).map_err(|_| invalid())?;
        let (micros, id) = raw.split_once('|').ok_or_else(invalid)?;
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        let time = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        let id = Uuid::parse_str(id).map_err(|_| invalid())?;
        Ok(Some(Cursor { time, id }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let cursor =
            Cursor { time: DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap(), id: Uuid::now_v7() };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), Some(cursor));
        assert_eq!(Cursor::decode("").unwrap(), None);
    }

    #[test]
    fn only_a_full_page_has_a_next_token() {
        let token = |n: &i32| n.to_string();
        assert_eq!(next_page_token(&[1, 2, 3], 3, token), "3");
        assert_eq!(next_page_token(&[1, 2], 3, token), "");
        assert_eq!(next_page_token::<i32>(&[], 3, token), "");
    }

    #[test]
    fn garbage_tokens_are_invalid_arguments() {
        for token in ["%%%", "bm9waXBl", &URL_SAFE_NO_PAD.encode("x|y")] {
            let err = Cursor::decode(token).unwrap_err();
            assert_eq!(err.field_violations[0].field, "pageToken");
        }
    }

    #[test]
    fn page_size_defaults_and_clamps() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(5).unwrap(), 5);
        assert_eq!(page_size(10_000).unwrap(), MAX_PAGE_SIZE);
        assert!(page_size(-1).is_err());
    }
}
