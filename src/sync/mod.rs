//! Sync over a remote: one round, and (with tokio) the background task.

#[cfg(feature = "background")]
mod background;
mod round;

#[cfg(feature = "background")]
pub use background::{BackgroundConfig, BackgroundSync, SyncStatus};
pub use round::Round;
