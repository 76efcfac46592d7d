//! The protocol revision check over HTTP: every answer of the server names its
//! revision, the server refuses a client that names an older one than it needs,
//! and the client refuses a server older than it needs before acting on anything
//! it says, keeping its changes pending.

#![cfg(all(feature = "server", feature = "http-client"))]

mod common;

use axum::http::HeaderValue;
use axum::response::Response;
use serde_json::json;
use tidemark::Replica;
use tidemark::protocol::SessionConfig;
use tidemark::protocol::message::{MIN_PEER_REVISION, PROTOCOL_REVISION, REVISION_HEADER, parse_revision};
use tidemark::remote::http::HttpRemote;
use tidemark::server::Limits;
use tidemark::server::http::router;
use tidemark::sync::Round;

use common::live::*;
use common::server::{SPACE, Svc, server};

fn revision_of(resp: &reqwest::Response) -> Option<u32> {
    parse_revision(resp.headers().get(REVISION_HEADER)?.as_bytes())
}

#[test]
fn a_revision_header_is_a_decimal_number_and_nothing_else() {
    assert_eq!(parse_revision(b"2"), Some(2));
    assert_eq!(parse_revision(b" 17 "), Some(17));
    for bad in [&b""[..], b"two", b"-1", b"+2", b"2.0", b"99999999999", b"\xff"] {
        assert_eq!(parse_revision(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[tokio::test]
async fn every_answer_of_the_server_names_its_revision() {
    let s = live(Limits::default()).await;
    let health = s.get(None, "/v1/health").await;
    assert_eq!(revision_of(&health), Some(PROTOCOL_REVISION));
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["revision"], PROTOCOL_REVISION);

    let pulled = s.get(Some(&s.alice), &format!("/v1/spaces/{SPACE}/pull?since=0")).await;
    assert_eq!(pulled.status().as_u16(), 200);
    assert_eq!(revision_of(&pulled), Some(PROTOCOL_REVISION));
    // Errors too: the client checks before it reads the error.
    for (token, path, status) in [
        (None, format!("/v1/spaces/{SPACE}/pull?since=0"), 401),
        (
            Some(s.alice.as_str()),
            "/v1/spaces/nowhere/pull?since=0".to_string(),
            404,
        ),
        (Some(s.alice.as_str()), "/no/such/route".to_string(), 404),
    ] {
        let resp = s.get(token, &path).await;
        assert_eq!(revision_of(&resp), Some(PROTOCOL_REVISION), "{path}");
        json_error(resp, status).await;
    }
}

#[tokio::test]
async fn the_server_refuses_a_client_of_an_older_revision_before_the_route_runs() {
    let s = live(Limits::default()).await;
    let ops = real_ops(&["c1"]);
    let push = |revision: &'static str| {
        s.client
            .post(s.space_url(SPACE, "push"))
            .bearer_auth(&s.alice)
            .header(REVISION_HEADER, revision)
            .json(&json!({ "ops": ops }))
            .send()
    };
    let old: &'static str = (MIN_PEER_REVISION - 1).to_string().leak();
    let resp = push(old).await.unwrap();
    assert_eq!(revision_of(&resp), Some(PROTOCOL_REVISION));
    let err = json_error(resp, 400).await;
    assert_eq!(err["code"], "client_too_old", "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("upgrade tidemark on the client"), "{message}");
    assert!(
        message.contains(&format!("revision {}", MIN_PEER_REVISION - 1)),
        "{message}"
    );

    let err = json_error(push("two").await.unwrap(), 400).await;
    assert!(err["message"].as_str().unwrap().contains(REVISION_HEADER), "{err}");
    assert_eq!(s.head().await, 0, "nothing of the refused pushes was stored");

    // Health always answers, so monitoring works whatever the caller sends.
    let health = s
        .client
        .get(format!("{}/v1/health", s.url))
        .header(REVISION_HEADER, old)
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);

    // The current revision, and no header at all (a script), are served.
    assert_eq!(
        push(PROTOCOL_REVISION.to_string().leak())
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(s.push(&s.alice, &real_ops(&["c2"])).await.status().as_u16(), 200);
    assert_eq!(s.head().await, 2);
}

/// Serves the real server's routes on a loopback port, with `rewrite` applied to
/// every answer: a stand-in for an older server or a proxy in front of it.
async fn serve_rewritten(service: Svc, rewrite: fn(Response) -> Response) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(service).layer(axum::middleware::map_response(
        move |r: Response| async move { rewrite(r) },
    ));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A replica with two local edits, synced against `url`; returns the round's
/// error, after checking that the replica kept its edits pending and the server
/// stored none of them.
async fn sync_against(service: &Svc, token: &str, url: &str) -> String {
    let replica = Replica::in_memory().unwrap();
    replica.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    replica.put("contacts", "c2", json!({"name": "Grace"})).unwrap();
    let remote = HttpRemote::new(url, token, SPACE).unwrap();
    let error = Round::new(&replica, SessionConfig::default())
        .run(&remote)
        .await
        .expect_err("the round must not complete")
        .to_string();
    assert_eq!(replica.status().unwrap().pending, 2, "{error}");
    assert!(
        replica.rejected().unwrap().is_empty(),
        "nothing is refused for good: {error}"
    );
    assert_eq!(
        service.pull("alice", SPACE, tidemark::Seq(0), 100, None).unwrap().head,
        0,
        "{error}"
    );
    error
}

#[tokio::test]
async fn a_client_refuses_a_server_without_a_revision_and_keeps_its_changes() {
    let (service, tokens) = server(None, &["alice"]);
    let url = serve_rewritten(service.clone(), |mut r| {
        r.headers_mut().remove(REVISION_HEADER);
        r
    })
    .await;
    let error = sync_against(&service, &tokens[0], &url).await;
    assert!(error.contains("without a tidemark-protocol-revision header"), "{error}");
    assert!(error.contains("upgrade the server"), "{error}");
    assert!(error.contains("local changes stay pending"), "{error}");
}

#[tokio::test]
async fn a_client_refuses_a_server_of_an_older_revision_and_keeps_its_changes() {
    let (service, tokens) = server(None, &["alice"]);
    let url = serve_rewritten(service.clone(), |mut r| {
        r.headers_mut()
            .insert(REVISION_HEADER, HeaderValue::from(MIN_PEER_REVISION - 1));
        r
    })
    .await;
    let error = sync_against(&service, &tokens[0], &url).await;
    let said = format!("speaks tidemark protocol revision {}", MIN_PEER_REVISION - 1);
    assert!(error.contains(&said), "{error}");
    assert!(error.contains("upgrade the server"), "{error}");
}

/// Serves the real server's routes, except that a request whose path ends with
/// `tail` gets `answer` instead, without the revision header: a stand-in for an
/// older server (or a proxy) that refuses only some requests.
async fn serve_refusing(service: Svc, tail: &'static str, answer: fn() -> Response) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(service).layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| async move {
            if request.uri().path().ends_with(tail) {
                answer()
            } else {
                next.run(request).await
            }
        },
    ));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn answer(status: u16, content_type: &str, body: &str) -> Response {
    let mut r = Response::new(axum::body::Body::from(body.to_string()));
    *r.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_str(content_type).unwrap());
    r
}

