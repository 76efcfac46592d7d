//! What an operator probes and scrapes on a live server: readiness and the
//! Prometheus metrics. (A failing store, answered 503, is in `full_disk.rs`.)

#![cfg(all(feature = "server", feature = "http-client"))]

mod common;

use serde_json::Value;
use tidemark::server::Limits;

use common::live::*;

#[tokio::test]
async fn readiness_answers_200_while_the_store_works_and_needs_no_token() {
    let s = live(Limits::default()).await;
    let resp = s.get(None, "/v1/ready").await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["ready"], true, "{body}");
}

/// The value of the sample `name` (with its labels, as exposed), if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_by_route_pattern_pushes_ops_refusals_and_errors() {
    let s = live(Limits::default()).await;
    let mut ops = real_ops(&["c1", "c2", "c3"]);
    ops[2]["id"] = serde_json::json!("00000000-0000-0000-0000-000000000000");
    let answer = refused_one(s.push(&s.alice, &ops).await, 2, "invalid_op").await;
    assert_eq!(answer.seqs.iter().flatten().count(), 2);
    s.pull(0, 10).await;
    assert_eq!(
        s.get(Some("tm1.nope.nope"), "/v1/spaces/crm/pull")
            .await
            .status()
            .as_u16(),
        401
    );
    assert_eq!(s.get(None, "/v1/no/such/route").await.status().as_u16(), 404);

    let resp = s.get(None, "/metrics").await;
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = resp.text().await.unwrap();
    let count = |name: &str| sample(&text, name).unwrap_or_else(|| panic!("no sample {name} in:\n{text}"));
    assert_eq!(count("tidemark_pushes_total"), 1.0);
    assert_eq!(count("tidemark_ops_accepted_total"), 2.0);
    assert_eq!(count(r#"tidemark_ops_refused_total{code="invalid_op"}"#), 1.0);
    assert_eq!(count(r#"tidemark_http_errors_total{code="unauthorized"}"#), 1.0);
    assert_eq!(count(r#"tidemark_http_errors_total{code="not_found"}"#), 1.0);
    assert_eq!(count("tidemark_store_up"), 1.0);
    // Routes are labelled by pattern: a space or record name never becomes a label.
    assert_eq!(
        count(r#"tidemark_http_requests_total{route="/v1/spaces/{space}/push",method="POST",status="200"}"#),
        1.0
    );
    assert_eq!(
        count(r#"tidemark_http_requests_total{route="unmatched",method="GET",status="404"}"#),
        1.0
    );
    assert!(!text.contains("crm"), "no space name in the labels:\n{text}");
    // The pull from 0 was 2 ops behind the head.
    assert_eq!(count("tidemark_pull_lag_ops_count"), 1.0);
    assert_eq!(count("tidemark_pull_lag_ops_sum"), 2.0);
    assert!(count(r#"tidemark_http_request_duration_seconds_count{route="/v1/spaces/{space}/pull"}"#) >= 2.0);
}
