//! The service's errors and their one mapping to HTTP statuses and codes.

use crate::protocol::ErrorCode;
use crate::protocol::message::ErrorBody;
use crate::server::store::StoreError;

/// Why the service refuses a request.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "missing or invalid bearer token: send `Authorization: Bearer TOKEN` with a token from `tidemark admin add-user`"
    )]
    Unauthorized,
    /// Also answered for spaces the user is not a member of, so names do not leak.
    #[error("no space {0:?} (or you are not a member of it)")]
    NotFound(String),
    #[error("{0}")]
    NotFoundOther(String),
    #[error(
        "user {user:?} is a read-only member of space {space:?}: ask an admin for `grant {user} {space}` without --read-only"
    )]
    ReadOnly { user: String, space: String },
    #[error("op {index} of the batch is invalid: {reason}")]
    InvalidOp { index: usize, reason: String },
    #[error("op {id} (index {index} of the batch) was pushed before with other content: give a changed op a new id")]
    OpIdConflict { index: usize, id: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("op {index} of the batch carries {bytes} bytes; the limit is {max} bytes per op: split the edit")]
    OpTooLarge { index: usize, bytes: usize, max: usize },
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("the server's history changed at seq {seq} (its store was restored from a backup): re-push and pull again")]
    HistoryChanged { seq: crate::model::Seq },
    #[error("{0}")]
    Conflict(String),
    #[error("admin token required: send `Authorization: Bearer $TIDEMARK_ADMIN_TOKEN`")]
    AdminOnly,
    /// A client that named an older revision in the header (a request without
    /// the header is served as it comes).
    #[error(
        "this client speaks tidemark protocol revision {client}; this server speaks {server} and needs at least {min} \
         (its push answers and ops would be misread): upgrade tidemark on the client"
    )]
    ClientTooOld { client: u32, server: u32, min: u32 },
    #[error(
        "record {collection}/{record} is quarantined: {reason}; the rest of the space works, an operator must repair this record"
    )]
    Quarantined {
        collection: String,
        record: String,
        reason: String,
    },
    #[error("{0}")]
    RequestTimeout(String),
    #[error(
        "the server's storage is failing ({0}): this request changed nothing; the server recovers by itself once \
         its operator fixes the cause (e.g. frees disk space): retry later"
    )]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            ServiceError::Unauthorized | ServiceError::AdminOnly => 401,
            ServiceError::NotFound(_) | ServiceError::NotFoundOther(_) => 404,
            ServiceError::ReadOnly { .. } => 403,
            ServiceError::InvalidOp { .. } | ServiceError::BadRequest(_) => 400,
            ServiceError::OpIdConflict { .. }
            | ServiceError::Conflict(_)
            | ServiceError::HistoryChanged { .. }
            | ServiceError::Quarantined { .. } => 409,
            ServiceError::TooLarge(_) | ServiceError::OpTooLarge { .. } => 413,
            ServiceError::MethodNotAllowed(_) => 405,
            ServiceError::RequestTimeout(_) => 408,
            // Not 426: that status asks for an HTTP protocol switch (with an Upgrade header).
            ServiceError::ClientTooOld { .. } => 400,
            ServiceError::Unavailable(_) => 503,
            ServiceError::Internal(_) => 500,
        }
    }

    /// The stable code clients branch on.
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::Unauthorized | ServiceError::AdminOnly => ErrorCode::Unauthorized,
            ServiceError::NotFound(_) | ServiceError::NotFoundOther(_) => ErrorCode::NotFound,
            ServiceError::ReadOnly { .. } => ErrorCode::ReadOnly,
            ServiceError::InvalidOp { .. } => ErrorCode::InvalidOp,
            ServiceError::OpIdConflict { .. } => ErrorCode::OpIdConflict,
            ServiceError::BadRequest(_) => ErrorCode::BadRequest,
            ServiceError::TooLarge(_) => ErrorCode::TooLarge,
            ServiceError::OpTooLarge { .. } => ErrorCode::OpTooLarge,
            ServiceError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            ServiceError::RequestTimeout(_) => ErrorCode::RequestTimeout,
            ServiceError::Conflict(_) => ErrorCode::Conflict,
            ServiceError::HistoryChanged { .. } => ErrorCode::HistoryChanged,
            ServiceError::ClientTooOld { .. } => ErrorCode::ClientTooOld,
            ServiceError::Quarantined { .. } => ErrorCode::RecordQuarantined,
            ServiceError::Unavailable(_) => ErrorCode::StoreUnavailable,
            ServiceError::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
            op_index: match self {
                ServiceError::InvalidOp { index, .. }
                | ServiceError::OpIdConflict { index, .. }
                | ServiceError::OpTooLarge { index, .. } => Some(*index),
                _ => None,
            },
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists { .. } => ServiceError::Conflict(e.to_string()),
            StoreError::Missing { what: "space", name } => ServiceError::NotFound(name),
            StoreError::Missing { .. } => ServiceError::NotFoundOther(e.to_string()),
            StoreError::OpIdConflict { index, id } => ServiceError::OpIdConflict { index, id },
            StoreError::Unavailable(m) => ServiceError::Unavailable(m),
            StoreError::Backend(m) => ServiceError::Internal(m),
        }
    }
}
