//! The admin routes against a live server: names that travel everywhere
//! unchanged, and package versions that only move forward.

#![cfg(all(feature = "server", feature = "http-client"))]

mod common;

use serde_json::{Value, json};
use tidemark::server::Limits;

use common::live::{ADMIN_TOKEN, Live, SPACE, json_error, live};

/// An admin request with a JSON body.
async fn admin_send(live: &Live, method: reqwest::Method, path: &str, body: Value) -> reqwest::Response {
    live.client
        .request(method, format!("{}{path}", live.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn admin_post(live: &Live, path: &str, body: Value) -> reqwest::Response {
    admin_send(live, reqwest::Method::POST, path, body).await
}

async fn admin_put(live: &Live, path: &str, body: Value) -> reqwest::Response {
    admin_send(live, reqwest::Method::PUT, path, body).await
}

#[tokio::test]
async fn space_and_user_names_outside_the_documented_rule_are_refused_with_the_rule() {
    let live = live(Limits::default()).await;
    for bad in [
        "crm ",
        " crm",
        "..",
        "a/b",
        "CON",
        "con.txt",
        "lpt1",
        "",
        ".hidden",
        "-x",
        "a..b",
        "é",
        &"x".repeat(65),
    ] {
        let resp = admin_post(&live, "/v1/admin/spaces", json!({ "space": bad })).await;
        let body = json_error(resp, 400).await;
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("bad space name"), "{bad:?}: {message}");
        let resp = admin_post(&live, "/v1/admin/users", json!({ "user": bad })).await;
        let body = json_error(resp, 400).await;
        assert!(
            body["message"].as_str().unwrap().contains("bad user name"),
            "{bad:?}: {body}"
        );
    }
    for good in ["crm3", "crm-2", "team_a.notes", "A1", &"x".repeat(64)] {
        let resp = admin_post(&live, "/v1/admin/spaces", json!({ "space": good })).await;
        assert_eq!(resp.status().as_u16(), 200, "{good:?}: {}", resp.text().await.unwrap());
        let resp = admin_post(&live, "/v1/admin/users", json!({ "user": good })).await;
        assert_eq!(resp.status().as_u16(), 200, "{good:?}");
    }
}

#[tokio::test]
async fn a_package_version_only_moves_forward() {
    let live = live(Limits::default()).await;
    let path = format!("/v1/admin/spaces/{SPACE}/package");
    let package = |version: u64, extra: &str| {
        json!({"version": version, "collections": {
            "contacts": {"fields": {"name": "string", extra: "string"}},
        }})
    };
    // The live space has version 1: an older or equal version with other content is refused.
    for version in [0, 1] {
        let resp = admin_put(&live, &path, package(version, "email")).await;
        let body = json_error(resp, 409).await;
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("higher version"), "{message}");
    }
    let resp = admin_put(&live, &path, package(2, "email")).await;
    assert_eq!(resp.status().as_u16(), 200);
    // The same package again changes nothing; going back is refused.
    let resp = admin_put(&live, &path, package(2, "email")).await;
    assert_eq!(resp.status().as_u16(), 200);
    let resp = admin_put(&live, &path, package(1, "phone")).await;
    json_error(resp, 409).await;
    let current = live.service.package("alice", SPACE).unwrap();
    assert_eq!(current.version, 2);
}

#[tokio::test]
async fn revoked_tokens_and_grants_are_refused_at_once_and_listings_show_no_secrets() {
    let live = live(Limits::default()).await;
    let pull = |token: String| {
        let live = &live;
        async move {
            live.get(Some(&token), &format!("/v1/spaces/{SPACE}/pull?since=0"))
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(pull(live.alice.clone()).await, 200);
    assert_eq!(pull(live.rita.clone()).await, 200);

    // Listings: users with token ids only, spaces with versions and members.
    let users: Value = live
        .get(Some(ADMIN_TOKEN), "/v1/admin/users")
        .await
        .json()
        .await
        .unwrap();
    let alice = users.as_array().unwrap().iter().find(|u| u["user"] == "alice").unwrap();
    let alice_id = live.alice.split('.').nth(1).unwrap();
    assert_eq!(alice["tokens"], json!([alice_id]));
    let secret = live.alice.split('.').nth(2).unwrap();
    assert!(!users.to_string().contains(secret), "a listing shows a secret: {users}");
    let spaces: Value = live
        .get(Some(ADMIN_TOKEN), "/v1/admin/spaces")
        .await
        .json()
        .await
        .unwrap();
    let crm = spaces.as_array().unwrap().iter().find(|s| s["space"] == SPACE).unwrap();
    assert_eq!(crm["package_version"], 1);
    assert_eq!(
        crm["members"],
        json!([{"user": "alice", "read_only": false}, {"user": "rita", "read_only": true}])
    );
    let resp = live.get(Some(&live.alice), "/v1/admin/users").await;
    json_error(resp, 401).await;

    // Revoking rita's grant: 404 for her at once, alice unaffected; again: 404.
    let delete = |path: String| {
        let live = &live;
        async move {
            live.client
                .delete(format!("{}{path}", live.url))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
        }
    };
    let resp = delete(format!("/v1/admin/spaces/{SPACE}/members/rita")).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(pull(live.rita.clone()).await, 404);
    assert_eq!(pull(live.alice.clone()).await, 200);
    json_error(delete(format!("/v1/admin/spaces/{SPACE}/members/rita")).await, 404).await;

    // Revoking alice's token (by the whole token): 401 at once; by an unknown id: 404.
    let resp = delete(format!("/v1/admin/tokens/{}", live.alice)).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(pull(live.alice.clone()).await, 401);
    json_error(delete(format!("/v1/admin/tokens/{alice_id}")).await, 404).await;
    let users: Value = live
        .get(Some(ADMIN_TOKEN), "/v1/admin/users")
        .await
        .json()
        .await
        .unwrap();
    let alice = users.as_array().unwrap().iter().find(|u| u["user"] == "alice").unwrap();
    assert_eq!(alice["tokens"], json!([]));
}
