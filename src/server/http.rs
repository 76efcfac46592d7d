//! The axum HTTP front: routes of API v1, JSON errors, limits, graceful
//! shutdown. The only module that names axum. Storage calls are blocking and
//! meet async code in one place: `blocking`.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ServiceError;
use super::listen::{ServeConfig, Stopped};
use super::service::Service;
use super::store::ServerStore;
use crate::model::{Package, Seq};
use crate::protocol::message::{
    CreateSpace, CreateUser, Grant, Granted, Health, MIN_PEER_REVISION, PROTOCOL_REVISION, PackageSet, PushRequest,
    REVISION_HEADER, Ready, Revoked, SpaceCreated, parse_revision,
};

type Shared<S> = Arc<Service<S>>;
type HttpResult = Result<Response, ServiceError>;

/// The code of an error answer, kept on the response for the metrics.
#[derive(Clone)]
struct AnsweredCode(crate::protocol::ErrorCode);

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = json_response(status, &self.body());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // The store retries its storage once a second.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response.extensions_mut().insert(AnsweredCode(self.code()));
        response
    }
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn ok<T: Serialize>(value: &T) -> HttpResult {
    Ok(json_response(StatusCode::OK, value))
}

/// Runs blocking storage work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Internal(format!("worker failed: {e}")))?
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_string())
}

/// Reads a JSON body within the size limit: 413 beyond it, 400 with the parser's words when malformed.
async fn read_json<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, ServiceError> {
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ServiceError::TooLarge(format!("the request body is over the limit of {limit} bytes")))?;
    serde_json::from_slice(&bytes).map_err(|e| ServiceError::BadRequest(format!("malformed JSON body: {e}")))
}

/// Turns axum's refusal of a path into the API's JSON error.
fn path_of<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ServiceError> {
    path.map(|Path(p)| p)
        .map_err(|e| ServiceError::BadRequest(format!("bad URL path: {e}")))
}

fn query_param(query: &Option<String>, name: &str) -> Result<Option<String>, ServiceError> {
    let Some(q) = query else { return Ok(None) };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return percent_decode(v).map(Some).ok_or_else(|| {
                ServiceError::BadRequest(format!("query parameter {name} is not valid percent-encoding"))
            });
        }
    }
    Ok(None)
}

fn number_param(query: &Option<String>, name: &str, default: u64) -> Result<u64, ServiceError> {
    match query_param(query, name)? {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            ServiceError::BadRequest(format!("query parameter {name}={v:?} is not a non-negative integer"))
        }),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The router of API v1 over a service.
pub fn router<S: ServerStore>(service: Shared<S>) -> Router {
    Router::new()
        .route("/v1/health", get(health::<S>))
        .route("/v1/ready", get(ready::<S>))
        .route("/metrics", get(metrics::<S>))
        .route("/v1/openapi.json", get(openapi::<S>))
        .route("/v1/spaces/{space}/push", post(push::<S>))
        .route("/v1/spaces/{space}/pull", get(pull::<S>))
        .route("/v1/spaces/{space}/package", get(package::<S>))
        .route("/v1/spaces/{space}/snapshot", get(snapshot::<S>))
        .route("/v1/spaces/{space}/records/{collection}/{id}", get(record::<S>))
        .route(
            "/v1/admin/spaces",
            post(admin_create_space::<S>).get(admin_list_spaces::<S>),
        )
        .route(
            "/v1/admin/spaces/{space}/members/{user}",
            delete(admin_revoke_grant::<S>),
        )
        .route("/v1/admin/tokens/{token}", delete(admin_revoke_token::<S>))
        .route("/v1/admin/spaces/{space}/package", put(admin_set_package::<S>))
        .route("/v1/admin/users", post(admin_add_user::<S>).get(admin_list_users::<S>))
        .route("/v1/admin/users/{user}/tokens", post(admin_new_token::<S>))
        .route("/v1/admin/grants", post(admin_grant::<S>))
        .fallback(|| async { ServiceError::NotFoundOther("no such route: see GET /v1/openapi.json".into()) })
        .method_not_allowed_fallback(|| async {
            ServiceError::MethodNotAllowed("this route does not take that method: see GET /v1/openapi.json".into())
        })
        .layer(axum::middleware::from_fn(protocol_revision))
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            count_request::<S>,
        ))
        .with_state(service)
}

/// Names this server's protocol revision on every answer, and refuses a client
/// that names an older one than this server needs, before the route runs: such a
/// client could not read what the space holds. A request without the header (a
/// script, curl) is served. Health and the API document always answer.
async fn protocol_revision(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = request.uri().path();
    let always = matches!(path, "/v1/health" | "/v1/ready" | "/metrics" | "/v1/openapi.json");
    let refused = match request.headers().get(REVISION_HEADER) {
        Some(value) if !always => match parse_revision(value.as_bytes()) {
            None => Some(ServiceError::BadRequest(format!(
                "header {REVISION_HEADER} must be a revision number, a decimal of at most 10 digits (this server speaks {PROTOCOL_REVISION}), not {:?}",
                String::from_utf8_lossy(value.as_bytes())
            ))),
            Some(client) if client < MIN_PEER_REVISION => Some(ServiceError::ClientTooOld {
                client,
                server: PROTOCOL_REVISION,
                min: MIN_PEER_REVISION,
            }),
            Some(_) => None,
        },
        _ => None,
    };
    let mut response = match refused {
        Some(error) => error.into_response(),
        None => next.run(request).await,
    };
    response
        .headers_mut()
        .insert(REVISION_HEADER, header::HeaderValue::from(PROTOCOL_REVISION));
    response
}

