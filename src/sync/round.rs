//! One sync round: a [`Session`] driven over a [`Remote`].

use crate::error::{Error, Result};
use crate::model::now_ms;
use crate::protocol::{Request, Response, RoundSummary, Session, SessionConfig};
use crate::remote::{Remote, RemoteError};
use crate::replica::{LastSync, Replica};

/// One sync round: push what is pending, pull what is new, until caught up.
/// The outcome is recorded in the replica's `last_sync`. Driven over a
/// [`Remote`] with [`Round::run`], or over a synchronous transport with
/// [`Round::run_blocking`]:
///
/// ```no_run
/// # async fn example(replica: &tidemark::Replica, remote: &impl tidemark::remote::Remote) -> tidemark::Result<()> {
/// use tidemark::protocol::SessionConfig;
/// use tidemark::sync::Round;
/// let summary = Round::new(replica, SessionConfig::default()).run(remote).await?;
/// println!("{summary}");
/// # Ok(()) }
/// ```
pub struct Round<'a> {
    replica: &'a Replica,
    config: SessionConfig,
    observe: Option<&'a mut (dyn FnMut(&RoundSummary) + Send)>,
}

impl<'a> Round<'a> {
    pub fn new(replica: &'a Replica, config: SessionConfig) -> Self {
        Round {
            replica,
            config,
            observe: None,
        }
    }

    /// Calls `observe` with the running totals after every answer (progress bars).
    pub fn observed(mut self, observe: &'a mut (dyn FnMut(&RoundSummary) + Send)) -> Self {
        self.observe = Some(observe);
        self
    }

    /// Runs the round over `remote`. On a multi-threaded runtime, the next
    /// page of a snapshot downloads while the previous one commits (see
    /// [`Session::request_after`]).
    pub async fn run<R: Remote>(mut self, remote: &R) -> Result<RoundSummary> {
        let mut session = Session::new(self.config);
        let outcome = async {
            // A request sent ahead and its answer.
            let mut ahead: Option<(Request, Answer)> = None;
            while let Some(request) = blocking(|| session.next_request(self.replica))? {
                let answer = match ahead.take() {
                    Some((sent, answer)) if sent == request => answer,
                    _ => {
                        tracing::debug!(?request, "sync request");
                        remote.call(request).await
                    }
                };
                let next = answer.as_ref().ok().and_then(|r| session.request_after(r));
                match (next, parallel_runtime()) {
                    (Some(next), Some(runtime)) => {
                        tracing::debug!(request = ?next, "sync request sent ahead");
                        let (applied, fetched) = tokio::task::block_in_place(|| {
                            std::thread::scope(|scope| {
                                let fetch = scope.spawn(|| runtime.block_on(remote.call(next.clone())));
                                let applied = take_answer(&mut session, self.replica, answer, &mut self.observe);
                                (applied, fetch.join())
                            })
                        });
                        applied?;
                        let fetched = fetched
                            .map_err(|_| Error::Internal("the thread fetching a snapshot page panicked".into()))?;
                        ahead = Some((next, fetched));
                    }
                    _ => blocking(|| take_answer(&mut session, self.replica, answer, &mut self.observe))?,
                }
            }
            Ok::<_, Error>(())
        }
        .await;
        blocking(|| finish(self.replica, outcome, session.summary()))
    }

    /// Runs the round with a synchronous transport (a plain loop: no runtime).
    pub fn run_blocking(
        mut self,
        mut call: impl FnMut(Request) -> std::result::Result<Response, RemoteError>,
    ) -> Result<RoundSummary> {
        let mut session = Session::new(self.config);
        let outcome = (|| {
            while let Some(request) = session.next_request(self.replica)? {
                let answer = call(request);
                take_answer(&mut session, self.replica, answer, &mut self.observe)?;
            }
            Ok::<_, Error>(())
        })();
        finish(self.replica, outcome, session.summary())
    }
}

/// Hands one answer (or the failure to get one) to the session, then reports
/// the running totals.
fn take_answer(
    session: &mut Session,
    replica: &Replica,
    answer: Answer,
    observe: &mut Option<&mut (dyn FnMut(&RoundSummary) + Send)>,
) -> Result<()> {
    match answer {
        Ok(response) => session.handle_response(replica, response)?,
        Err(error) => {
            tracing::info!(%error, "sync request refused");
            session.handle_error(replica, error)?;
        }
    }
    if let Some(observe) = observe.as_mut() {
        observe(session.summary());
    }
    Ok(())
}

type Answer = std::result::Result<Response, RemoteError>;

/// The runtime, when it has worker threads that can carry a request while
/// this thread applies an answer. A current-thread runtime drives its sockets
/// only from the thread that runs it, so it cannot.
fn parallel_runtime() -> Option<tokio::runtime::Handle> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    Handle::try_current()
        .ok()
        .filter(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread)
}

/// Runs store work (redb transactions, automerge merges) that blocks the
/// thread. On a multi-threaded runtime the worker hands its other tasks to
/// another thread first, so a long merge does not stall them; on a
/// current-thread runtime there is no other thread to hand them to.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Records the round's outcome. A round that failed keeps its own error: the
/// failure to record it (the disk that failed the round fails that write too)
/// would hide the cause.
fn finish(replica: &Replica, outcome: Result<()>, summary: &RoundSummary) -> Result<RoundSummary> {
    let recorded = record(replica, &outcome, summary);
    outcome?;
    recorded?;
    Ok(summary.clone())
}

fn record(replica: &Replica, outcome: &Result<()>, summary: &RoundSummary) -> Result<()> {
    match outcome {
        Ok(()) => tracing::info!(
            pushed = summary.pushed,
            pulled = summary.pulled,
            snapshot_docs = summary.snapshot_docs,
            repushed = summary.repushed,
            refused = summary.refused(),
            head = summary.head.get(),
            "sync round complete"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            pushed = summary.pushed,
            pulled = summary.pulled,
            "sync round failed"
        ),
    }
    let last = LastSync {
        at_ms: now_ms(),
        ok: outcome.is_ok(),
        message: match outcome {
            Ok(()) => summary.to_string(),
            Err(e) => e.to_string(),
        },
        summary: Some(summary.clone()),
    };
    replica.set_last_sync(&last)
}
