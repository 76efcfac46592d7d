//! Opening the PostgreSQL store, running work on one of its connections or
//! in one transaction, and the fault injection the tests use.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_postgres::{Client, Config, Transaction};

use super::db::Db;
use super::pool::{PgConn, Pool, block_on};
use super::{DEFAULT_CONNECTIONS, PgStore, pg, schema};
use crate::server::store::{StoreError, StoreResult};

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`, or
    /// key=value pairs) and brings its schema up to date.
    pub fn connect(url: &str) -> StoreResult<PgStore> {
        Self::connect_with(url, DEFAULT_CONNECTIONS)
    }

    /// [`PgStore::connect`] with at most `connections` open connections.
    pub fn connect_with(url: &str, connections: usize) -> StoreResult<PgStore> {
        let mut config: Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("the PostgreSQL URL does not parse: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("tidemark");
        // Every statement of the store is a lookup or a range read on an index,
        // so its plan never depends on the values it is given: one generic plan
        // per prepared statement. A custom plan sees a batch of 500 keys and the
        // statistics of a table that has grown since they were taken, and
        // picks a hash join that reads the whole space. No sequential scans
        // either: a plan made while the tables were small would keep scanning them.
        let options = format!(
            "{} -c enable_seqscan=off -c plan_cache_mode=force_generic_plan",
            config.get_options().unwrap_or("")
        );
        config.options(options.trim());
        let pool = Pool::new(config, connections)?;
        let epoch = {
            let mut conn = pool.get()?;
            block_on(schema::migrate(&mut conn.client))?
        };
        Ok(PgStore {
            pool,
            epoch,
            commit_delay_us: Default::default(),
            read_delay_us: Default::default(),
        })
    }

    /// Fault injection for tests: from now on each append sleeps a random time
    /// up to `max` after it has numbered its ops and before it commits, widening
    /// the window in which a reader could see a later seq before an earlier one.
    pub fn delay_commits(&self, max: Duration) {
        self.commit_delay_us.store(micros(max), Ordering::Relaxed);
    }

    /// Fault injection for tests: from now on each optimistic append sleeps
    /// `pause` after its reads, before it acts on them, so that another append
    /// can change what it read.
    pub fn delay_after_reads(&self, pause: Duration) {
        self.read_delay_us.store(micros(pause), Ordering::Relaxed);
    }

    /// Runs `f` on one connection.
    pub(super) fn with<T>(&self, f: impl AsyncFnOnce(&Db<'_, Client>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.pool.get()?;
        let PgConn { client, statements } = &mut *conn;
        block_on(f(&Db::new(client, statements)))
    }

    /// Runs `f` in one transaction: commits if it gives a value, rolls back
    /// if it gives `None` or fails.
    pub(super) fn attempt<T>(
        &self,
        f: impl AsyncFnOnce(&Db<'_, Transaction<'_>>) -> StoreResult<Option<T>>,
    ) -> StoreResult<Option<T>> {
        let mut conn = self.pool.get()?;
        let PgConn { client, statements } = &mut *conn;
        block_on(async {
            let txn = client.transaction().await.map_err(pg)?;
            let Some(value) = f(&Db::new(&txn, statements)).await? else {
                txn.rollback().await.map_err(pg)?;
                return Ok(None);
            };
            txn.commit().await.map_err(pg)?;
            Ok(Some(value))
        })
    }

    /// Runs `f` in one transaction: commits if it succeeds, rolls back if it fails.
    pub(super) fn write<T>(&self, f: impl AsyncFnOnce(&Db<'_, Transaction<'_>>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.pool.get()?;
        let PgConn { client, statements } = &mut *conn;
        block_on(async {
            let txn = client.transaction().await.map_err(pg)?;
            let value = f(&Db::new(&txn, statements)).await?;
            txn.commit().await.map_err(pg)?;
            Ok(value)
        })
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// A random sleep up to `max`, on the thread that polls the transaction, so
/// that the transaction waits with it.
pub(super) fn sleep_up_to(max: Duration) {
    if !max.is_zero() {
        std::thread::sleep(max.mul_f64(rand::random::<f64>()));
    }
}
