//! Quick timings for the background sync task, and waiting on its status.

use std::time::Duration;

use tidemark::sync::{BackgroundConfig, BackgroundSync, SyncStatus};

/// Short delays, so a test sees many rounds in little time; an hour between idle rounds.
pub fn config() -> BackgroundConfig {
    BackgroundConfig {
        interval: Duration::from_secs(3600),
        debounce: Duration::from_millis(20),
        poll: Duration::from_millis(20),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..BackgroundConfig::default()
    }
}

/// Waits (up to 30 s) until the task's status passes `check`.
pub async fn wait_for(sync: &BackgroundSync, what: &str, check: impl Fn(&SyncStatus) -> bool) -> SyncStatus {
    let mut rx = sync.watch();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = rx.borrow_and_update().clone();
        if check(&status) {
            return status;
        }
        tokio::time::timeout_at(deadline, rx.changed())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}: {status:?}"))
            .unwrap();
    }
}
