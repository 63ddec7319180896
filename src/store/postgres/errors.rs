//! sqlx errors as [`StoreError`]s, and the time limit on every call.

use std::time::Duration;

use crate::store::{StoreError, StoreErrorKind};

/// No answer from PostgreSQL within the configured time.
#[derive(Debug, thiserror::Error)]
#[error("no answer from PostgreSQL within {0:?} (pool exhausted, lock wait or slow query)")]
pub(super) struct TimedOut(pub(super) Duration);

/// The schema name given is not a plain SQL identifier.
#[derive(Debug, thiserror::Error)]
#[error("invalid PostgreSQL schema name {0:?}: use 1 to 40 of a-z, 0-9 and _, not starting with a digit, and not a reserved key word such as `user`")]
pub(super) struct InvalidSchema(pub(super) String);

/// The channel name given is not one PostgreSQL takes as given.
#[derive(Debug, thiserror::Error)]
#[error("invalid PostgreSQL channel name {0:?}: use 1 to 63 of a-z, 0-9 and _, not starting with a digit")]
pub(super) struct InvalidChannel(pub(super) String);

/// The database holds a schema version newer than this build knows.
#[derive(Debug, thiserror::Error)]
#[error("the scopegate schema is at version {found}, newer than this build's {known}: upgrade scopegate")]
pub(super) struct NewerSchema {
    pub(super) found: i32,
    pub(super) known: i32,
}

pub(super) fn corrupt(err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, err)
}

/// Classifies a sqlx error: a duplicate is a conflict; anything that says the
/// server cannot serve now (connection, shutdown, overload, lock timeout) is
/// `Unavailable`; a row we cannot decode is `Corrupt`; the rest is `Backend`.
pub(super) fn db(err: sqlx::Error) -> StoreError {
    let kind = match &err {
        sqlx::Error::Database(e) if e.is_unique_violation() => StoreErrorKind::Conflict,
        sqlx::Error::Database(e) => match e.code().as_deref() {
            // 08: connection exception; 53: insufficient resources; 57: operator
            // intervention (shutdown, cancel); 40: serialization failure, deadlock.
            Some(code) if ["08", "53", "57", "40"].iter().any(|c| code.starts_with(c)) => {
                StoreErrorKind::Unavailable
            }
            _ => StoreErrorKind::Backend,
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreErrorKind::Unavailable,
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::TypeNotFound { .. } => StoreErrorKind::Corrupt,
        _ => StoreErrorKind::Backend,
    };
    StoreError::new(kind, err)
}
