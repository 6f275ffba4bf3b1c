use diesel::result::{DatabaseErrorKind, Error as DieselError};
use std::time::Duration;
use ticketing_domain::{Code, Error, Reason};

/// What a transaction body can fail with: a domain decision (returned as
/// is) or a storage failure (mapped once, in [`From<StoreError> for Error`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Domain(#[from] Error),
    #[error(transparent)]
    Database(#[from] DieselError),
    #[error("no database connection within {0:?}")]
    PoolTimeout(Duration),
    #[error("database unreachable: {0}")]
    Connection(String),
    /// From a single statement ([`crate::Database::statement`]).
    #[error(transparent)]
    Statement(#[from] tokio_postgres::Error),
}

impl StoreError {
    /// True for the unique violation of the given constraint or index.
    pub fn is_unique_violation(&self, constraint: &str) -> bool {
        match self {
            StoreError::Database(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)) => {
                info.constraint_name() == Some(constraint)
            }
            StoreError::Statement(error) => error.as_db_error().is_some_and(|e| {
                *e.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION && e.constraint() == Some(constraint)
            }),
            _ => false,
        }
    }

    /// True when the database itself refused the statement (a constraint, a
    /// deadlock, a domain decision made inside it): something one request of
    /// a batch may have caused. False when the database could not be
    /// reached, which no request caused.
    pub fn is_refusal(&self) -> bool {
        match self {
            StoreError::Domain(_) | StoreError::Database(DieselError::DatabaseError(..)) => true,
            StoreError::Statement(error) => error.as_db_error().is_some(),
            _ => false,
        }
    }
}

/// How long a client should wait before retrying when the database is busy.
const RETRY_AFTER_BUSY: Duration = Duration::from_secs(1);

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Error {
        match error {
            StoreError::Domain(error) => error,
            StoreError::PoolTimeout(_) | StoreError::Connection(_) => {
                tracing::warn!(error = %error, "database unavailable");
                Error::unavailable("the service is busy, retry shortly", RETRY_AFTER_BUSY)
                    .with_reason(Reason::Overloaded)
            }
            StoreError::Database(DieselError::NotFound) => Error::new(Code::NotFound, "not found"),
            StoreError::Database(DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _)) => {
                Error::new(Code::Aborted, "concurrent update, retry the request").with_retry_after(Duration::ZERO)
            }
            StoreError::Database(error) => Error::internal(error),
            StoreError::Statement(error) if error.is_closed() => {
                tracing::warn!(%error, "database unavailable");
                Error::unavailable("the service is busy, retry shortly", RETRY_AFTER_BUSY)
                    .with_reason(Reason::Overloaded)
            }
            StoreError::Statement(error) => Error::internal(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_the_databases_answers_not_its_absence() {
        assert!(StoreError::Domain(Error::new(Code::Aborted, "a known idempotency key")).is_refusal());
        let violation =
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, Box::new("duplicate".to_owned()));
        assert!(StoreError::Database(violation).is_refusal());
        assert!(!StoreError::PoolTimeout(Duration::from_secs(2)).is_refusal());
        assert!(!StoreError::Connection("refused".into()).is_refusal());
        assert!(!StoreError::Database(DieselError::BrokenTransactionManager).is_refusal());
    }
}
