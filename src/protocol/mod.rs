//! Sans-IO protocol: the wire messages and the client's sync session. No
//! tokio, reqwest or axum here: a test drives a session against a server in a
//! plain loop.

pub mod code;
pub mod message;
#[cfg(feature = "server")]
pub mod schema;
pub mod session;
pub mod store;
pub mod summary;

pub use crate::replica::Watermarks;
pub use code::ErrorCode;
pub use session::{Request, Response, RoundSummary, Session, SessionConfig};
pub use store::SyncStore;
