//! Helpers shared by the integration tests.
#![allow(dead_code)]

#[cfg(feature = "background")]
pub mod background;
#[cfg(all(feature = "server", feature = "http-client"))]
pub mod live;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod store_suite;

use tidemark::replica::{LogEntry, PulledOp, PulledPage};
use tidemark::{Package, Replica, Seq};

/// Every op in `from`'s log (local and pulled), as a page another replica can apply.
pub fn all_ops(from: &Replica) -> Vec<PulledOp> {
    from.log_entries(tidemark::LogPos(0), usize::MAX)
        .unwrap()
        .into_iter()
        .filter_map(|(_, e)| match e {
            LogEntry::Local(op) | LogEntry::Pulled(op, _) => Some(PulledOp { seq: Seq(0), op }),
            LogEntry::Snapshot { .. } => None,
        })
        .collect()
}

/// Sends everything `from` knows to `to` in one page.
pub fn send(from: &Replica, to: &Replica) {
    to.apply_pulled(&PulledPage {
        ops: all_ops(from),
        end: Seq(0),
        mark: None,
    })
    .unwrap();
}

/// An in-memory replica with [`crm_package`] installed.
pub fn replica_with_package() -> tidemark::Replica {
    let r = tidemark::Replica::in_memory().unwrap();
    r.set_package(Some(&crm_package())).unwrap();
    r
}

pub fn crm_package() -> Package {
    Package::from_json(
        r#"{"version": 1, "collections": {
            "contacts": {"fields": {"name": "string", "email": "string", "age": "number", "vip": "bool",
                                     "born": "datetime", "tags": "json", "note": "text", "visits": "counter"}},
            "accounts": {"fields": {"name": "string"}}
        }}"#,
    )
    .unwrap()
}
