//! Accepting connections: a cap on how many are served at once, a deadline for
//! request headers (which also bounds how long a kept-alive connection may sit
//! idle), a deadline for each whole request, and a bounded graceful stop. Slow
//! or unfinished requests cost a connection slot for a bounded time, never the
//! server.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How the server treats connections. Every field has a `serve` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeConfig {
    /// Time a client has to send a request's headers, from the moment the
    /// connection opens or its previous answer went out: a connection idle
    /// this long is closed.
    pub header_timeout: Duration,
    /// Time a whole request may take, its body included; past it the client
    /// gets 408 `request_timeout`.
    pub request_timeout: Duration,
    /// Connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// How long a stopping server lets requests in flight finish.
    pub drain: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            header_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(120),
            max_connections: default_max_connections(open_file_limit()),
            drain: Duration::from_secs(10),
        }
    }
}

/// Files the server keeps for itself (the store, logs, the listener, blocking
/// workers) below the process's open-file limit.
const RESERVED_FILES: u64 = 64;

/// 1024 connections, or fewer when the open-file limit would run out first:
/// a connection past that limit would fail to accept and stall the others.
fn default_max_connections(open_files: Option<u64>) -> usize {
    let cap = match open_files {
        Some(limit) => limit.saturating_sub(RESERVED_FILES).clamp(16, 1024),
        None => 1024,
    };
    usize::try_from(cap).unwrap_or(1024)
}

/// The soft limit on open files (Linux: from /proc/self/limits), if known.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// How a server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every request in flight finished.
    Drained,
    /// Some were still running when the drain time ran out.
    DrainTimedOut,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting
/// and lets the connections in flight finish their current request, for at
/// most `config.drain`.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Stopped> {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: the connections held
                    // now end by their deadlines, so wait a little and go on.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    Ok(match tokio::time::timeout(config.drain, graceful.shutdown()).await {
        Ok(()) => Stopped::Drained,
        Err(_) => Stopped::DrainTimedOut,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_stays_below_the_open_file_limit() {
        assert_eq!(default_max_connections(Some(256)), 192);
        assert_eq!(default_max_connections(Some(20_000)), 1024);
        assert_eq!(default_max_connections(Some(40)), 16);
        assert_eq!(default_max_connections(None), 1024);
        if cfg!(target_os = "linux") {
            assert!(open_file_limit().is_some_and(|n| n > 0), "read from /proc/self/limits");
        }
    }
}
