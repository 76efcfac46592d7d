//! The crate's error types: narrow enums where callers branch, one umbrella [`Error`].

use std::fmt;

/// A value the caller passed that tidemark refuses. Every message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    #[error("{what} is empty: give a non-empty name")]
    Empty { what: &'static str },
    #[error("{what} {value:?} is {len} bytes long: the limit is {max} bytes")]
    TooLong {
        what: &'static str,
        value: String,
        len: usize,
        max: usize,
    },
    #[error("{what} {value:?} contains a control character: use printable characters only")]
    ControlCharacter { what: &'static str, value: String },
    #[error("field name {field:?} starts with '_', which tidemark reserves: rename the field")]
    ReservedField { field: String },
    #[error("collection {collection:?} is not in the package (version {version}); known collections: {known}")]
    UnknownCollection {
        collection: String,
        version: u64,
        known: String,
    },
    #[error("field {field:?} is not in collection {collection:?} of the package; known fields: {known}")]
    UnknownField {
        collection: String,
        field: String,
        known: String,
    },
    #[error("field {field:?} is of type {expected}, but the value {value} is not a {expected}: {hint}")]
    WrongType {
        field: String,
        expected: &'static str,
        value: String,
        hint: &'static str,
    },
    #[error("field {field:?} is of type {actual}; {operation} needs a {needed} field")]
    WrongOperation {
        field: String,
        actual: &'static str,
        operation: &'static str,
        needed: &'static str,
    },
    /// The field's type allows the operation, but the record holds a value of another
    /// kind there: written before the package declared the field's type, or by a
    /// replica without the package.
    #[error(
        "field {field:?} of this record holds a {stored} value, written before the field became a {needed} field; {operation} needs a {needed}: put the field's value first (a put stores it as a {needed})"
    )]
    StoredKind {
        field: String,
        stored: &'static str,
        operation: &'static str,
        needed: &'static str,
    },
    #[error("text position {pos} (deleting {del}) is outside field {field:?}, which has {len} characters")]
    TextRange {
        field: String,
        pos: usize,
        del: usize,
        len: usize,
    },
    #[error(
        "adding {by} to counter {field:?} (now {current}) would leave the range -{max}..={max}, \
         the whole numbers every JSON reader holds exactly: add a smaller amount"
    )]
    CounterRange {
        field: String,
        current: i64,
        by: i64,
        max: i64,
    },
    /// One edit of a batch is refused (so the whole batch is): `edit` counts from 1.
    #[error("edit {edit}: {error}")]
    InBatch { edit: usize, error: Box<InvalidInput> },
    #[error("invalid package: {0}")]
    Package(String),
    #[error("{0}")]
    Other(String),
}

/// Bytes that came from outside (a peer, the server, a file) and do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{context}: {reason}")]
pub struct CorruptData {
    pub context: String,
    pub reason: String,
}

impl CorruptData {
    pub fn new(context: impl Into<String>, reason: impl fmt::Display) -> Self {
        CorruptData {
            context: context.into(),
            reason: reason.to_string(),
        }
    }
}

/// The umbrella error of the library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's input is refused; nothing was written.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Bytes from outside (or on disk) do not decode; nothing was written.
    /// (Not a `#[from]`: that would also make the inner error the source, and a
    /// printed chain would repeat it.)
    #[error("corrupt data: {0}")]
    Corrupt(CorruptData),
    /// The record does not exist (or is deleted).
    #[error("record {collection}/{id} does not exist")]
    NotFound { collection: String, id: String },
    /// The store file is held by another process (or by another handle of this
    /// one), or processes disagree on its [`Sharing`](crate::replica::Sharing).
    #[error(
        "the store {path} is in use by another process: a `tidemark sync --watch`, or an application that opened it for itself alone (`Replica::open`; processes that share a store must all open it with `Replica::open_shared`, as the CLI does); stop that process or use another --store"
    )]
    StoreInUse { path: String },
    /// The store file was written by a newer or unknown format.
    #[error(
        "the store has format version {found}, this build understands version {expected}: open it with the tidemark that wrote it, or a newer one"
    )]
    StoreVersion { found: u64, expected: u64 },
    /// The disk under the store failed (full, or an I/O error): nothing was
    /// written. The open store refuses every later transaction until
    /// [`Replica::reopen`](crate::Replica::reopen) (the background sync does that by itself).
    #[error(
        "the store's disk failed ({0}): nothing was written; free disk space (or fix the device) and try again \
         (a running background sync reopens the store by itself)"
    )]
    StorageFailed(String),
    /// The storage engine failed otherwise (a corrupt file, say).
    #[error("storage error: {0}")]
    Storage(String),
    /// The server refused a request of a sync round, or could not be reached:
    /// its HTTP status (None when unreachable) and its error body with a stable
    /// code. [`RemoteError::needs_person`](crate::remote::RemoteError::needs_person)
    /// tells the errors no retry can fix.
    #[error("sync: {0}")]
    Remote(crate::protocol::session::RemoteError),
    /// A switch to another account would lose local changes its
    /// [`SwitchPolicy`](crate::replica::SwitchPolicy) keeps; nothing was changed.
    #[error("{0}; nothing was changed")]
    SwitchRefused(Box<crate::replica::SwitchLoss>),
    /// A sync round could not complete for a reason of the protocol (an answer
    /// that does not fit the request, a store switched during the round, ...).
    #[error("sync: {0}")]
    Sync(String),
    /// tidemark broke one of its own rules (a worker thread panicked, say); nothing
    /// was written.
    #[error("internal error: {0}; nothing was written. This is a bug in tidemark: please report it")]
    Internal(String),
}

impl From<CorruptData> for Error {
    fn from(e: CorruptData) -> Self {
        Error::Corrupt(e)
    }
}

impl Error {
    pub(crate) fn storage(e: impl fmt::Display) -> Self {
        Error::Storage(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