/// Serves API v1 on an already-bound listener with the default
/// [`ServeConfig`] until `shutdown` resolves, then finishes the requests in
/// flight (within the drain time).
pub async fn serve<S: ServerStore>(
    listener: tokio::net::TcpListener,
    service: Shared<S>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Stopped> {
    serve_with(listener, service, ServeConfig::default(), shutdown).await
}

/// [`serve`] with the given connection deadlines and limits.
pub async fn serve_with<S: ServerStore>(
    listener: tokio::net::TcpListener,
    service: Shared<S>,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Stopped> {
    let deadline = config.request_timeout;
    // Held live pulls answer as the server stops, so the drain does not wait them out.
    let stopping = service.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.commits().close();
    };
    let app = router(service).layer(axum::middleware::from_fn(move |request, next| {
        request_deadline(deadline, request, next)
    }));
    super::listen::serve_router(listener, app, config, shutdown).await
}

/// Answers 408 when a request (its body included) takes longer than `limit`.
async fn request_deadline(
    limit: std::time::Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = ServiceError::RequestTimeout(format!(
                "the request took longer than {} s (a slow or unfinished body?): send it again",
                limit.as_secs()
            ))
            .into_response();
            // This layer is outside the router's, which names the revision on every other answer.
            response
                .headers_mut()
                .insert(REVISION_HEADER, header::HeaderValue::from(PROTOCOL_REVISION));
            response
        }
    }
}

async fn health<S: ServerStore>(State(s): State<Shared<S>>) -> HttpResult {
    ok(&Health {
        ok: true,
        epoch: s.epoch().to_string(),
        protocol: crate::protocol::message::PROTOCOL_VERSION,
        revision: PROTOCOL_REVISION,
    })
}

/// Readiness: 200 while the store is usable, 503 `store_unavailable` (with the
/// cause) while its storage fails. Liveness is `/v1/health`, which answers as
/// long as the process does.
async fn ready<S: ServerStore>(State(s): State<Shared<S>>) -> HttpResult {
    blocking(move || s.ready()).await?;
    ok(&Ready { ready: true })
}

async fn metrics<S: ServerStore>(State(s): State<Shared<S>>) -> HttpResult {
    let text = blocking(move || {
        // Refreshes the store gauge; a failing store is what the metrics report.
        let _ = s.ready();
        Ok(s.metrics().render())
    })
    .await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}

/// Counts and times every answer by route pattern, method, status and error code.
async fn count_request<S: ServerStore>(
    State(s): State<Shared<S>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().clone();
    let response = next.run(request).await;
    let code = response.extensions().get::<AnsweredCode>().map(|c| c.0.as_str());
    s.metrics().request(
        &route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
        code,
    );
    response
}

async fn openapi<S: ServerStore>(State(s): State<Shared<S>>) -> HttpResult {
    ok(&super::openapi::document(&s.limits()))
}

