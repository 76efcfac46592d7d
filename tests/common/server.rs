//! A sync server core for tests: one space, members with tokens, an optional HTTP front.

use std::sync::Arc;

use tidemark::Package;
use tidemark::protocol::message::{CreateSpace, Grant};
use tidemark::server::store::ServerStore;
use tidemark::server::store::redb::RedbStore;
use tidemark::server::{Limits, ServeConfig, Service, http};

pub type Svc = Arc<Service<RedbStore>>;

/// The space every test server has.
pub const SPACE: &str = "crm";

/// The admin token of every test server.
pub const ADMIN_TOKEN: &str = "admin-token-0123456789";

/// An in-memory server with space [`SPACE`] under `package`, whose read-write
/// members are `users`; returns the service and their tokens, in order.
pub fn server(package: Option<Package>, users: &[&str]) -> (Svc, Vec<String>) {
    server_on(RedbStore::in_memory().unwrap(), package, users, Limits::default())
}

/// [`server`] on a given store and limits.
pub fn server_on<S: ServerStore>(
    store: S,
    package: Option<Package>,
    users: &[&str],
    limits: Limits,
) -> (Arc<Service<S>>, Vec<String>) {
    let service = Arc::new(Service::new(store, limits, Some(ADMIN_TOKEN)).unwrap());
    service
        .create_space(&CreateSpace {
            space: SPACE.into(),
            package,
        })
        .unwrap();
    let tokens = users
        .iter()
        .map(|u| {
            let token = service.add_user(u).unwrap().token;
            service
                .grant(&Grant {
                    user: u.to_string(),
                    space: SPACE.into(),
                    read_only: false,
                })
                .unwrap();
            token
        })
        .collect();
    (service, tokens)
}

/// Starts the HTTP front on a free loopback port; returns its base URL and a
/// sender that stops it.
pub async fn start_http<S: ServerStore>(service: Arc<Service<S>>) -> (String, tokio::sync::oneshot::Sender<()>) {
    start_http_with(service, ServeConfig::default()).await
}

/// [`start_http`] with the given connection deadlines and limits.
pub async fn start_http_with<S: ServerStore>(
    service: Arc<Service<S>>,
    config: ServeConfig,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(http::serve_with(listener, service, config, async move {
        let _ = rx.await;
    }));
    (url, tx)
}
