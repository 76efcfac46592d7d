//! The background sync task: rounds on an interval and soon after local
//! edits (debounced), exponential backoff with jitter while the server is
//! unreachable or failing, a status anyone can watch, and a clean stop that
//! finishes the round in hand.

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use serde::Serialize;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};

use super::round::Round;
use crate::error::Error;
use crate::model::now_ms;
use crate::protocol::{RoundSummary, SessionConfig};
use crate::remote::Remote;
use crate::replica::Replica;

/// Timing of the background task.
#[derive(Debug, Clone, Copy)]
pub struct BackgroundConfig {
    /// Time between rounds when nothing happens.
    pub interval: Duration,
    /// Wait after a local edit before syncing, so a burst of edits makes one round.
    pub debounce: Duration,
    /// How often to look for edits made by other processes on the same store.
    pub poll: Duration,
    /// First and largest delay after failed rounds.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// While idle, hold a live pull open (`wait` up to this long, renewed), so
    /// another replica's edit starts a round as soon as the server commits it.
    /// `None`: learn of them at the next interval only.
    pub live_wait: Option<Duration>,
    pub session: SessionConfig,
}

impl Default for BackgroundConfig {
    fn default() -> Self {
        BackgroundConfig {
            interval: Duration::from_secs(30),
            // Short enough that an edit reaches the other replicas well within a
            // second of its commit, long enough that a burst of edits makes one round.
            debounce: Duration::from_millis(100),
            poll: Duration::from_millis(250),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            live_wait: Some(Duration::from_secs(25)),
            session: SessionConfig::default(),
        }
    }
}

/// What the background task reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncStatus {
    pub pending: u64,
    pub rejected: u64,
    pub rounds: u64,
    /// Milliseconds since the Unix epoch.
    pub last_success_ms: Option<u64>,
    pub last_error: Option<String>,
    pub failures_in_a_row: u32,
    pub next_attempt_ms: Option<u64>,
    pub last_summary: Option<RoundSummary>,
    /// Set when the task stopped by itself on an error only a person can fix
    /// (a revoked token or membership, say): what to do. The task has ended.
    pub stopped: Option<String>,
}

/// A running background sync; stop it with [`BackgroundSync::stop`].
pub struct BackgroundSync {
    stop: Option<oneshot::Sender<()>>,
    nudge: Arc<Notify>,
    status: watch::Receiver<SyncStatus>,
    task: JoinHandle<()>,
}

impl BackgroundSync {
    /// Starts syncing `replica` over `remote` on the current tokio runtime.
    pub fn start<R: Remote + 'static>(replica: Arc<Replica>, remote: R, config: BackgroundConfig) -> BackgroundSync {
        let (stop_tx, stop_rx) = oneshot::channel();
        let nudge = Arc::new(Notify::new());
        let (status_tx, status_rx) = watch::channel(SyncStatus::default());
        let task = tokio::spawn(run(replica, remote, config, stop_rx, nudge.clone(), status_tx));
        BackgroundSync {
            stop: Some(stop_tx),
            nudge,
            status: status_rx,
            task,
        }
    }

    /// Tells the task that local edits were made: it syncs after the debounce.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// The latest status.
    pub fn status(&self) -> SyncStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<SyncStatus> {
        self.status.clone()
    }

    /// Stops after the round in hand (if any) has finished and committed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Something that changes whenever the store gains an op or a rejection, from any process.
fn marker(replica: &Replica) -> Option<(u64, u64)> {
    replica.status().ok().map(|s| (s.pending, s.rejected))
}

