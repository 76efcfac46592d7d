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
            max_connections: 1024,
            drain: Duration::from_secs(10),
        }
    }
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
