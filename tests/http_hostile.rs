//! Hostile input against a live server: an axum front on a loopback port,
//! reached with reqwest as any client on the network would reach it.
//!
//! Every test builds its own server (own store, own limits) and ends by
//! checking that the server still answers `/v1/health`.

#![cfg(all(feature = "server", feature = "http-client"))]

mod common;

use rand::RngCore;
use serde_json::{Value, json};
use tidemark::Replica;
use tidemark::protocol::message::{PullResponse, PushResponse, WireOp};
use tidemark::server::Limits;

use common::crm_package;
use common::live::*;

#[tokio::test]
async fn a_request_without_a_token_or_with_a_bad_token_gets_401_with_a_json_error() {
    let s = live(Limits::default()).await;
    let real_id = s.alice.split('.').nth(1).unwrap().to_string();
    let bad_headers: Vec<Option<String>> = vec![
        None,
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some("Bearer nonsense".into()),
        Some("Bearer tm1..".into()),
        Some("Bearer tm1.x.y.z".into()),
        Some(format!("Bearer tm1.{real_id}.{}", "0".repeat(64))),
        Some(format!("Bearer tm1.{real_id}.")),
        Some(format!("Bearer {}x", s.alice)),
        Some(format!("Bearer {ADMIN_TOKEN}")),
        Some(format!("Basic {}", b64(format!("alice:{}", s.alice).as_bytes()))),
        Some(format!("Bearer {}", "A".repeat(8 * 1024))),
    ];
    let ops = serde_json::to_vec(&json!({ "ops": real_ops(&["c1"]) })).unwrap();
    for header in &bad_headers {
        for (method, path) in [
            ("POST", format!("/v1/spaces/{SPACE}/push")),
            ("GET", format!("/v1/spaces/{SPACE}/pull?since=0")),
            ("GET", format!("/v1/spaces/{SPACE}/package")),
            ("GET", format!("/v1/spaces/{SPACE}/snapshot")),
            ("GET", format!("/v1/spaces/{SPACE}/records/contacts/c1")),
            ("GET", "/v1/spaces/no-such-space/pull".to_string()),
        ] {
            let url = format!("{}{path}", s.url);
            let mut request = match method {
                "POST" => s.client.post(&url).body(ops.clone()),
                _ => s.client.get(&url),
            };
            if let Some(h) = header {
                request = request.header("authorization", h);
            }
            let body = json_error(request.send().await.unwrap(), 401).await;
            assert_eq!(body["code"], "unauthorized", "{method} {path} with {header:?}: {body}");
        }
    }
    // A user token is not an admin token.
    let resp = s
        .client
        .post(format!("{}/v1/admin/users", s.url))
        .bearer_auth(&s.alice)
        .json(&json!({"user": "eve"}))
        .send()
        .await
        .unwrap();
    json_error(resp, 401).await;
    assert_eq!(s.head().await, 0, "nothing was stored");
    s.assert_healthy().await;
}

#[tokio::test]
async fn a_space_the_user_is_not_a_member_of_answers_the_same_404_as_a_missing_space() {
    let s = live(Limits::default()).await;
    let ops = serde_json::to_vec(&json!({ "ops": real_ops(&["c1"]) })).unwrap();
    for tail in ["push", "pull?since=0", "package", "snapshot", "records/contacts/c1"] {
        let mut answers = Vec::new();
        for space in [SPACE, "no-such-space"] {
            let url = s.space_url(space, tail);
            let request = if tail == "push" {
                s.client.post(url).body(ops.clone())
            } else {
                s.client.get(url)
            };
            let resp = request.bearer_auth(&s.mallory).send().await.unwrap();
            let body = json_error(resp, 404).await;
            let message = body["message"].as_str().unwrap().to_string();
            assert!(message.contains(space), "the message names the space: {message}");
            answers.push((
                body["code"].clone(),
                message.replace(space, "SPACE"),
                body.as_object().unwrap().keys().cloned().collect::<Vec<_>>(),
            ));
        }
        assert_eq!(
            answers[0], answers[1],
            "{tail}: a space the user is not a member of and a missing space look the same"
        );
        assert_eq!(answers[0].0, "not_found");
    }
    assert_eq!(s.head().await, 0, "mallory's push stored nothing");
    s.assert_healthy().await;
}

