//! The sync server: the service core (auth, membership, validation, limits,
//! seq assignment, materialization), its storage trait and stores, and the
//! axum HTTP front. Never imports `remote`.

pub mod commits;
pub mod error;
pub mod http;
pub mod limits;
pub mod listen;
pub mod local;
mod materialize;
pub mod metrics;
pub mod names;
mod openapi;
pub mod service;
pub mod store;

pub use error::ServiceError;
pub use limits::Limits;
pub use listen::{ServeConfig, Stopped};
pub use service::Service;
