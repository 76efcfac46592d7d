//! The HTTP remote on reqwest (rustls with the ring provider). The only module that names reqwest.

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{Remote, RemoteError};
use crate::protocol::message::{ErrorBody, MIN_PEER_REVISION, PROTOCOL_REVISION, REVISION_HEADER, parse_revision};
use crate::protocol::{ErrorCode, Request, Response};

/// Installs rustls's ring provider once per process (reqwest is built without a default provider).
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A remote reached over HTTP(S).
#[derive(Clone)]
pub struct HttpRemote {
    client: reqwest::Client,
    base: String,
    token: String,
    space: String,
    attempts: u32,
}

impl HttpRemote {
    /// `server` is the base URL (`http://127.0.0.1:7878`).
    pub fn new(server: &str, token: &str, space: &str) -> Result<HttpRemote, RemoteError> {
        let client = build_client(Duration::from_secs(60), server)?;
        Ok(HttpRemote {
            client,
            base: server.trim_end_matches('/').to_string(),
            token: token.to_string(),
            space: space.to_string(),
            attempts: 3,
        })
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/v1/spaces/{}/{tail}", self.base, encode_segment(&self.space))
    }

    /// Sends with retries. Every request is safe to repeat: reads are reads,
    /// and a re-pushed op id gets its first seq back.
    async fn send<T: DeserializeOwned>(&self, build: impl Fn() -> reqwest::RequestBuilder) -> Result<T, RemoteError> {
        let mut delay = Duration::from_millis(100);
        let mut last = None;
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
            let request = build()
                .bearer_auth(&self.token)
                .header(REVISION_HEADER, PROTOCOL_REVISION);
            match request.send().await {
                Err(e) => {
                    last = Some(RemoteError::unreachable(format!(
                        "cannot reach the server at {}: {}",
                        self.base,
                        describe(&e)
                    )))
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let revision = resp.headers().get(REVISION_HEADER).cloned();
                    let bytes = resp.bytes().await.map_err(|e| {
                        RemoteError::unreachable(format!("the answer of {} broke off: {}", self.base, describe(&e)))
                    })?;
                    // Before acting on anything the answer says: an older server would
                    // refuse this build's genesis ops as invalid, and the session would
                    // take that as a refusal for good.
                    check_server_revision(&self.base, status, revision.as_ref(), &bytes)?;
                    if (200..300).contains(&status) {
                        return serde_json::from_slice(&bytes).map_err(|e| RemoteError {
                            status: Some(status),
                            body: ErrorBody {
                                code: ErrorCode::BadAnswer,
                                message: format!("the server's answer is not what tidemark expects: {e}"),
                                op_index: None,
                            },
                        });
                    }
                    let body = error_body(&bytes);
                    let error = RemoteError {
                        status: Some(status),
                        body,
                    };
                    if status < 500 {
                        return Err(error);
                    }
                    last = Some(error);
                }
            }
        }
        Err(last.unwrap_or_else(|| RemoteError::unreachable("no attempt made")))
    }
}

/// Refuses an answer from a server older than [`MIN_PEER_REVISION`], before
/// anything acts on it.
///
/// A 5xx without the header (a proxy's error page) is left to the ordinary error
/// path, which only ever ends the round on a 5xx: keep it so, or check here.
fn check_server_revision(
    base: &str,
    status: u16,
    revision: Option<&reqwest::header::HeaderValue>,
    body: &[u8],
) -> Result<(), RemoteError> {
    let Some(value) = revision else {
        if status >= 500 {
            return Ok(());
        }
        return Err(incompatible_server(format!(
            "the server at {base} answered HTTP {status} without a {REVISION_HEADER} header{}: a proxy in front \
             of the server answered, or the server is a tidemark server older than protocol revision \
             {MIN_PEER_REVISION} (which this client needs), or not a tidemark server at all; check the URL and \
             the proxy, or upgrade the server; nothing was lost, local changes stay pending",
            match String::from_utf8_lossy(&body[..body.len().min(300)]).trim() {
                "" => String::new(),
                text => format!(" (it said: {text:?})"),
            }
        )));
    };
    match parse_revision(value.as_bytes()) {
        Some(revision) if revision >= MIN_PEER_REVISION => Ok(()),
        Some(revision) => Err(incompatible_server(format!(
            "the server at {base} speaks tidemark protocol revision {revision}; this client speaks \
             {PROTOCOL_REVISION} and needs at least {MIN_PEER_REVISION}: upgrade the server; nothing was lost, \
             local changes stay pending"
        ))),
        None => Err(incompatible_server(format!(
            "the server at {base} sent a {REVISION_HEADER} header that is not a revision number ({:?}): check \
             that the URL points at a tidemark server; nothing was lost, local changes stay pending",
            String::from_utf8_lossy(value.as_bytes())
        ))),
    }
}

