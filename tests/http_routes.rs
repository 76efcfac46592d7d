//! The live server's routes and its secrets: unknown routes and methods, the
//! OpenAPI document, a barrage of hostile requests, and user tokens that never
//! reach the server's files or logs. An axum front on a loopback port, reached
//! with reqwest; every test builds its own server.

#![cfg(all(feature = "server", feature = "http-client"))]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};
use tidemark::server::Limits;
use tidemark::server::store::redb::RedbStore;

use common::live::*;

#[tokio::test]
async fn the_server_still_answers_health_after_a_concurrent_barrage_of_hostile_requests() {
    let s = Arc::new(
        live(Limits {
            max_body_bytes: 64 * 1024,
            max_ops_per_push: 5,
            ..Default::default()
        })
        .await,
    );
    let ops = real_ops(&["c1"]);
    let panicking = {
        let mut op = ops[0].clone();
        op["change"] = json!(b64(&hex::decode(PANICKING_CHANGE_HEX).unwrap()));
        op
    };
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s = s.clone();
        let panicking = panicking.clone();
        tasks.push(tokio::spawn(async move {
            let status = match i % 8 {
                // Refused alone, inside a 200 answer.
                0 => {
                    refused_one(s.push(&s.alice, &[panicking]).await, 0, "invalid_op").await;
                    return;
                }
                1 => s.push_raw(&s.alice, SPACE, vec![b'{'; 200 * 1024]).await.status(),
                2 => s.push_raw(&s.alice, SPACE, b"{\"ops\":[".to_vec()).await.status(),
                3 => s.push(&s.rita, &real_ops(&["x"])).await.status(),
                4 => s.push(&s.mallory, &real_ops(&["x"])).await.status(),
                5 => s.get(Some("Bearer junk"), "/v1/spaces/crm/pull").await.status(),
                6 => s
                    .get(Some(&s.alice), "/v1/spaces/crm/pull?since=0&limit=zzz")
                    .await
                    .status(),
                _ => s
                    .push(&s.alice, &real_ops(&["a", "b", "c", "d", "e", "f"]))
                    .await
                    .status(),
            };
            assert!(status.is_client_error(), "request {i}: {status}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    s.assert_healthy().await;
    assert_eq!(s.head().await, 0, "none of it was stored");
    // And it still does real work.
    let resp = s.push(&s.alice, &ops).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(s.head().await, 1);
}

#[tokio::test]
async fn the_openapi_document_lists_the_push_and_pull_paths() {
    let s = live(Limits::default()).await;
    let resp = s.get(None, "/v1/openapi.json").await;
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let doc: Value = resp.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("the document has paths");
    for path in ["/v1/spaces/{space}/push", "/v1/spaces/{space}/pull"] {
        assert!(paths.contains_key(path), "{path} missing from {:?}", paths.keys());
    }
    assert!(paths["/v1/spaces/{space}/push"]["post"].is_object());
    assert!(paths["/v1/spaces/{space}/pull"]["get"].is_object());
    s.assert_healthy().await;
}

#[tokio::test]
async fn an_unknown_route_gets_a_json_404() {
    let s = live(Limits::default()).await;
    for path in ["/", "/v2/health", "/v1/spaces/crm", "/v1/spaces/crm/push/extra"] {
        let resp = s.get(Some(&s.alice), path).await;
        let err = json_error(resp, 404).await;
        assert_eq!(err["code"], "not_found", "{path}: {err}");
    }
    s.assert_healthy().await;
}

/// The API's rule: every error is JSON with a message a person can act on.
/// axum's own method-not-allowed answer bypasses the router's JSON fallback.
#[tokio::test]
async fn a_wrong_method_gets_a_json_405() {
    let s = live(Limits::default()).await;
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/spaces/{SPACE}/push")),
        (reqwest::Method::POST, format!("/v1/spaces/{SPACE}/pull")),
        (reqwest::Method::DELETE, "/v1/health".to_string()),
    ] {
        let resp = s
            .client
            .request(method.clone(), format!("{}{path}", s.url))
            .bearer_auth(&s.alice)
            .send()
            .await
            .unwrap();
        json_error(resp, 405).await;
    }
    s.assert_healthy().await;
}

/// The API's rule: every error is JSON. A path segment that is not UTF-8 is
/// refused by axum's `Path` extractor, whose rejection is plain text.
#[tokio::test]
async fn a_space_name_that_is_not_utf8_gets_a_json_error() {
    let s = live(Limits::default()).await;
    let resp = s.get(Some(&s.alice), "/v1/spaces/%FF%FE/pull").await;
    let status = resp.status().as_u16();
    assert!(status == 400 || status == 404, "{status}");
    json_error(resp, status).await;
    s.assert_healthy().await;
}

/// Log lines of every test in this binary, captured at TRACE level.
fn captured_logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    static INSTALL: OnceLock<()> = OnceLock::new();
    let logs = LOGS.get_or_init(|| Mutex::new(Vec::new()));
    INSTALL.get_or_init(|| {
        struct Capture;
        impl Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                captured_logs().lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
    });
    logs
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn user_tokens_never_appear_in_the_servers_files_or_logs() {
    let logs = captured_logs();
    let dir = tempfile::tempdir().unwrap();
    let s = live_on(RedbStore::open(dir.path()).unwrap(), Limits::default()).await;
    // A few more tokens: a second one for alice, a new user.
    let admin = |path: &str, body: Value| {
        s.client
            .post(format!("{}{path}", s.url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let eve: Value = admin("/v1/admin/users", json!({"user": "eve"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alice2: Value = s
        .client
        .post(format!("{}/v1/admin/users/alice/tokens", s.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tokens = vec![
        s.alice.clone(),
        s.rita.clone(),
        s.mallory.clone(),
        eve["token"].as_str().unwrap().to_string(),
        alice2["token"].as_str().unwrap().to_string(),
    ];
    // Use them: pushes, pulls, reads of the materialized records, refusals.
    let resp = s.push(&tokens[4], &real_ops(&["c1", "c2", "c3"])).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(s.push(&s.alice, &real_ops(&["c4"])).await.status().as_u16(), 200);
    assert_eq!(s.push(&s.rita, &real_ops(&["r1"])).await.status().as_u16(), 403);
    assert_eq!(s.push(&s.mallory, &real_ops(&["m1"])).await.status().as_u16(), 404);
    // The last character changed (to another one: a token may end in '0' itself).
    let last = if s.alice.ends_with('0') { '1' } else { '0' };
    let wrong_secret = format!("{}{last}", &s.alice[..s.alice.len() - 1]);
    assert_ne!(wrong_secret, s.alice);
    assert_eq!(s.push(&wrong_secret, &real_ops(&["w1"])).await.status().as_u16(), 401);
    s.service.materialize(SPACE).unwrap();
    let resp = s
        .get(Some(&s.alice), &format!("/v1/spaces/{SPACE}/records/contacts/c1"))
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let resp = s.get(Some(&s.rita), &format!("/v1/spaces/{SPACE}/snapshot")).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(s.head().await, 4);

    let mut files = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(!files.is_empty(), "the store wrote files");
    let mut secrets = vec![ADMIN_TOKEN.to_string(), wrong_secret.clone()];
    for token in &tokens {
        let secret = token.rsplit('.').next().unwrap();
        assert!(secret.len() >= 32, "a token carries at least 128 random bits: {token}");
        secrets.push(token.clone());
        secrets.push(secret.to_string());
        secrets.push(secret.to_uppercase());
    }
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for secret in &secrets {
            assert!(!contains(&bytes, secret), "{} holds a token secret", file.display());
        }
    }
    tracing::info!("log capture check");
    let logs = logs.lock().unwrap().clone();
    // A check of nothing would pass: the logs were captured, the server's
    // request handling (down to automerge's trace lines) among them.
    assert!(
        contains(&logs, "log capture check"),
        "the test's subscriber is installed"
    );
    assert!(
        contains(&logs, "automerge::"),
        "the server's work is in the captured logs"
    );
    for secret in &secrets {
        assert!(!contains(&logs, secret), "the logs hold a token secret");
    }
    s.assert_healthy().await;
}

/// Every security scheme a route names is defined, as an HTTP bearer scheme.
#[tokio::test]
async fn every_security_scheme_the_document_names_is_defined() {
    let s = live(Limits::default()).await;
    let doc: Value = s.get(None, "/v1/openapi.json").await.json().await.unwrap();
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("schemes are defined");
    let mut named = std::collections::BTreeSet::new();
    for methods in doc["paths"].as_object().unwrap().values() {
        for operation in methods.as_object().unwrap().values() {
            for requirement in operation["security"].as_array().into_iter().flatten() {
                named.extend(requirement.as_object().unwrap().keys().cloned());
            }
        }
    }
    assert_eq!(named, ["admin".to_string(), "bearer".to_string()].into_iter().collect());
    for name in &named {
        let scheme = &schemes[name];
        assert_eq!(
            (scheme["type"].as_str(), scheme["scheme"].as_str()),
            (Some("http"), Some("bearer")),
            "{name}: {scheme}"
        );
    }
}

/// One request of [`every_answer_a_route_gives_is_listed_for_it`]: the route's
/// usual request with one thing changed.
struct Probe {
    what: &'static str,
    token: Option<String>,
    /// Path parameters by name; a parameter not named here takes its usual value.
    params: Vec<(&'static str, &'static str)>,
    query: &'static str,
    revision: Option<&'static str>,
    body: Option<Vec<u8>>,
}

/// Every answer a route gives is listed for it in the document: its status,
/// and for an error, its code. Each operation is sent its usual request and
/// that request with one thing changed: no token, a junk token, the other kind
/// of token, a stranger's, a read-only member's, an old or a bad protocol
/// revision, names that do not exist, a path segment that is not UTF-8, bad
/// query values, a body that is not JSON, of the wrong shape, over the body
/// limit, or with too many ops, and the usual request again (a name taken).
#[tokio::test]
async fn every_answer_a_route_gives_is_listed_for_it() {
    let s = live(Limits {
        max_body_bytes: 64 * 1024,
        max_ops_per_push: 5,
        ..Default::default()
    })
    .await;
    let doc: Value = s.get(None, "/v1/openapi.json").await.json().await.unwrap();
    let spare_token: Value = s
        .client
        .post(format!("{}/v1/admin/users/mallory/tokens", s.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let spare_token_id = spare_token["token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_string();
    let spare_token_id: &'static str = Box::leak(spare_token_id.into_boxed_str());
    let package = serde_json::to_vec(&common::crm_package()).unwrap();

    // Member routes first: the admin routes below revoke a grant and a token.
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations.push((path.clone(), method.clone(), operation.clone()));
        }
    }
    operations.sort_by_key(|(path, method, _)| (path.starts_with("/v1/admin/"), method == "delete"));
    assert_eq!(operations.len(), 18);

    let mut seen = std::collections::BTreeSet::new();
    for (path, method, operation) in &operations {
        let id = operation["operationId"].as_str().unwrap();
        let admin_route = path.starts_with("/v1/admin/");
        let right = if admin_route {
            ADMIN_TOKEN.to_string()
        } else {
            s.alice.clone()
        };
        let wrong = if admin_route {
            s.alice.clone()
        } else {
            ADMIN_TOKEN.to_string()
        };
        // The usual path parameters: a revoke takes mallory's grant of `other`, and a spare token.
        let usual: Vec<(&str, &str)> = match id {
            "admin_revoke_grant" => vec![("space", OTHER_SPACE), ("user", "mallory")],
            "admin_revoke_token" => vec![("token", spare_token_id)],
            _ => vec![
                ("space", SPACE),
                ("user", "mallory"),
                ("collection", "contacts"),
                ("id", "c1"),
            ],
        };
        let usual_body: Option<Vec<u8>> = match id {
            "push" => Some(serde_json::to_vec(&json!({ "ops": real_ops(&["c1"]) })).unwrap()),
            "admin_create_space" => Some(br#"{"space": "fresh"}"#.to_vec()),
            "admin_set_package" => Some(package.clone()),
            "admin_add_user" => Some(br#"{"user": "fresh"}"#.to_vec()),
            "admin_grant" => Some(br#"{"user": "mallory", "space": "crm", "read_only": true}"#.to_vec()),
            _ => None,
        };
        let probe = |what, token: Option<String>| Probe {
            what,
            token,
            params: Vec::new(),
            query: "",
            revision: None,
            body: usual_body.clone(),
        };
        let with_body = |what, body: Vec<u8>| Probe {
            body: Some(body),
            ..probe(what, Some(right.clone()))
        };
        let mut probes = vec![
            probe("the usual request", Some(right.clone())),
            probe("no token", None),
            probe("a junk token", Some("tm1.junk.junk".into())),
            probe("the other kind of token", Some(wrong.clone())),
            probe("a read-only member's token", Some(s.rita.clone())),
            probe("a stranger's token", Some(s.mallory.clone())),
            Probe {
                revision: Some("2"),
                ..probe("an old revision", Some(right.clone()))
            },
            Probe {
                revision: Some("two"),
                ..probe("a bad revision", Some(right.clone()))
            },
            Probe {
                params: ["space", "user", "collection", "id", "token"]
                    .map(|p| (p, "nope"))
                    .to_vec(),
                ..probe("names that do not exist", Some(right.clone()))
            },
            Probe {
                params: ["space", "user", "collection", "id", "token"]
                    .map(|p| (p, "%FF"))
                    .to_vec(),
                ..probe("a path segment that is not UTF-8", Some(right.clone()))
            },
            Probe {
                query: "?since=x&limit=-1&at=zz&after=zz",
                ..probe("bad query values", Some(right.clone()))
            },
            Probe {
                query: "?since=18446744073709551616&limit=18446744073709551616",
                ..probe("integers past 2^64 - 1", Some(right.clone()))
            },
            Probe {
                query: "?since=1&at=0190d3c4-0000-7000-8000-000000000000",
                ..probe("another op at `since`", Some(right.clone()))
            },
            Probe {
                query: "?since=1&mark=-1",
                ..probe("a mark that is not a number", Some(right.clone()))
            },
            Probe {
                query: "?since=1&mark=9007199254740993",
                ..probe("another mark at `since`", Some(right.clone()))
            },
            with_body("a body that is not JSON", b"{".to_vec()),
            with_body("a body of the wrong shape", br#"{"nope": 1}"#.to_vec()),
            with_body("a body over the limit", vec![b' '; 100 * 1024]),
            with_body(
                "bad names",
                br#"{"space": "..", "user": "CON", "version": 9, "collections": {"_x": {"fields": {"_y": "string"}}}}"#
                    .to_vec(),
            ),
            with_body("an older package", br#"{"version": 0, "collections": {}}"#.to_vec()),
            probe("the usual request again", Some(right.clone())),
        ];
        if id == "push" {
            let ops = real_ops(&["a", "b", "c", "d", "e", "f"]);
            probes.push(with_body(
                "too many ops",
                serde_json::to_vec(&json!({ "ops": ops })).unwrap(),
            ));
        }
        for probe in probes {
            let mut url = format!("{}{path}", s.url);
            for name in ["space", "user", "collection", "id", "token"] {
                let value = probe
                    .params
                    .iter()
                    .chain(&usual)
                    .find(|(p, _)| *p == name)
                    .map_or("x", |(_, v)| *v);
                url = url.replace(&format!("{{{name}}}"), value);
            }
            url.push_str(probe.query);
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut request = s.client.request(method.clone(), &url);
            if let Some(token) = &probe.token {
                request = request.bearer_auth(token);
            }
            if let Some(revision) = probe.revision {
                request = request.header("tidemark-protocol-revision", revision);
            }
            if let Some(body) = &probe.body {
                request = request.header("content-type", "application/json").body(body.clone());
            }
            let resp = request.send().await.unwrap();
            let status = resp.status().as_u16().to_string();
            let text = resp.text().await.unwrap();
            let context = format!("{method} {url} ({}): {status} {text}", probe.what);
            let listed = &operation["responses"][&status];
            assert!(listed.is_object(), "status not listed for {id}: {context}");
            if status != "200" {
                let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {context}"));
                let code = body["code"].as_str().unwrap_or_else(|| panic!("no code: {context}"));
                let codes = &listed["content"]["application/json"]["schema"]["allOf"][1]["properties"]["code"]["enum"];
                assert!(
                    codes.as_array().unwrap().iter().any(|c| c == code),
                    "code {code} not listed for {id} {status} ({codes}): {context}"
                );
                seen.insert(code.to_string());
            }
        }
        s.service.materialize(SPACE).unwrap();
    }
    // The probes reached every refusal they are meant to reach.
    for code in [
        "unauthorized",
        "not_found",
        "read_only",
        "bad_request",
        "client_too_old",
        "too_large",
        "conflict",
        "history_changed",
    ] {
        assert!(seen.contains(code), "no probe got {code}: {seen:?}");
    }
    s.assert_healthy().await;
}
