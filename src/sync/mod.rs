//! Sync over a remote: one round, and (with tokio) the background task.

#[cfg(feature = "background")]
mod background;
mod round;

#[cfg(feature = "background")]
pub use background::{BackgroundConfig, BackgroundSync, SyncStatus};
pub use round::{sync_once, sync_once_blocking, sync_once_observed};