fn incompatible_server(message: String) -> RemoteError {
    RemoteError {
        status: None,
        body: ErrorBody {
            code: ErrorCode::IncompatibleServer,
            message,
            op_index: None,
        },
    }
}

fn build_client(timeout: Duration, server: &str) -> Result<reqwest::Client, RemoteError> {
    install_crypto_provider();
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout);
    // The system's trusted roots are a file each (about 150 on Debian): read
    // them only when the server is reached over TLS.
    let plain = server
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"));
    let builder = if plain { builder.tls_certs_only([]) } else { builder };
    builder
        .build()
        .map_err(|e| RemoteError::unreachable(format!("cannot build the HTTP client: {e}")))
}

/// The server's JSON error, or (from something that is not a tidemark server) the start of its text.
fn error_body(bytes: &[u8]) -> ErrorBody {
    serde_json::from_slice(bytes).unwrap_or_else(|_| ErrorBody {
        code: ErrorCode::Http,
        message: String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
        op_index: None,
    })
}

/// The root cause of a failed request (`Connection refused (os error 111)`,
/// `operation timed out`): the innermost error, without reqwest's and hyper's
/// wrappers, which repeat the URL and name their own layers.
fn describe(e: &reqwest::Error) -> String {
    let mut root: &dyn std::error::Error = e;
    while let Some(inner) = root.source() {
        root = inner;
    }
    root.to_string()
}

/// Percent-encodes a path segment or query value.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Remote for HttpRemote {
    async fn call(&self, request: Request) -> Result<Response, RemoteError> {
        match request {
            Request::Package => Ok(Response::Package(
                self.send(|| self.client.get(self.url("package"))).await?,
            )),
            Request::Push(push) => {
                let body = serde_json::to_vec(&push).expect("push serializes");
                let url = self.url("push");
                Ok(Response::Push(
                    self.send(|| {
                        self.client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body.clone())
                    })
                    .await?,
                ))
            }
            Request::Pull { since, limit, at } => {
                let mut url = format!("{}?since={since}&limit={limit}", self.url("pull"));
                if let Some(op) = at.op {
                    url.push_str(&format!("&at={op}"));
                }
                if let Some(mark) = at.mark {
                    url.push_str(&format!("&mark={mark}"));
                }
                Ok(Response::Pull(self.send(|| self.client.get(&url)).await?))
            }
            Request::Watch { since, wait } => {
                let url = format!(
                    "{}?since={since}&limit=1&wait={}",
                    self.url("pull"),
                    wait.as_secs().max(1)
                );
                Ok(Response::Pull(self.send(|| self.client.get(&url)).await?))
            }
            Request::Snapshot { after, limit } => {
                let mut url = format!("{}?limit={limit}", self.url("snapshot"));
                if let Some(after) = after {
                    url.push_str("&after=");
                    url.push_str(&encode_segment(&after));
                }
                Ok(Response::Snapshot(self.send(|| self.client.get(&url)).await?))
            }
        }
    }
}

/// The admin API of a server (creating spaces and users, granting access).
pub struct AdminClient {
    client: reqwest::Client,
    base: String,
    admin_token: String,
}

impl AdminClient {
    pub fn new(server: &str, admin_token: &str) -> Result<AdminClient, RemoteError> {
        let client = build_client(Duration::from_secs(30), server)?;
        Ok(AdminClient {
            client,
            base: server.trim_end_matches('/').to_string(),
            admin_token: admin_token.to_string(),
        })
    }

