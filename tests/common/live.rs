//! A live server for hostile-input tests: an axum front on a loopback port with
//! two spaces and three users, reached with reqwest as any client would reach it.

use std::sync::Arc;

use serde_json::{Value, json};
use tidemark::Replica;
use tidemark::protocol::message::{CreateSpace, Grant, PullResponse, WireOp};
use tidemark::server::store::redb::RedbStore;
use tidemark::server::{Limits, ServeConfig, Service};

pub const SPACE: &str = "crm";
pub const OTHER_SPACE: &str = "other";
pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

/// 37 bytes that make automerge 0.12 panic inside its decoder (see
/// `record/mod.rs`). The chunk checks refuse them before automerge reads them
/// (the bytes after its first chunk are no chunk); `tests/cli_serve.rs` holds a change that
/// passes those checks and still makes automerge panic.
pub const PANICKING_CHANGE_HEX: &str = "856f4a83fc030a0a030a0000000123030083fc030a0a030a00000a000000011500030a8500";

/// A live server: its base URL, the service behind it, and the users' tokens.
///
/// Users: `alice` (read-write member of `crm`), `rita` (read-only member of
/// `crm`), `mallory` (member of `other` only).
pub struct Live {
    pub url: String,
    pub service: Arc<Service<RedbStore>>,
    pub alice: String,
    pub rita: String,
    pub mallory: String,
    pub client: reqwest::Client,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub fn client() -> reqwest::Client {
    // reqwest is built without a default crypto provider; plain http needs none,
    // but the builder wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

pub async fn live(limits: Limits) -> Live {
    live_on(RedbStore::in_memory().unwrap(), limits).await
}

pub async fn live_on(store: RedbStore, limits: Limits) -> Live {
    live_with(store, limits, ServeConfig::default()).await
}

/// A live server on `store` with the given limits and connection settings.
pub async fn live_with(store: RedbStore, limits: Limits, config: ServeConfig) -> Live {
    let service = Arc::new(Service::new(store, limits, Some(ADMIN_TOKEN)).unwrap());
    for space in [SPACE, OTHER_SPACE] {
        service
            .create_space(&CreateSpace {
                space: space.into(),
                package: Some(super::crm_package()),
            })
            .unwrap();
    }
    let mut tokens = Vec::new();
    for (user, space, read_only) in [
        ("alice", SPACE, false),
        ("rita", SPACE, true),
        ("mallory", OTHER_SPACE, false),
    ] {
        tokens.push(service.add_user(user).unwrap().token);
        service
            .grant(&Grant {
                user: user.into(),
                space: space.into(),
                read_only,
            })
            .unwrap();
    }
    let (url, tx) = super::server::start_http_with(service.clone(), config).await;
    let [alice, rita, mallory]: [String; 3] = tokens.try_into().unwrap();
    Live {
        url,
        service,
        alice,
        rita,
        mallory,
        client: client(),
        _shutdown: tx,
    }
}

impl Live {
    pub fn space_url(&self, space: &str, tail: &str) -> String {
        format!("{}/v1/spaces/{space}/{tail}", self.url)
    }

    pub async fn push_raw(&self, token: &str, space: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.space_url(space, "push"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn push(&self, token: &str, ops: &[Value]) -> reqwest::Response {
        self.push_raw(token, SPACE, serde_json::to_vec(&json!({ "ops": ops })).unwrap())
            .await
    }

    pub async fn get(&self, token: Option<&str>, path_and_query: &str) -> reqwest::Response {
        let mut request = self.client.get(format!("{}{path_and_query}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn pull(&self, since: u64, limit: u64) -> PullResponse {
        let resp = self
            .get(
                Some(&self.alice),
                &format!("/v1/spaces/{SPACE}/pull?since={since}&limit={limit}"),
            )
            .await;
        assert_eq!(resp.status().as_u16(), 200, "pull as alice");
        resp.json().await.unwrap()
    }

    /// The space's head as alice sees it through `GET pull`.
    pub async fn head(&self) -> u64 {
        self.pull(0, 1).await.head.get()
    }

    pub async fn assert_healthy(&self) {
        let resp = self.get(None, "/v1/health").await;
        assert_eq!(resp.status().as_u16(), 200, "the server still answers /v1/health");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["ok"], true, "{body}");
    }
}

/// Real ops of one replica: a put on each of `ids` in `contacts`, as wire JSON.
pub fn real_ops(ids: &[&str]) -> Vec<Value> {
    let replica = Replica::in_memory().unwrap();
    replica.set_package(Some(&super::crm_package())).unwrap();
    for id in ids {
        replica
            .put("contacts", id, json!({"name": format!("name of {id}"), "age": 36}))
            .unwrap();
    }
    replica
        .pending_ops(usize::MAX)
        .unwrap()
        .iter()
        .map(|p| serde_json::to_value(WireOp::from_op(&p.op)).unwrap())
        .collect()
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Asserts a push answer (200) that refused exactly the op at `index`, with
/// `code` and a message a person can act on; returns the answer.
pub async fn refused_one(
    resp: reqwest::Response,
    index: usize,
    code: &str,
) -> tidemark::protocol::message::PushResponse {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "a refusal of one op is part of a 200 answer: {text}");
    let answer: tidemark::protocol::message::PushResponse = serde_json::from_str(&text).unwrap();
    assert_eq!(answer.refused.len(), 1, "{text}");
    let refused = &answer.refused[0];
    assert_eq!((refused.index, refused.code.as_str()), (index, code), "{text}");
    assert!(refused.message.len() > 20, "{text}");
    assert_eq!(answer.seqs[index], None, "{text}");
    answer
}

/// Asserts an error answer: `status`, a JSON content type, and an `{code, message}` body.
pub async fn json_error(resp: reqwest::Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    let bytes = resp.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(got, status, "status; body: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "an error answer is JSON, got content-type {content_type:?} and body {text:?}"
    );
    let body: Value =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("error body is not JSON ({e}): {text:?}"));
    assert!(
        body["code"].as_str().is_some_and(|c| !c.is_empty()),
        "error body has a code: {body}"
    );
    assert!(
        body["message"].as_str().is_some_and(|m| m.len() > 10),
        "error body has a message a person can act on: {body}"
    );
    body
}
