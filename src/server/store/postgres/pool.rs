//! Connections to PostgreSQL behind the store's synchronous calls.
//!
//! The store's methods are blocking (the HTTP front calls them on blocking
//! threads, tests and tools call them from plain threads), while tokio-postgres
//! is async. Each connection's I/O task runs on a small runtime the pool owns;
//! a query's future only talks to that task over channels, so the calling
//! thread polls it itself ([`block_on`]), from any thread, inside a runtime or
//! not.

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use super::db::Statements;
use super::pg;
use crate::server::store::{StoreError, StoreResult};

/// How long a call waits for a free connection before the store answers unavailable.
const CHECKOUT_WAIT: Duration = Duration::from_secs(30);

/// A bounded set of connections to one database.
pub(super) struct Pool {
    runtime: Option<tokio::runtime::Runtime>,
    config: Config,
    state: Mutex<State>,
    freed: Condvar,
    max: usize,
}

struct State {
    idle: Vec<PgConn>,
    open: usize,
}

/// An open connection and the statements prepared on it.
pub(super) struct PgConn {
    pub client: Client,
    pub statements: Statements,
}

impl Pool {
    /// A pool of at most `max` connections made from `config`; none is opened yet.
    pub fn new(config: Config, max: usize) -> StoreResult<Pool> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tidemark-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot start the PostgreSQL runtime: {e}")))?;
        Ok(Pool {
            runtime: Some(runtime),
            config,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            max: max.max(1),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs `future` on the pool's runtime (a connection's I/O, the listener).
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the pool")
            .spawn(future)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection for one call: an idle one, a new one while fewer than `max`
    /// are open, else the next one freed.
    pub fn get(&self) -> StoreResult<Conn<'_>> {
        let mut state = self.lock();
        loop {
            while let Some(conn) = state.idle.pop() {
                if conn.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Conn {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(client) => Ok(Conn {
                        pool: self,
                        conn: Some(PgConn {
                            client,
                            statements: Statements::new(),
                        }),
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let (next, timeout) = self
                .freed
                .wait_timeout(state, CHECKOUT_WAIT)
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            if timeout.timed_out() && state.idle.is_empty() && state.open >= self.max {
                return Err(StoreError::Unavailable(format!(
                    "all {} PostgreSQL connections stayed busy for {} s",
                    self.max,
                    CHECKOUT_WAIT.as_secs()
                )));
            }
        }
    }

    /// Opens a connection whose I/O task runs on the pool's runtime.
    pub fn connect(&self) -> StoreResult<Client> {
        let config = self.config.clone();
        let opened = self.spawn(async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!("a PostgreSQL connection ended: {e}");
                }
            });
            Ok::<_, tokio_postgres::Error>(client)
        });
        match block_on(opened) {
            Ok(result) => result.map_err(pg),
            Err(e) => Err(StoreError::Unavailable(format!("connecting to PostgreSQL failed: {e}"))),
        }
    }

    fn put_back(&self, conn: PgConn) {
        let mut state = self.lock();
        if conn.client.is_closed() {
            state.open -= 1;
        } else {
            state.idle.push(conn);
        }
        drop(state);
        self.freed.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.lock().idle.clear();
        // The last handle may go away on a runtime's thread, where a blocking
        // shutdown would panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A connection taken from the pool; it goes back when dropped.
pub(super) struct Conn<'p> {
    pool: &'p Pool,
    conn: Option<PgConn>,
}

impl std::ops::Deref for Conn<'_> {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        self.conn.as_ref().expect("present until drop")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut PgConn {
        self.conn.as_mut().expect("present until drop")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.put_back(conn);
        }
    }
}

/// Wakes the thread that polls a future.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` to completion on the calling thread, parking between polls.
pub(super) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        std::thread::park();
    }
}
