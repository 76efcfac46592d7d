//! `sync --watch`: background sync until Ctrl-C.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use tidemark::remote::http::HttpRemote;
use tidemark::sync::{BackgroundConfig, BackgroundSync};

use crate::local::open;
use crate::server::runtime;

/// Ctrl-C (SIGINT), caught from the moment it is made: one that comes while the
/// store opens or between two waits is kept for the next wait, never the
/// default action that would end the process in the middle of a round.
struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Must be called inside the runtime.
    fn catch() -> Result<Interrupts> {
        Ok(Interrupts {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        self.signal.recv().await;
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub fn run(store: &Path, interval: u64) -> Result<ExitCode> {
    let runtime = runtime()?;
    let mut interrupts = {
        let _inside = runtime.enter();
        Interrupts::catch()?
    };
    let replica = Arc::new(open(store)?);
    let Some(binding) = replica.binding()? else {
        bail!("this store is not bound to a server: run `tidemark login` first");
    };
    let token = replica.token()?.unwrap_or_default();
    let remote = HttpRemote::new(&binding.server, &token, &binding.space)?;
    let config = BackgroundConfig {
        interval: Duration::from_secs(interval.max(1)),
        ..BackgroundConfig::default()
    };
    runtime.block_on(async move {
        let sync = BackgroundSync::start(replica.clone(), remote, config);
        let mut changes = sync.watch();
        eprintln!("syncing {} with {} every {interval}s and after edits; Ctrl-C stops", store.display(), binding.server);
        loop {
            tokio::select! {
                () = interrupts.next() => break,
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let s = changes.borrow_and_update().clone();
                    if let Some(why) = &s.stopped {
                        eprintln!("{why} ({} pending, kept in the store)", s.pending);
                        sync.stop().await;
                        return Ok(ExitCode::FAILURE);
                    }
                    match (&s.last_error, &s.last_summary) {
                        (Some(e), _) => eprintln!("sync failed ({} in a row): {e}; {} pending, retrying with backoff", s.failures_in_a_row, s.pending),
                        (None, Some(r)) => eprintln!("synced: {r} ({} pending)", s.pending),
                        _ => {}
                    }
                    if replica.is_replaced() {
                        eprintln!("the store switched accounts in another process; stopping (run `sync --watch` again)");
                        break;
                    }
                }
            }
        }
        eprintln!("stopping: finishing the round in hand");
        sync.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}
