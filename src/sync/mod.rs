//! Sync over a remote: one round, and (with tokio) the background task.

mod round;

pub use round::{sync_once, sync_once_blocking};