/// An older server refuses a genesis op as an invalid op naming it. The client
/// is past the package request (which the real server answered), and its push
/// answer has no revision: it must not take that refusal for good.
#[tokio::test]
async fn a_refusal_without_a_revision_is_not_taken_for_a_refusal_of_the_op() {
    let (service, tokens) = server(None, &["alice"]);
    let url = serve_refusing(service.clone(), "/push", || {
        let body = json!({"code": "invalid_op", "message": "op 0 of the batch is invalid", "op_index": 0});
        answer(400, "application/json", &body.to_string())
    })
    .await;
    let error = sync_against(&service, &tokens[0], &url).await;
    assert!(
        error.contains("answered HTTP 400 without a tidemark-protocol-revision header"),
        "{error}"
    );
}

/// A proxy in front of a current server refuses a push (nginx's body limit):
/// the client says so, with the proxy's own words, and keeps its changes.
#[tokio::test]
async fn a_proxys_refusal_is_reported_with_its_words() {
    let (service, tokens) = server(None, &["alice"]);
    let url = serve_refusing(service.clone(), "/push", || {
        answer(
            413,
            "text/html",
            "<html><body>413 Request Entity Too Large nginx</body></html>",
        )
    })
    .await;
    let error = sync_against(&service, &tokens[0], &url).await;
    assert!(error.contains("a proxy in front of the server answered"), "{error}");
    assert!(error.contains("413 Request Entity Too Large nginx"), "{error}");
}

/// The admin client checks too.
#[tokio::test]
async fn the_admin_client_refuses_a_server_without_a_revision() {
    let (service, _) = server(None, &["alice"]);
    let url = serve_rewritten(service, |mut r| {
        r.headers_mut().remove(REVISION_HEADER);
        r
    })
    .await;
    let admin = tidemark::remote::http::AdminClient::new(&url, common::server::ADMIN_TOKEN).unwrap();
    let error = admin.add_user("bob").await.expect_err("refused").to_string();
    assert!(error.contains("without a tidemark-protocol-revision header"), "{error}");
    let current = serve_rewritten(server(None, &[]).0, |r| r).await;
    let admin = tidemark::remote::http::AdminClient::new(&current, common::server::ADMIN_TOKEN).unwrap();
    assert!(!admin.add_user("bob").await.unwrap().is_empty());
}

/// A proxy's 5xx page carries no header: it is reported as what it is, not as
/// an old server.
#[tokio::test]
async fn a_server_error_without_a_revision_is_reported_as_a_server_error() {
    let (service, tokens) = server(None, &["alice"]);
    let url = serve_rewritten(service.clone(), |_| {
        let mut r = Response::new(axum::body::Body::from("upstream is down"));
        *r.status_mut() = axum::http::StatusCode::BAD_GATEWAY;
        r
    })
    .await;
    let error = sync_against(&service, &tokens[0], &url).await;
    assert!(error.contains("502"), "{error}");
    assert!(error.contains("upstream is down"), "{error}");
    assert!(!error.contains("revision"), "{error}");
}

#[tokio::test]
async fn a_client_and_server_of_this_build_sync() {
    let (service, tokens) = server(None, &["alice"]);
    let url = serve_rewritten(service.clone(), |r| r).await;
    let replica = Replica::in_memory().unwrap();
    replica.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    let remote = HttpRemote::new(&url, &tokens[0], SPACE).unwrap();
    Round::new(&replica, SessionConfig::default())
        .run(&remote)
        .await
        .unwrap();
    assert_eq!(replica.status().unwrap().pending, 0);
    assert_eq!(
        service.pull("alice", SPACE, tidemark::Seq(0), 100, None).unwrap().head,
        1
    );
}
