//! The server adapter: a trait that carries a session's requests to a server,
//! and its HTTP implementation (reqwest). The server implements it too, in
//! process (`server::local`: tests, the demo, embedding), so this layer never
//! names the server.

#[cfg(feature = "http-client")]
pub mod http;

use std::future::Future;

pub use crate::protocol::session::RemoteError;
use crate::protocol::{Request, Response};

/// Something that answers a sync session's requests for one (server, user, space).
pub trait Remote: Send + Sync {
    fn call(&self, request: Request) -> impl Future<Output = Result<Response, RemoteError>> + Send;
}
