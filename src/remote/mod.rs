//! The server adapter: a trait that carries a session's requests to a server,
//! an HTTP implementation (reqwest) and an in-process one (a server core in
//! the same process: tests, the demo, embedding).

#[cfg(feature = "http-client")]
pub mod http;
#[cfg(feature = "server")]
pub mod local;

use std::future::Future;

pub use crate::protocol::session::RemoteError;
use crate::protocol::{Request, Response};

/// Something that answers a sync session's requests for one (server, user, space).
pub trait Remote: Send + Sync {
    fn call(&self, request: Request) -> impl Future<Output = Result<Response, RemoteError>> + Send;
}
