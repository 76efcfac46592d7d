//! The stable error codes of API v1: the server answers them in every error
//! body and per refused op, the client branches on them. On the wire a code is
//! its snake_case name; a code this build does not know (from a newer server)
//! is kept as [`ErrorCode::Other`] with its name.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why the server refused a request or one op of a push, or why the client
/// could not use an answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No bearer token, or not a valid one (also a revoked token).
    Unauthorized,
    /// No such space (or not a member of it), user, record or route.
    NotFound,
    /// A read-only member pushed.
    ReadOnly,
    /// One op of a push does not pass the server's checks.
    InvalidOp,
    /// An op id the server holds with other content: another copy of the store delivered this edit.
    OpIdConflict,
    /// A change whose dependencies are not in its record's history.
    MissingDeps,
    /// An (actor, seq) the record's history holds with another change: a restored or copied store.
    ActorReused,
    /// One op over the server's op size limit.
    OpTooLarge,
    /// A request the server cannot read (malformed JSON, a bad parameter).
    BadRequest,
    /// A request body over the server's limit, or too many ops in one push.
    TooLarge,
    MethodNotAllowed,
    /// The request (its body included) took longer than the server's deadline.
    RequestTimeout,
    /// The name is taken, or the package version would go backwards.
    Conflict,
    /// The server's op at the client's watermark is another one: its store was restored.
    HistoryChanged,
    /// The client speaks an older protocol revision than the server needs.
    ClientTooOld,
    /// The record's stored history does not load; the rest of the space works.
    RecordQuarantined,
    /// The server's storage is failing (a full disk): retry later.
    StoreUnavailable,
    Internal,
    /// Client side: the server could not be reached.
    Unreachable,
    /// Client side: a 2xx answer that is not what tidemark expects.
    BadAnswer,
    /// Client side: the server speaks a protocol revision this client cannot use.
    IncompatibleServer,
    /// Client side: an error answer that is not a tidemark error body (a proxy's page, say).
    Http,
    /// Replica side: a pending op that a new package of the space refuses.
    InvalidAfterPackageChange,
    /// A code this build does not know.
    Other(String),
}

impl ErrorCode {
    /// Every code this build knows, for documents and tests.
    pub const KNOWN: [ErrorCode; 23] = [
        ErrorCode::Unauthorized,
        ErrorCode::NotFound,
        ErrorCode::ReadOnly,
        ErrorCode::InvalidOp,
        ErrorCode::OpIdConflict,
        ErrorCode::MissingDeps,
        ErrorCode::ActorReused,
        ErrorCode::OpTooLarge,
        ErrorCode::BadRequest,
        ErrorCode::TooLarge,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::Conflict,
        ErrorCode::HistoryChanged,
        ErrorCode::ClientTooOld,
        ErrorCode::RecordQuarantined,
        ErrorCode::StoreUnavailable,
        ErrorCode::Internal,
        ErrorCode::Unreachable,
        ErrorCode::BadAnswer,
        ErrorCode::IncompatibleServer,
        ErrorCode::Http,
        ErrorCode::InvalidAfterPackageChange,
    ];

    /// The code's name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not_found",
            ErrorCode::ReadOnly => "read_only",
            ErrorCode::InvalidOp => "invalid_op",
            ErrorCode::OpIdConflict => "op_id_conflict",
            ErrorCode::MissingDeps => "missing_deps",
            ErrorCode::ActorReused => "actor_reused",
            ErrorCode::OpTooLarge => "op_too_large",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::Conflict => "conflict",
            ErrorCode::HistoryChanged => "history_changed",
            ErrorCode::ClientTooOld => "client_too_old",
            ErrorCode::RecordQuarantined => "record_quarantined",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Unreachable => "unreachable",
            ErrorCode::BadAnswer => "bad_answer",
            ErrorCode::IncompatibleServer => "incompatible_server",
            ErrorCode::Http => "http",
            ErrorCode::InvalidAfterPackageChange => "invalid_after_package_change",
            ErrorCode::Other(name) => name,
        }
    }

    /// The code of a wire name (`Other` for one this build does not know).
    pub fn from_wire(name: &str) -> ErrorCode {
        ErrorCode::KNOWN
            .into_iter()
            .find(|code| code.as_str() == name)
            .unwrap_or_else(|| ErrorCode::Other(name.to_string()))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(ErrorCode::from_wire(&String::deserialize(deserializer)?))
    }
}

#[cfg(feature = "server")]
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "a stable snake_case code; each answer lists the codes it can carry",
            ))
            .into()
    }
}

#[cfg(feature = "server")]
impl utoipa::ToSchema for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn every_known_code_reads_back_from_its_wire_name_and_an_unknown_one_is_kept() {
        for code in ErrorCode::KNOWN {
            let wire = serde_json::to_string(&code).unwrap();
            assert_eq!(serde_json::from_str::<ErrorCode>(&wire).unwrap(), code, "{wire}");
        }
        let names: std::collections::BTreeSet<&str> = ErrorCode::KNOWN.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::KNOWN.len(), "wire names are distinct");
        assert_eq!(
            serde_json::from_str::<ErrorCode>("\"from_a_newer_server\"").unwrap(),
            ErrorCode::Other("from_a_newer_server".into())
        );
    }
}
