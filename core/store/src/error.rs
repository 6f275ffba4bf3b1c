use diesel::result::{DatabaseErrorKind, Error as DieselError};
use std::time::Duration;
use ticketing_domain::{Code, Error, error::Resource};

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

impl StoreError {
    /// The database could not answer in time or at all — a connection that
    /// died, a deadline (statement, lock wait, idle transaction, PgBouncer's
    /// queue) that ran out, a server shutting down — as opposed to a refusal
    /// of the request itself. The caller may retry; it is never a 500.
    pub fn is_unavailability(&self) -> bool {
        match self {
            StoreError::PoolTimeout(_) | StoreError::Connection(_) => true,
            StoreError::Database(DieselError::BrokenTransactionManager) => true,
            StoreError::Database(DieselError::DatabaseError(kind, info)) => match kind {
                DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection => true,
                // A write reached a server that is a replica now: the primary
                // moved (a failover or a switchover) and the route has not
                // caught up yet. Writes only ever go to the primary's URL.
                DatabaseErrorKind::ReadOnlyTransaction => true,
                // diesel-async keeps no SQLSTATE for these: their messages
                // (a server whose lc_messages is not English says others).
                DatabaseErrorKind::Unknown => UNAVAILABLE_MESSAGES.iter().any(|m| info.message().contains(m)),
                _ => false,
            },
            StoreError::Statement(error) => match error.as_db_error() {
                None => {
                    error.is_closed()
                        || std::error::Error::source(error).is_some_and(|cause| cause.is::<std::io::Error>())
                }
                Some(db) => {
                    use tokio_postgres::error::SqlState;
                    let code = db.code();
                    code.code().starts_with("08")
                        || [
                            SqlState::QUERY_CANCELED,
                            SqlState::LOCK_NOT_AVAILABLE,
                            SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
                            SqlState::ADMIN_SHUTDOWN,
                            SqlState::CRASH_SHUTDOWN,
                            SqlState::CANNOT_CONNECT_NOW,
                            SqlState::READ_ONLY_SQL_TRANSACTION,
                        ]
                        .contains(code)
                        || UNAVAILABLE_MESSAGES.iter().any(|m| db.message().contains(m))
                }
            },
            StoreError::Domain(_) | StoreError::Database(_) => false,
        }
    }
}

/// Messages of the deadlines and shutdowns (Postgres's, in the C locale, and
/// PgBouncer's own), for errors that arrive without their SQLSTATE.
const UNAVAILABLE_MESSAGES: &[&str] = &[
    "canceling statement due to",
    "terminating connection due to",
    "the database system is",
    "query_wait_timeout",
    "server conn crashed",
    "no more connections allowed",
    "pgbouncer cannot connect to server",
    // PgBouncer between a failed connect to the primary and its next try
    // (server_login_retry): a failover under way.
    "server login has been failing",
];

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Error {
        match error {
            StoreError::Domain(error) => error,
            error if error.is_unavailability() => {
                tracing::warn!(error = %error, "database unavailable");
                Error::overloaded(Resource::Database, "the service is busy, retry shortly", RETRY_AFTER_BUSY)
            }
            StoreError::Database(DieselError::NotFound) => Error::new(Code::NotFound, "not found"),
            StoreError::Database(DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _)) => {
                Error::new(Code::Aborted, "concurrent update, retry the request").with_retry_after(Duration::ZERO)
            }
            other => Error::internal(other),
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

    #[test]
    fn deadlines_and_lost_connections_are_unavailability_not_internal_errors() {
        let unknown = |message: &str| {
            StoreError::Database(DieselError::DatabaseError(DatabaseErrorKind::Unknown, Box::new(message.to_owned())))
        };
        for gone in [
            unknown("canceling statement due to lock timeout"),
            unknown("canceling statement due to statement timeout"),
            unknown("terminating connection due to administrator command"),
            unknown("query_wait_timeout"),
            unknown("server login has been failing, try again later (server_login_retry)"),
            StoreError::Database(DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection,
                Box::new("server closed the connection".to_owned()),
            )),
            StoreError::Database(DieselError::BrokenTransactionManager),
            StoreError::PoolTimeout(Duration::from_secs(2)),
            // A write that reached the old primary, a replica now (a switchover).
            StoreError::Database(DieselError::DatabaseError(
                DatabaseErrorKind::ReadOnlyTransaction,
                Box::new("cannot execute UPDATE in a read-only transaction".to_owned()),
            )),
        ] {
            let error = Error::from(gone);
            assert_eq!(error.code, Code::Unavailable, "{error}");
            assert_eq!(error.overloaded_resource(), Some(Resource::Database));
            assert!(error.retry_after.is_some());
        }
        assert_eq!(Error::from(unknown("syntax error at or near")).code, Code::Internal);
    }
}