async fn run<R: Remote>(
    replica: Arc<Replica>,
    remote: R,
    config: BackgroundConfig,
    mut stop: oneshot::Receiver<()>,
    nudge: Arc<Notify>,
    status: watch::Sender<SyncStatus>,
) {
    let backoff_builder = backon::ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(config.min_backoff)
        .with_max_delay(config.max_backoff)
        .without_max_times();
    let mut backoff = None;
    let mut current = SyncStatus::default();
    loop {
        let result = Round::new(&replica, config.session).run(&remote).await;
        current.rounds += 1;
        let wait = match result {
            Ok(summary) => {
                backoff = None;
                current.last_success_ms = Some(now_ms());
                current.last_error = None;
                current.failures_in_a_row = 0;
                current.last_summary = Some(summary);
                config.interval
            }
            Err(Error::Remote(e)) if e.needs_person() => {
                tracing::error!(error = %e, "sync stopped: the server refuses this account");
                current.last_error = Some(format!("sync: {e}"));
                current.failures_in_a_row += 1;
                current.next_attempt_ms = None;
                current.stopped = Some(format!(
                    "the server refuses this account ({e}); background sync stopped: log in again with a valid token \
                     and membership, then start it again"
                ));
                if let Ok(s) = replica.status() {
                    current.pending = s.pending;
                    current.rejected = s.rejected;
                }
                status.send_replace(current);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "sync round failed; backing off");
                if matches!(e, Error::StorageFailed(_)) {
                    // redb refuses every transaction after an I/O error until the
                    // file is opened again; the next round then finds the disk
                    // as it is by then.
                    if let Err(reopen) = replica.reopen() {
                        tracing::warn!(error = %reopen, "reopening the store failed; trying again after the backoff");
                    }
                }
                current.last_error = Some(e.to_string());
                current.failures_in_a_row += 1;
                backoff
                    .get_or_insert_with(|| backoff_builder.build())
                    .next()
                    .unwrap_or(config.max_backoff)
            }
        };
        if let Ok(s) = replica.status() {
            current.pending = s.pending;
            current.rejected = s.rejected;
        }
        current.next_attempt_ms = Some(now_ms() + wait.as_millis() as u64);
        status.send_replace(current.clone());

        let failing = backoff.is_some();
        let deadline = Instant::now() + wait;
        let mut seen = marker(&replica);
        // A live pull held while idle; not while the server is failing (the backoff rules then).
        let mut live = Live::new(&replica, &remote, config.live_wait.filter(|_| !failing));
        // Wait for the interval, an edit (unless backing off), or the stop signal.
        let stopped = loop {
            tokio::select! {
                biased;
                _ = &mut stop => break true,
                _ = sleep_until(deadline) => break false,
                _ = nudge.notified(), if !failing => {
                    tokio::select! {
                        _ = &mut stop => break true,
                        _ = sleep(config.debounce) => break false,
                    }
                }
                news = live.next(), if live.is_holding() => {
                    if news {
                        break false;
                    }
                }
                _ = sleep(config.poll) => {
                    let now = marker(&replica);
                    // Pending ops after a successful round were made after it looked: sync them too.
                    let has_pending = now.is_some_and(|(pending, _)| pending > 0);
                    if (now != seen || has_pending) && !failing {
                        tokio::select! {
                            _ = &mut stop => break true,
                            _ = sleep(config.debounce) => break false,
                        }
                    }
                    seen = now;
                }
            }
        };
        if stopped {
            current.next_attempt_ms = None;
            status.send_replace(current);
            return;
        }
    }
}

/// The live pull the idle task holds: renewed while the server answers it in
/// full (nothing new within `wait`), given up until the next round when it
/// fails or answers too fast (a server that does not hold pulls), so it never
/// spins.
struct Live<'a, R: Remote> {
    replica: &'a Replica,
    remote: &'a R,
    wait: Option<Duration>,
    call: Option<std::pin::Pin<Box<dyn std::future::Future<Output = LiveAnswer> + Send + 'a>>>,
}

/// What a live pull learned: whether ops after `since` exist, and how long it took.
struct LiveAnswer {
    news: bool,
    held: Duration,
    failed: bool,
}

/// A held pull answered faster than this with nothing is not being held.
const MIN_HOLD: Duration = Duration::from_millis(500);

impl<'a, R: Remote> Live<'a, R> {
    fn new(replica: &'a Replica, remote: &'a R, wait: Option<Duration>) -> Self {
        let mut live = Live {
            replica,
            remote,
            wait,
            call: None,
        };
        live.renew();
        live
    }

    fn is_holding(&self) -> bool {
        self.call.is_some()
    }

    fn renew(&mut self) {
        let (Some(wait), Ok(status)) = (self.wait, self.replica.status()) else {
            self.call = None;
            return;
        };
        let (remote, since) = (self.remote, status.pulled);
        self.call = Some(Box::pin(async move {
            let started = Instant::now();
            let answer = remote.call(crate::protocol::Request::Watch { since, wait }).await;
            let held = started.elapsed();
            match answer {
                Ok(crate::protocol::Response::Pull(page)) => LiveAnswer {
                    news: page.end > since,
                    held,
                    failed: false,
                },
                _ => LiveAnswer {
                    news: false,
                    held,
                    failed: true,
                },
            }
        }));
    }

    /// Waits for the held pull's answer: true when there is something to pull.
    async fn next(&mut self) -> bool {
        let Some(call) = self.call.as_mut() else {
            return std::future::pending().await;
        };
        let answer = call.await;
        if answer.news {
            self.call = None;
            return true;
        }
        if answer.failed || answer.held < MIN_HOLD {
            tracing::debug!(failed = answer.failed, "live pull given up until the next round");
            self.call = None;
        } else {
            self.renew();
        }
        false
    }
}
