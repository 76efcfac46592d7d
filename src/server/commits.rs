//! Live pull: who is waiting for a space's next commit, and waking them.
//!
//! A pull with `wait` that finds nothing new registers here before it reads
//! the store again, so a commit between its read and its wait still wakes
//! it. Commits are announced by the service after each append and, for a
//! store shared by several processes, by the store's listener
//! (`ServerStore::watch_commits`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::model::Seq;
use crate::protocol::message::PullResponse;

/// Per-space wake-ups for held pulls.
#[derive(Debug, Default)]
pub struct Commits {
    spaces: Mutex<HashMap<String, Arc<Notify>>>,
    closed: AtomicBool,
}

impl Commits {
    /// The wake-up of `space`: await `notified()` on it (enabled before the
    /// store is read) to learn of the next commit.
    pub fn of(&self, space: &str) -> Arc<Notify> {
        let mut spaces = self.spaces.lock().unwrap_or_else(|p| p.into_inner());
        spaces.entry(space.to_string()).or_default().clone()
    }

    /// Ops were committed to `space` (`None`: to any space, as far as we know).
    pub fn announce(&self, space: Option<&str>) {
        let spaces = self.spaces.lock().unwrap_or_else(|p| p.into_inner());
        match space {
            Some(space) => {
                if let Some(notify) = spaces.get(space) {
                    notify.notify_waiters();
                }
            }
            None => spaces.values().for_each(|n| n.notify_waiters()),
        }
    }

    /// The server is stopping: every held pull answers now, and no new one waits.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.announce(None);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Commits {
    /// A live pull of `space` after `since`: `read` at once and, while it finds
    /// nothing after `since`, again after each commit to the space, until
    /// `wait` has passed or the server stops. The last answer is returned.
    pub async fn hold<E, F, Fut>(&self, space: &str, since: Seq, wait: Duration, mut read: F) -> Result<PullResponse, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<PullResponse, E>>,
    {
        let deadline = tokio::time::Instant::now() + wait;
        let notify = self.of(space);
        loop {
            let notified = notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the read: a commit after it wakes this wait.
            notified.as_mut().enable();
            let answer = read().await?;
            if answer.end > since || self.is_closed() || tokio::time::Instant::now() >= deadline {
                return Ok(answer);
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}
