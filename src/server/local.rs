//! The in-process remote: calls a [`Service`] directly, no sockets.

use std::sync::Arc;

use super::store::ServerStore;
use super::{Service, ServiceError};
use crate::protocol::{Request, Response};
use crate::remote::{Remote, RemoteError};

/// A remote that is a server core in this process.
pub struct LocalRemote<S: ServerStore> {
    service: Arc<Service<S>>,
    token: String,
    space: String,
}

impl<S: ServerStore> LocalRemote<S> {
    pub fn new(service: Arc<Service<S>>, token: impl Into<String>, space: impl Into<String>) -> Self {
        LocalRemote {
            service,
            token: token.into(),
            space: space.into(),
        }
    }

    /// Answers a request synchronously: lets a test drive a session in a plain loop.
    pub fn call_blocking(&self, request: Request) -> Result<Response, RemoteError> {
        self.dispatch(request).map_err(|e| RemoteError {
            status: Some(e.status()),
            body: e.body(),
        })
    }

    fn dispatch(&self, request: Request) -> Result<Response, ServiceError> {
        let s = &self.service;
        let user = s.authenticate(Some(&self.token))?;
        let space = &self.space;
        Ok(match request {
            Request::Package => Response::Package(s.package(&user, space)?),
            Request::Push(push) => Response::Push(s.push(&user, space, push)?),
            Request::Pull { since, limit, at } => Response::Pull(s.pull(&user, space, since, limit, at)?),
            Request::Snapshot { after, limit } => {
                Response::Snapshot(s.snapshot(&user, space, after.as_deref(), limit)?)
            }
            // Answered at once when called blocking; `call` holds it.
            Request::Watch { since, .. } => Response::Pull(s.pull(&user, space, since, 1, None)?),
        })
    }
}

impl<S: ServerStore> Remote for LocalRemote<S> {
    async fn call(&self, request: Request) -> Result<Response, RemoteError> {
        let Request::Watch { since, wait } = request else {
            return self.call_blocking(request);
        };
        let read = || async {
            let s = &self.service;
            let page = s
                .authenticate(Some(&self.token))
                .and_then(|user| s.pull(&user, &self.space, since, 1, None));
            page.map_err(|e| RemoteError {
                status: Some(e.status()),
                body: e.body(),
            })
        };
        let page = self.service.commits().hold(&self.space, since, wait, read).await;
        page.map(Response::Pull)
    }
}
