//! # tidemark — an offline-first record sync engine
//!
//! People edit records (contacts, accounts, notes: any JSON-like record) in a
//! local [`Replica`] that always works, online or not. Every edit becomes an
//! [`Op`] — an automerge change plus its envelope — appended to a
//! redb change log in the same transaction that updates the record's document
//! and the materialized view. Sync exchanges those logs with a server since the
//! last shared watermark, and automerge merges them deterministically.
//!
//! ## Layers (inner to outer)
//!
//! - [`model`] — ids, envelopes, packages: plain values.
//! - `record` — the automerge record document (the only module naming automerge);
//!   internal: applications reach records through [`Replica`].
//! - [`replica`] — the local store on redb (the only client module naming redb).
//! - [`protocol`] — wire messages and the sans-IO sync session.
//! - [`remote`] — the server adapter trait: HTTP (reqwest) and in-process.
//! - [`sync`] — one sync round over a remote, and the background task.
//! - `server` — the service core, its stores (redb) and the axum front.
//!
//! ## Example: a local edit
//!
//! ```
//! use serde_json::json;
//! let replica = tidemark::Replica::in_memory().unwrap();
//! replica.put("contacts", "c1", json!({"name": "Ada", "visits": 1})).unwrap();
//! let fields = replica.get("contacts", "c1").unwrap().unwrap();
//! assert_eq!(fields["name"], "Ada");
//! assert_eq!(replica.status().unwrap().pending, 1);
//! ```
//!
//! ## Example: two replicas converge through an embedded server
//!
//! ```
//! # #[cfg(feature = "server")] {
//! use std::sync::Arc;
//! use serde_json::json;
//! use tidemark::protocol::SessionConfig;
//! use tidemark::protocol::message::{CreateSpace, Grant};
//! use tidemark::server::local::LocalRemote;
//! use tidemark::server::{store::redb::RedbStore, Limits, Service};
//! use tidemark::sync::Round;
//! use tidemark::Replica;
//!
//! let service = Arc::new(Service::new(RedbStore::in_memory().unwrap(), Limits::default(), None).unwrap());
//! service.create_space(&CreateSpace { space: "crm".into(), package: None }).unwrap();
//! let token = service.add_user("ada").unwrap().token;
//! service.grant(&Grant { user: "ada".into(), space: "crm".into(), read_only: false }).unwrap();
//! let remote = LocalRemote::new(service.clone(), token, "crm");
//!
//! let (laptop, phone) = (Replica::in_memory().unwrap(), Replica::in_memory().unwrap());
//! laptop.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
//! phone.put("contacts", "c2", json!({"name": "Grace"})).unwrap();
//! for replica in [&laptop, &phone, &laptop] {
//!     Round::new(replica, SessionConfig::default()).run_blocking(|request| remote.call_blocking(request)).unwrap();
//! }
//! assert_eq!(laptop.view_rows().unwrap(), phone.view_rows().unwrap());
//! # }
//! ```

// automerge 0.12 panics on some malformed bytes. tidemark turns those panics into
// typed errors behind `catch_unwind` (`record::guarded`); a `panic = "abort"` build
// would turn a hostile peer's bytes into a crash instead, so it does not build.
#[cfg(panic = "abort")]
compile_error!(
    "tidemark needs panic = \"unwind\": it catches automerge's panics on malformed input \
     and returns them as errors; with panic = \"abort\" such input would crash the process"
);

pub mod error;
mod fsutil;
pub mod model;
pub mod protocol;
// The record document (automerge) is an internal layer: applications read
// and write records through `Replica`. Public only for the crate's own tests,
// benches and fuzz targets.
#[cfg(feature = "test-support")]
pub mod record;
#[cfg(not(feature = "test-support"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod record;
pub mod remote;
pub mod replica;
#[cfg(feature = "server")]
pub mod server;
pub mod sync;

pub use error::{Error, InvalidInput, Result};
pub use model::{ActorId, Binding, Collection, FieldType, LogPos, Op, OpId, Package, RecordId, Seq};
pub use record::{FieldConflict, Fields};
pub use replica::{InitialSync, Replica, Status};