    async fn call<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        tail: &str,
        body: Option<&B>,
    ) -> Result<T, RemoteError> {
        let mut req = self
            .client
            .request(method, format!("{}/v1/admin/{tail}", self.base))
            .bearer_auth(&self.admin_token)
            .header(REVISION_HEADER, PROTOCOL_REVISION);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body).expect("serializes"));
        }
        let resp = req.send().await.map_err(|e| {
            RemoteError::unreachable(format!("cannot reach the server at {}: {}", self.base, describe(&e)))
        })?;
        let status = resp.status().as_u16();
        let revision = resp.headers().get(REVISION_HEADER).cloned();
        let bytes = resp.bytes().await.map_err(|e| {
            RemoteError::unreachable(format!("the answer of {} broke off: {}", self.base, describe(&e)))
        })?;
        check_server_revision(&self.base, status, revision.as_ref(), &bytes)?;
        if (200..300).contains(&status) {
            serde_json::from_slice(&bytes).map_err(|e| RemoteError::unreachable(format!("unexpected answer: {e}")))
        } else {
            Err(RemoteError {
                status: Some(status),
                body: error_body(&bytes),
            })
        }
    }

    pub async fn create_space(&self, space: &str, package: Option<crate::model::Package>) -> Result<(), RemoteError> {
        let body = crate::protocol::message::CreateSpace {
            space: space.into(),
            package,
        };
        self.call::<_, serde_json::Value>(reqwest::Method::POST, "spaces", Some(&body))
            .await
            .map(|_| ())
    }

    pub async fn set_package(&self, space: &str, package: &crate::model::Package) -> Result<(), RemoteError> {
        let tail = format!("spaces/{}/package", encode_segment(space));
        self.call::<_, serde_json::Value>(reqwest::Method::PUT, &tail, Some(package))
            .await
            .map(|_| ())
    }

    /// Creates a user; returns its token.
    pub async fn add_user(&self, user: &str) -> Result<String, RemoteError> {
        let body = crate::protocol::message::CreateUser { user: user.into() };
        let t: crate::protocol::message::UserToken = self.call(reqwest::Method::POST, "users", Some(&body)).await?;
        Ok(t.token)
    }

    /// Issues another token for an existing user.
    pub async fn new_token(&self, user: &str) -> Result<String, RemoteError> {
        let tail = format!("users/{}/tokens", encode_segment(user));
        let t: crate::protocol::message::UserToken = self.call::<(), _>(reqwest::Method::POST, &tail, None).await?;
        Ok(t.token)
    }

    pub async fn grant(&self, user: &str, space: &str, read_only: bool) -> Result<(), RemoteError> {
        let body = crate::protocol::message::Grant {
            user: user.into(),
            space: space.into(),
            read_only,
        };
        self.call::<_, serde_json::Value>(reqwest::Method::POST, "grants", Some(&body))
            .await
            .map(|_| ())
    }

    /// Ends a user's membership of a space.
    pub async fn revoke(&self, user: &str, space: &str) -> Result<(), RemoteError> {
        let tail = format!("spaces/{}/members/{}", encode_segment(space), encode_segment(user));
        self.call::<(), serde_json::Value>(reqwest::Method::DELETE, &tail, None)
            .await
            .map(|_| ())
    }

    /// Revokes a token, given its id or the whole token (only the id is sent:
    /// a secret never travels in a URL, where logs could keep it).
    pub async fn revoke_token(&self, token: &str) -> Result<(), RemoteError> {
        let id = match token.split('.').collect::<Vec<_>>()[..] {
            ["tm1", id, _secret] => id,
            _ => token,
        };
        let tail = format!("tokens/{}", encode_segment(id));
        self.call::<(), serde_json::Value>(reqwest::Method::DELETE, &tail, None)
            .await
            .map(|_| ())
    }

    pub async fn users(&self) -> Result<Vec<crate::protocol::message::UserListing>, RemoteError> {
        self.call::<(), _>(reqwest::Method::GET, "users", None).await
    }

    pub async fn spaces(&self) -> Result<Vec<crate::protocol::message::SpaceListing>, RemoteError> {
        self.call::<(), _>(reqwest::Method::GET, "spaces", None).await
    }
}