#[tokio::test]
async fn a_read_only_members_push_is_refused_with_403_and_nothing_is_stored() {
    let s = live(Limits::default()).await;
    let resp = s.push(&s.alice, &real_ops(&["a1"])).await;
    assert_eq!(resp.status().as_u16(), 200);
    let before = s.head().await;
    assert_eq!(before, 1);

    let resp = s.push(&s.rita, &real_ops(&["r1", "r2"])).await;
    let body = json_error(resp, 403).await;
    assert_eq!(body["code"], "read_only", "{body}");
    assert_eq!(s.head().await, before, "the read-only member's ops were not stored");
    // The read-only member can still read.
    let resp = s.get(Some(&s.rita), &format!("/v1/spaces/{SPACE}/pull?since=0")).await;
    assert_eq!(resp.status().as_u16(), 200);
    let page: PullResponse = resp.json().await.unwrap();
    assert_eq!(page.ops.len(), 1);
    s.assert_healthy().await;
}

#[tokio::test]
async fn malformed_json_gets_400_with_a_json_error() {
    let s = live(Limits::default()).await;
    let valid = real_ops(&["c1"]);
    let mut unknown_field = valid[0].clone();
    unknown_field["extra"] = json!(1);
    let mut bad_actor = valid[0].clone();
    bad_actor["actor"] = json!("not hex");
    let mut bad_id = valid[0].clone();
    bad_id["id"] = json!("not-a-uuid");
    let mut missing = valid[0].clone();
    missing.as_object_mut().unwrap().remove("change");
    let mut negative_time = valid[0].clone();
    negative_time["time_ms"] = json!(-1);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"not json".to_vec(),
        b"{".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        b"{\"ops\": 5}".to_vec(),
        b"{\"ops\": [1, 2]}".to_vec(),
        b"{\"ops\": [], \"extra\": true}".to_vec(),
        b"{\"ops\": []} trailing".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        deep.into_bytes(),
        serde_json::to_vec(&json!({ "ops": [unknown_field] })).unwrap(),
        serde_json::to_vec(&json!({ "ops": [bad_actor] })).unwrap(),
        serde_json::to_vec(&json!({ "ops": [bad_id] })).unwrap(),
        serde_json::to_vec(&json!({ "ops": [missing] })).unwrap(),
        serde_json::to_vec(&json!({ "ops": [negative_time] })).unwrap(),
    ];
    for body in bodies {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let resp = s.push_raw(&s.alice, SPACE, body).await;
        let err = json_error(resp, 400).await;
        assert_eq!(err["code"], "bad_request", "{shown:?}: {err}");
    }
    // Admin bodies too.
    let resp = s
        .client
        .post(format!("{}/v1/admin/spaces", s.url))
        .bearer_auth(ADMIN_TOKEN)
        .body("{\"space\": ")
        .send()
        .await
        .unwrap();
    json_error(resp, 400).await;
    assert_eq!(s.head().await, 0);
    s.assert_healthy().await;
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_and_nothing_is_stored() {
    let s = live(Limits {
        max_body_bytes: 64 * 1024,
        ..Default::default()
    })
    .await;
    // A well-formed push whose JSON is just over the limit: real ops padded with whitespace.
    let ops = serde_json::to_vec(&json!({ "ops": real_ops(&["c1", "c2"]) })).unwrap();
    let mut body = b"{\"ops\":".to_vec();
    body.extend(std::iter::repeat_n(b' ', 64 * 1024));
    body.extend_from_slice(&ops[b"{\"ops\":".len()..]);
    assert!(body.len() > 64 * 1024);
    let err = json_error(s.push_raw(&s.alice, SPACE, body).await, 413).await;
    assert_eq!(err["code"], "too_large", "{err}");

    // Far over the limit (4 MiB of garbage).
    let err = json_error(s.push_raw(&s.alice, SPACE, vec![b'x'; 4 << 20]).await, 413).await;
    assert_eq!(err["code"], "too_large", "{err}");

    // Just under the limit goes through.
    let resp = s.push_raw(&s.alice, SPACE, ops).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(s.head().await, 2);
    s.assert_healthy().await;
}

