//! A PostgreSQL for the tests: each test database is created for one test and
//! dropped after it.
//!
//! The server comes from `TIDEMARK_TEST_POSTGRES` (an admin URL), by default
//! the one this kind of machine runs (`postgres://postgres@127.0.0.1:5432/postgres`).
//! When none answers, a test that needs it says so on the terminal and returns,
//! unless `TIDEMARK_REQUIRE_POSTGRES=1` (set by `.ci/run`): then it fails.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_postgres::NoTls;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The databases one test made; dropped with it.
pub struct TestPostgres {
    admin_url: String,
    made: Mutex<Vec<String>>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn admin(url: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    let driver = tokio::spawn(connection);
    let result = client.batch_execute(sql).await;
    drop(client);
    let _ = driver.await;
    result
}

/// The test PostgreSQL, or `None` (after saying so) when there is none and
/// none is required. `test` names the caller in that message.
pub fn postgres(test: &str) -> Option<TestPostgres> {
    let admin_url = std::env::var("TIDEMARK_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string());
    match runtime().block_on(admin(&admin_url, "SELECT 1")) {
        Ok(()) => Some(TestPostgres {
            admin_url,
            made: Mutex::new(Vec::new()),
        }),
        Err(e) if std::env::var("TIDEMARK_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") => {
            panic!("PostgreSQL is required (TIDEMARK_REQUIRE_POSTGRES=1) but {admin_url} does not answer: {e}")
        }
        Err(e) => {
            // Straight to the terminal: the test harness hides a passing test's prints.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** {test}: NOT RUN, no PostgreSQL at {admin_url} ({e}); start one or set TIDEMARK_TEST_POSTGRES ***"
            );
            None
        }
    }
}

impl TestPostgres {
    /// A new empty database, as a URL.
    pub fn database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "tidemark_test_{}_{}_{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        runtime()
            .block_on(admin(&self.admin_url, &format!("CREATE DATABASE {name}")))
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        self.made.lock().unwrap().push(name.clone());
        let mut config: tokio_postgres::Config = self.admin_url.parse().unwrap();
        config.dbname(&name);
        url_of(&config)
    }
}

/// `config` written back as a URL (host, port, user, database).
fn url_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string().replace('/', "%2F"),
        None => "127.0.0.1".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let password = config
        .get_password()
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    let dbname = config.get_dbname().unwrap_or("postgres");
    format!("postgres://{user}{password}@{host}:{port}/{dbname}")
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.made.lock().unwrap_or_else(|p| p.into_inner()));
        let rt = runtime();
        for name in names {
            if let Err(e) = rt.block_on(admin(
                &self.admin_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )) {
                eprintln!("cannot drop test database {name}: {e}");
            }
        }
    }
}
