//! `serve` and `admin`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tidemark::Package;
use tidemark::remote::http::AdminClient;
use tidemark::server::store::ServerStore;
use tidemark::server::store::postgres::PgStore;
use tidemark::server::store::redb::RedbStore;
use tidemark::server::{Limits, ServeConfig, Service, Stopped, http};

use crate::args::{AdminAction, ConnectionArgs};

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Where a server keeps its data.
pub enum Store {
    Redb(PathBuf),
    Postgres(String),
}

pub fn serve(store: Store, listen: &str, admin_token: &str, connections: &ConnectionArgs) -> Result<ExitCode> {
    if admin_token.len() < 16 {
        bail!("TIDEMARK_ADMIN_TOKEN must be at least 16 characters: set a long random value");
    }
    crate::panics::log_automerge_panics_as_warnings();
    let defaults = ServeConfig::default();
    let config = ServeConfig {
        header_timeout: Duration::from_secs(connections.header_timeout),
        request_timeout: Duration::from_secs(connections.request_timeout),
        max_connections: connections
            .max_connections
            .map_or(defaults.max_connections, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        drain: Duration::from_secs(connections.drain),
    };
    let limits = Limits {
        max_pull_wait_secs: connections.max_pull_wait,
        ..Limits::default()
    };
    match store {
        Store::Redb(data) => {
            let store =
                RedbStore::open(&data).with_context(|| format!("opening the server store in {}", data.display()))?;
            serve_store(store, listen, admin_token, config, limits)
        }
        Store::Postgres(url) => {
            let store = PgStore::connect(&url).context("opening the PostgreSQL server store")?;
            serve_store(store, listen, admin_token, config, limits)
        }
    }
}

fn serve_store<S: ServerStore>(
    store: S,
    listen: &str,
    admin_token: &str,
    config: ServeConfig,
    limits: Limits,
) -> Result<ExitCode> {
    let service = Arc::new(Service::new(store, limits, Some(admin_token))?);
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        eprintln!("tidemark server listening on http://{addr} (epoch {})", service.epoch());
        let shutdown = async move {
            stop_signal().await;
            eprintln!(
                "shutting down: finishing requests in flight (at most {} s)",
                config.drain.as_secs()
            );
        };
        match http::serve_with(listener, service, config, shutdown)
            .await
            .context("serving")?
        {
            Stopped::Drained => eprintln!("stopped"),
            Stopped::DrainTimedOut => eprintln!("stopped with requests still in flight after the drain time"),
        }
        // Every answered push was committed before its answer; the store closes as the service drops.
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGTERM (systemd, Docker, Kubernetes) or SIGINT (Ctrl-C).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn read_package(path: &Path) -> Result<Package> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading package {}", path.display()))?;
    Package::from_json(&text).with_context(|| format!("package {}", path.display()))
}

pub fn admin(server: &str, admin_token: &str, action: AdminAction) -> Result<ExitCode> {
    let client = AdminClient::new(server, admin_token)?;
    runtime()?.block_on(async move {
        match action {
            AdminAction::CreateSpace { space, package } => {
                let package = package.as_deref().map(read_package).transpose()?;
                client.create_space(&space, package).await?;
            }
            AdminAction::SetPackage { space, package } => client.set_package(&space, &read_package(&package)?).await?,
            AdminAction::AddUser { user } => {
                let token = client.add_user(&user).await?;
                print_token(&token, &user)?
            }
            AdminAction::NewToken { user } => {
                let token = client.new_token(&user).await?;
                print_token(&token, &user)?
            }
            AdminAction::Grant { user, space, read_only } => client.grant(&user, &space, read_only).await?,
            AdminAction::Revoke { user, space } => client.revoke(&user, &space).await?,
            AdminAction::RevokeToken { token } => client.revoke_token(&token).await?,
            AdminAction::Users => print_lines(&client.users().await?)?,
            AdminAction::Spaces => print_lines(&client.spaces().await?)?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Prints a new token. The server has already stored it and this is its only copy,
/// so a closed stdout is an error here, not a quiet end.
fn print_token(token: &str, user: &str) -> Result<()> {
    use std::io::Write as _;
    writeln!(std::io::stdout().lock(), "{token}").with_context(|| {
        format!("the token of {user} could not be printed; issue another with `tidemark admin new-token {user}`")
    })
}

/// Prints one JSON object a line.
fn print_lines<T: serde::Serialize>(items: &[T]) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for item in items {
        serde_json::to_writer(&mut out, item)?;
        writeln!(out)?;
    }
    Ok(())
}