#[tokio::test]
async fn more_ops_than_max_ops_per_push_gets_413_and_nothing_is_stored() {
    let s = live(Limits {
        max_ops_per_push: 3,
        ..Default::default()
    })
    .await;
    let ops = real_ops(&["c1", "c2", "c3", "c4"]);
    let err = json_error(s.push(&s.alice, &ops).await, 413).await;
    assert_eq!(err["code"], "too_large", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains('3'),
        "the message names the limit: {err}"
    );
    assert_eq!(s.head().await, 0);

    let resp = s.push(&s.alice, &ops[..3]).await;
    assert_eq!(resp.status().as_u16(), 200);
    let ack: PushResponse = resp.json().await.unwrap();
    assert_eq!(
        ack.seqs,
        vec![Some(tidemark::Seq(1)), Some(tidemark::Seq(2)), Some(tidemark::Seq(3))]
    );
    s.assert_healthy().await;
}

/// An op whose change is over `max_op_bytes` is an op-level refusal: the
/// answer must name it (`op_index`), or a client cannot move it to its
/// rejected list and its queue is blocked for good (rejected ops
/// are "never blocking the queue").
#[tokio::test]
async fn an_op_over_max_op_bytes_is_refused_alone_naming_the_op() {
    let s = live(Limits {
        max_op_bytes: 1024,
        ..Default::default()
    })
    .await;
    let small = real_ops(&["c1"]).remove(0);
    let big = {
        let replica = Replica::in_memory().unwrap();
        replica.set_package(Some(&crm_package())).unwrap();
        replica
            .put("contacts", "big", json!({"name": "x".repeat(4096)}))
            .unwrap();
        let op = replica.pending_ops(1).unwrap().remove(0).op;
        assert!(op.change.len() > 1024);
        serde_json::to_value(WireOp::from_op(&op)).unwrap()
    };
    let resp = s.push(&s.alice, &[small.clone(), big]).await;
    let answer = refused_one(resp, 1, "op_too_large").await;
    assert_eq!(
        answer.seqs[0],
        Some(tidemark::Seq(1)),
        "the other op of the batch is stored"
    );
    assert_eq!(s.head().await, 1);
    s.assert_healthy().await;
}

