//! How the PostgreSQL store reports what went wrong.

use std::fmt;

use crate::server::store::StoreError;

/// A PostgreSQL error as the store reports it: lost connections and I/O as
/// unavailable (the next call reconnects), the database's refusals with its words.
pub(crate) fn pg(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        return StoreError::Backend(format!("PostgreSQL: {} ({})", db.message(), db.code().code()));
    }
    let mut source = std::error::Error::source(&e);
    let mut cause = e.to_string();
    while let Some(inner) = source {
        cause = format!("{cause}: {inner}");
        source = inner.source();
    }
    StoreError::Unavailable(format!("PostgreSQL: {cause}"))
}

pub(super) fn corrupt(what: impl fmt::Display, reason: impl fmt::Display) -> StoreError {
    StoreError::Backend(format!("corrupt server store: {what}: {reason}"))
}