async fn push<S: ServerStore>(
    State(s): State<Shared<S>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult {
    let token = bearer(&headers);
    let space = path_of(path);
    // Token, membership and role first: the body is read only for a writer.
    let (user, space) = {
        let s = s.clone();
        blocking(move || {
            let user = s.authenticate(token.as_deref())?;
            let space = space?;
            s.check_writer(&user, &space)?;
            Ok((user, space))
        })
        .await?
    };
    let request: PushRequest = read_json(body, s.limits().max_body_bytes).await?;
    ok(&blocking(move || s.push(&user, &space, request)).await?)
}

async fn pull<S: ServerStore>(
    State(s): State<Shared<S>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> HttpResult {
    let token = bearer(&headers);
    let user = {
        let s = s.clone();
        blocking(move || s.authenticate(token.as_deref())).await?
    };
    let space = path_of(path)?;
    let since = number_param(&q, "since", 0)?;
    let limit = number_param(&q, "limit", 500)?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let at = match query_param(&q, "at")? {
        Some(at) => Some(crate::model::OpId(uuid::Uuid::parse_str(&at).map_err(|e| {
            ServiceError::BadRequest(format!("query parameter at={at:?} is not an op id (a UUID): {e}"))
        })?)),
        None => None,
    };
    let mark = match query_param(&q, "mark")? {
        Some(mark) => Some(mark.parse::<u64>().map_err(|e| {
            ServiceError::BadRequest(format!(
                "query parameter mark={mark:?} is not a mark (the `mark` of the pull page that ended at `since`): {e}"
            ))
        })?),
        None => None,
    };
    let at = crate::model::HeldAt { op: at, mark };
    // Held at most the server's bound; a held pull holds one connection slot.
    let wait = number_param(&q, "wait", 0)?.min(s.limits().max_pull_wait_secs);
    let read = || {
        let (s, user, space) = (s.clone(), user.clone(), space.clone());
        blocking(move || s.pull(&user, &space, Seq(since), limit, at))
    };
    let answer = if wait == 0 {
        read().await?
    } else {
        s.commits()
            .hold(&space, Seq(since), std::time::Duration::from_secs(wait), read)
            .await?
    };
    ok(&answer)
}

async fn package<S: ServerStore>(
    State(s): State<Shared<S>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> HttpResult {
    let token = bearer(&headers);
    ok(&blocking(move || {
        let user = s.authenticate(token.as_deref())?;
        s.package(&user, &path_of(path)?)
    })
    .await?)
}

async fn snapshot<S: ServerStore>(
    State(s): State<Shared<S>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> HttpResult {
    let token = bearer(&headers);
    ok(&blocking(move || {
        let user = s.authenticate(token.as_deref())?;
        let space = path_of(path)?;
        let after = query_param(&q, "after")?;
        let limit = number_param(&q, "limit", 1000)?;
        s.snapshot(
            &user,
            &space,
            after.as_deref(),
            usize::try_from(limit).unwrap_or(usize::MAX),
        )
    })
    .await?)
}

async fn record<S: ServerStore>(
    State(s): State<Shared<S>>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> HttpResult {
    let token = bearer(&headers);
    let fields = blocking(move || {
        let user = s.authenticate(token.as_deref())?;
        let (space, collection, id) = path_of(path)?;
        s.record(&user, &space, &collection, &id)?
            .ok_or_else(|| ServiceError::NotFoundOther(format!("no record {collection}/{id} in space {space:?}")))
    })
    .await?;
    ok(&fields)
}

async fn admin<S: ServerStore, T: Serialize + Send + 'static>(
    s: Shared<S>,
    headers: &HeaderMap,
    f: impl FnOnce(&Service<S>) -> Result<T, ServiceError> + Send + 'static,
) -> HttpResult {
    let token = bearer(headers);
    ok(&blocking(move || {
        s.check_admin(token.as_deref())?;
        f(&s)
    })
    .await?)
}

async fn admin_create_space<S: ServerStore>(State(s): State<Shared<S>>, headers: HeaderMap, body: Body) -> HttpResult {
    s.check_admin(bearer(&headers).as_deref())?;
    let request: CreateSpace = read_json(body, s.limits().max_body_bytes).await?;
    admin(s, &headers, move |s| {
        s.create_space(&request)
            .map(|()| SpaceCreated { created: request.space })
    })
    .await
}

async fn admin_set_package<S: ServerStore>(
    State(s): State<Shared<S>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> HttpResult {
    s.check_admin(bearer(&headers).as_deref())?;
    let space = path_of(path)?;
    let package: Package = read_json(body, s.limits().max_body_bytes).await?;
    admin(s, &headers, move |s| {
        s.set_package(&space, Some(&package)).map(|()| PackageSet {
            version: package.version,
        })
    })
    .await
}

async fn admin_add_user<S: ServerStore>(State(s): State<Shared<S>>, headers: HeaderMap, body: Body) -> HttpResult {
    s.check_admin(bearer(&headers).as_deref())?;
    let request: CreateUser = read_json(body, s.limits().max_body_bytes).await?;
    admin(s, &headers, move |s| s.add_user(&request.user)).await
}

async fn admin_new_token<S: ServerStore>(
    State(s): State<Shared<S>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> HttpResult {
    s.check_admin(bearer(&headers).as_deref())?;
    let user = path_of(path)?;
    admin(s, &headers, move |s| s.new_token(&user)).await
}

async fn admin_grant<S: ServerStore>(State(s): State<Shared<S>>, headers: HeaderMap, body: Body) -> HttpResult {
    s.check_admin(bearer(&headers).as_deref())?;
    let request: Grant = read_json(body, s.limits().max_body_bytes).await?;
    admin(s, &headers, move |s| {
        s.grant(&request).map(|()| Granted { granted: true })
    })
    .await
}

async fn admin_list_users<S: ServerStore>(State(s): State<Shared<S>>, headers: HeaderMap) -> HttpResult {
    admin(s, &headers, |s| s.list_users()).await
}

async fn admin_list_spaces<S: ServerStore>(State(s): State<Shared<S>>, headers: HeaderMap) -> HttpResult {
    admin(s, &headers, |s| s.list_spaces()).await
}

async fn admin_revoke_grant<S: ServerStore>(
    State(s): State<Shared<S>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> HttpResult {
    s.check_admin(bearer(&headers).as_deref())?;
    let (space, user) = path_of(path)?;
    admin(s, &headers, move |s| {
        s.revoke_grant(&user, &space).map(|()| Revoked { revoked: true })
    })
    .await
}

async fn admin_revoke_token<S: ServerStore>(
    State(s): State<Shared<S>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> HttpResult {
    s.check_admin(bearer(&headers).as_deref())?;
    let token = path_of(path)?;
    admin(s, &headers, move |s| {
        s.revoke_token(&token).map(|()| Revoked { revoked: true })
    })
    .await
}