#[tokio::test]
async fn a_garbage_change_inside_a_valid_envelope_is_refused_alone_as_invalid_op() {
    let s = live(Limits::default()).await;
    let ops = real_ops(&["c1", "c2"]);
    let template = ops[1].clone();
    let with_change = |change: String| {
        let mut op = template.clone();
        op["change"] = json!(change);
        op
    };
    let mut rng = rand::rng();
    let mut garbage: Vec<(String, Value)> = vec![
        (
            "the automerge-panicking input".into(),
            with_change(b64(&hex::decode(PANICKING_CHANGE_HEX).unwrap())),
        ),
        ("an empty change".into(), with_change(String::new())),
        ("not base64".into(), with_change("!!! not base64 !!!".into())),
    ];
    for i in 0..40 {
        let mut bytes = vec![0u8; 1 + (rng.next_u32() % 300) as usize];
        rng.fill_bytes(&mut bytes);
        if i % 2 == 0 {
            // Past the magic bytes, into the decoder.
            bytes.splice(0..0, [0x85, 0x6f, 0x4a, 0x83]);
        }
        garbage.push((
            format!("random bytes {}", hex::encode(&bytes)),
            with_change(b64(&bytes)),
        ));
    }
    // A real change whose envelope names another actor.
    let mut other_actor = ops[1].clone();
    other_actor["actor"] = json!("00112233445566778899aabbccddeeff");
    garbage.push(("a change by another actor than the envelope's".into(), other_actor));
    // A real change of another collection's field types (a counter into a string field).
    let counter = {
        let replica = Replica::in_memory().unwrap();
        replica.set_package(Some(&crm_package())).unwrap();
        replica.increment("contacts", "c9", "visits", 1).unwrap();
        let op = replica.pending_ops(1).unwrap().remove(0).op;
        let mut wire = serde_json::to_value(WireOp::from_op(&op)).unwrap();
        wire["collection"] = json!("accounts");
        wire
    };
    garbage.push(("a counter into an accounts string field".into(), counter));
    // A record id in another Unicode normal form than NFC: replicas would file it
    // apart from the record it reads like.
    let mut decomposed = ops[1].clone();
    decomposed["record"] = json!("cafe\u{301}");
    garbage.push(("a record id in NFD".into(), decomposed));

    for (what, bad) in garbage {
        let resp = s.push(&s.alice, &[ops[0].clone(), bad]).await;
        let answer = refused_one(resp, 1, "invalid_op").await;
        assert_eq!(
            answer.seqs[0],
            Some(tidemark::Seq(1)),
            "{what}: the valid op is stored once"
        );
        assert_eq!(s.head().await, 1, "{what}: nothing of the refused op was stored");
    }
    s.assert_healthy().await;
}

#[tokio::test]
async fn the_same_op_id_pushed_again_with_other_content_is_refused_as_op_id_conflict() {
    let s = live(Limits::default()).await;
    let ops = real_ops(&["c1", "c2"]);
    let resp = s.push(&s.alice, &ops[..1]).await;
    let first: PushResponse = resp.json().await.unwrap();
    assert_eq!(first.seqs, vec![Some(tidemark::Seq(1))]);

    // The same op again is idempotent: its first seq back, no second one.
    let again: PushResponse = s.push(&s.alice, &ops[..1]).await.json().await.unwrap();
    assert_eq!(again.seqs, vec![Some(tidemark::Seq(1))]);
    assert_eq!(again.head, 1);

    // The same id with another (valid) change.
    let mut reused = ops[1].clone();
    reused["id"] = ops[0]["id"].clone();
    refused_one(s.push(&s.alice, &[reused.clone()]).await, 0, "op_id_conflict").await;

    // Other envelope content with the same id and change.
    let mut moved = ops[0].clone();
    moved["record"] = json!("elsewhere");
    refused_one(s.push(&s.alice, &[moved]).await, 0, "op_id_conflict").await;

    // Inside one batch: the reuse comes second, after a fresh op; the fresh one is stored.
    let fresh = real_ops(&["c3"]).remove(0);
    refused_one(s.push(&s.alice, &[fresh, reused]).await, 1, "op_id_conflict").await;
    assert_eq!(s.head().await, 2, "only the fresh op was stored");
    let page = s.pull(0, 10).await;
    assert_eq!(page.ops.len(), 2);
    assert_eq!(
        serde_json::to_value(&page.ops[0].op).unwrap(),
        ops[0],
        "the first content stays"
    );
    s.assert_healthy().await;
}

