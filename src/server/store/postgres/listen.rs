//! The commit listener: other processes' appends, announced by PostgreSQL.

use std::time::Duration;

use tokio_postgres::{AsyncMessage, Config, NoTls};

use super::NOTIFY_CHANNEL;
use crate::server::store::CommitHook;

/// Keeps one connection listening on [`NOTIFY_CHANNEL`] and calls `hook` for
/// every commit announced; after (re)connecting it calls `hook(None)`, since
/// commits made while it was away were not announced to it.
pub(super) async fn listen(config: Config, hook: CommitHook) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                if tx.send(n.payload().to_string()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("the PostgreSQL commit listener lost its connection: {e}");
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}")).await {
                    Ok(()) => {
                        hook(None);
                        while let Some(payload) = rx.recv().await {
                            if let Some((_, space)) = payload.split_once(' ') {
                                hook(Some(space));
                            }
                        }
                    }
                    Err(e) => tracing::warn!("LISTEN on PostgreSQL failed: {e}"),
                }
                driver.abort();
            }
            Err(e) => tracing::warn!("the PostgreSQL commit listener cannot connect: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