#[tokio::test]
async fn a_huge_pull_limit_is_clamped_and_a_non_numeric_limit_gets_400() {
    let s = live(Limits {
        max_pull_page: 3,
        ..Default::default()
    })
    .await;
    let resp = s.push(&s.alice, &real_ops(&["c1", "c2", "c3", "c4", "c5"])).await;
    assert_eq!(resp.status().as_u16(), 200);

    let page = s.pull(0, 999_999_999).await;
    assert!(page.ops.len() <= 3, "the page is clamped: {} ops", page.ops.len());
    assert_eq!(page.ops.len(), 3);
    assert_eq!(page.end, 3);
    assert!(page.more);
    let page = s.pull(3, u64::MAX).await;
    assert_eq!(page.ops.len(), 2);
    assert!(!page.more);
    // since beyond the head: an empty page, not an error.
    let page = s.pull(u64::MAX, 10).await;
    assert!(page.ops.is_empty());

    for query in [
        "limit=abc",
        "since=abc",
        "since=-1",
        "limit=-5",
        "limit=1.5",
        "since=%ZZ",
        "limit=%FF",
    ] {
        let resp = s.get(Some(&s.alice), &format!("/v1/spaces/{SPACE}/pull?{query}")).await;
        let err = json_error(resp, 400).await;
        assert_eq!(err["code"], "bad_request", "{query}: {err}");
    }
    let resp = s
        .get(Some(&s.alice), &format!("/v1/spaces/{SPACE}/snapshot?limit=abc"))
        .await;
    json_error(resp, 400).await;
    let resp = s
        .get(Some(&s.alice), &format!("/v1/spaces/{SPACE}/snapshot?after=no-cursor"))
        .await;
    json_error(resp, 400).await;
    s.assert_healthy().await;
}

/// A stored op that does not load (written behind the validation, as a bug or a
/// damaged disk could) quarantines its record alone: reads of it answer 409
/// naming it, and the rest of the space reads, snapshots and syncs.
#[tokio::test]
async fn a_record_that_does_not_load_is_quarantined_and_the_rest_of_the_space_works() {
    use tidemark::record::ChangeHeader;
    use tidemark::server::store::{NewOp, ServerStore, StoredOp};
    let s = live(Limits::default()).await;
    let good = real_ops(&["c1"]);
    s.push(&s.alice, &good).await;
    let mut bad: tidemark::Op = serde_json::from_value::<WireOp>(real_ops(&["bad"]).remove(0))
        .unwrap()
        .to_op()
        .unwrap();
    bad.change = hex::decode(PANICKING_CHANGE_HEX).unwrap();
    let header = ChangeHeader {
        hash: [7; 32],
        actor: bad.actor.0.to_vec(),
        seq: 1,
        start_op: 1,
        max_op: 1,
        deps: Vec::new(),
        named: Vec::new(),
    };
    let stored = StoredOp {
        op: bad,
        user: "alice".into(),
    };
    let results = s.service.store().append(SPACE, &[NewOp { stored, header }]).unwrap();
    assert_eq!(results, [Ok(tidemark::Seq(2))]);
    s.push(&s.alice, &real_ops(&["c2"])).await;

    let resp = s.get(Some(&s.alice), "/v1/spaces/crm/records/contacts/bad").await;
    let err = json_error(resp, 409).await;
    assert_eq!(err["code"], "record_quarantined", "{err}");
    assert!(err["message"].as_str().unwrap().contains("contacts/bad"), "{err}");
    for id in ["c1", "c2"] {
        let resp = s
            .get(Some(&s.alice), &format!("/v1/spaces/crm/records/contacts/{id}"))
            .await;
        assert_eq!(resp.status().as_u16(), 200, "{id}");
    }
    let page = s.pull(0, 100).await;
    assert_eq!(page.end, 3, "the page covers the quarantined op's seq");
    assert_eq!(page.ops.len(), 2, "but does not serve it");
    let snapshot = s.get(Some(&s.alice), "/v1/spaces/crm/snapshot").await;
    assert_eq!(snapshot.status().as_u16(), 200);

    let (service, token) = (s.service.clone(), s.alice.clone());
    let reader = tokio::task::spawn_blocking(move || {
        let reader = Replica::in_memory().unwrap();
        let remote = tidemark::server::local::LocalRemote::new(service, token, SPACE);
        tidemark::sync::Round::new(&reader, Default::default())
            .run_blocking(|r| remote.call_blocking(r))
            .unwrap();
        reader.list("contacts", None, 10).unwrap().len()
    })
    .await
    .unwrap();
    assert_eq!(reader, 2);
    refused_one(s.push(&s.alice, &real_ops(&["bad"])).await, 0, "invalid_op").await;
    s.assert_healthy().await;
}
