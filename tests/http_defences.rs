//! The server's defences against load, against a live HTTP server: pages that
//! keep to a byte budget whatever the op sizes, pushes answered before their
//! body is read, deadlines for slow and unfinished requests.

#![cfg(all(feature = "server", feature = "http-client"))]

mod common;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tidemark::Replica;
use tidemark::protocol::message::{PROTOCOL_REVISION, PullResponse, REVISION_HEADER, SnapshotResponse};
use tidemark::protocol::{RoundSummary, SessionConfig};
use tidemark::remote::http::HttpRemote;
use tidemark::server::Limits;
use tidemark::sync::Round;

use common::live::{Live, SPACE, live, live_with};
use std::time::{Duration, Instant};
use tidemark::server::ServeConfig;
use tidemark::server::store::redb::RedbStore;

const PAGE_BYTES: usize = 1 << 20;
const BIG_OPS: usize = 24;

fn decoded_len(b64: &str) -> usize {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap().len()
}

async fn get_json<T: serde::de::DeserializeOwned>(live: &Live, path: &str) -> T {
    let resp = live.get(Some(&live.alice), path).await;
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    resp.json().await.unwrap()
}

async fn sync(live: &Live, replica: &Replica) -> RoundSummary {
    let remote = HttpRemote::new(&live.url, &live.alice, SPACE).unwrap();
    Round::new(replica, SessionConfig::default())
        .run(&remote)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_of_large_ops_keep_to_the_byte_budget_and_clients_catch_up_through_them() {
    let live = live(Limits {
        max_page_bytes: PAGE_BYTES,
        ..Limits::default()
    })
    .await;
    let writer = Replica::in_memory().unwrap();
    writer.put("contacts", "small", json!({"name": "Ada"})).unwrap();
    sync(&live, &writer).await;
    let behind = Replica::in_memory().unwrap();
    sync(&live, &behind).await;

    // Ops of about 190 KB each (less once compressed): several times the page budget.
    let mut rng = StdRng::seed_from_u64(7);
    for i in 0..BIG_OPS {
        let name: String = (0..190_000).map(|_| rng.random_range(b'a'..=b'z') as char).collect();
        writer
            .put("contacts", &format!("big{i}"), json!({ "name": name }))
            .unwrap();
    }
    assert_eq!(sync(&live, &writer).await.pushed, BIG_OPS as u64);

    // Every pull page keeps to the budget (one op over it may come alone).
    let (mut since, mut pages, mut total) = (tidemark::Seq::ZERO, 0, 0);
    loop {
        let page: PullResponse = get_json(&live, &format!("/v1/spaces/{SPACE}/pull?since={since}&limit=2000")).await;
        let bytes: usize = page.ops.iter().map(|p| decoded_len(&p.op.change)).sum();
        assert!(
            bytes <= PAGE_BYTES || page.ops.len() == 1,
            "a pull page of {} ops holds {bytes} change bytes",
            page.ops.len()
        );
        assert!(!page.ops.is_empty(), "a page with more after it holds at least one op");
        total += bytes;
        pages += 1;
        since = page.end;
        if !page.more {
            break;
        }
    }
    assert_eq!(since, 1 + BIG_OPS as u64);
    assert!(total > 4 * PAGE_BYTES, "the ops hold {total} bytes");
    assert!(pages > total / PAGE_BYTES, "{total} bytes of ops came in {pages} pages");

    // So does every snapshot page.
    let mut after: Option<String> = None;
    let (mut docs, mut pages, mut total) = (0, 0, 0);
    loop {
        let cursor = after
            .as_deref()
            .map(|a| format!("&after={}", a.replace('\n', "%0A")))
            .unwrap_or_default();
        let page: SnapshotResponse = get_json(&live, &format!("/v1/spaces/{SPACE}/snapshot?limit=2000{cursor}")).await;
        let bytes: usize = page.docs.iter().map(|d| decoded_len(&d.doc)).sum();
        assert!(
            bytes <= PAGE_BYTES || page.docs.len() == 1,
            "a snapshot page of {} documents holds {bytes} bytes",
            page.docs.len()
        );
        docs += page.docs.len();
        total += bytes;
        pages += 1;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(docs, 1 + BIG_OPS);
    assert!(total > 2 * PAGE_BYTES, "the documents hold {total} bytes");
    assert!(
        pages > total / PAGE_BYTES,
        "{total} bytes of documents came in {pages} pages"
    );

    // A replica that was behind pulls through the pages; a new one bootstraps
    // through the snapshot pages; both end with the writer's view.
    let summary = sync(&live, &behind).await;
    assert_eq!(summary.pulled, BIG_OPS as u64);
    let fresh = Replica::in_memory().unwrap();
    let summary = sync(&live, &fresh).await;
    assert_eq!(summary.snapshot_docs, 1 + BIG_OPS as u64);
    let view = writer.view_rows().unwrap();
    assert_eq!(behind.view_rows().unwrap(), view);
    assert_eq!(fresh.view_rows().unwrap(), view);
    let body: Value = get_json(&live, &format!("/v1/spaces/{SPACE}/records/contacts/big3")).await;
    assert_eq!(body["name"].as_str().map(str::len), Some(190_000));
}

/// Sends a push's headers announcing `announced` body bytes and only the first
/// KiB of it, then reads the answer's status line (or None if none comes).
async fn push_head_only(live: &Live, token: &str, space: &str, announced: usize) -> Option<String> {
    Some(
        answer_to_head_only(live, token, space, announced)
            .await?
            .lines()
            .next()?
            .to_string(),
    )
}

/// [`push_head_only`]'s whole answer (its first 4 KiB).
async fn answer_to_head_only(live: &Live, token: &str, space: &str, announced: usize) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = live.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/spaces/{space}/push HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {announced}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b'{'; 1024]).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut answer)).await;
    match read {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&answer[..n]).into_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_is_answered_from_its_path_and_token_before_its_body_is_read() {
    let live = live(Limits::default()).await;
    let twenty_mb = 20 << 20;
    let started = std::time::Instant::now();
    let stranger = push_head_only(&live, &live.mallory, SPACE, twenty_mb).await;
    assert_eq!(stranger.as_deref(), Some("HTTP/1.1 404 Not Found"), "a non-member");
    let reader = push_head_only(&live, &live.rita, SPACE, twenty_mb).await;
    assert_eq!(reader.as_deref(), Some("HTTP/1.1 403 Forbidden"), "a read-only member");
    let nobody = push_head_only(&live, "not-a-token", SPACE, twenty_mb).await;
    assert_eq!(nobody.as_deref(), Some("HTTP/1.1 401 Unauthorized"), "a bad token");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "three refusals without the bodies took {:?}",
        started.elapsed()
    );
    // A writer's push is read: it waits for the body that never comes.
    let writer = push_head_only(&live, &live.alice, SPACE, twenty_mb).await;
    assert_eq!(writer, None, "the writer's push waits for its body");
    live.assert_healthy().await;
}

/// Opens a connection and sends the start of a request's headers, never their end.
async fn half_sent(addr: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /v1/health HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    stream
}

/// Whether the server closed the connection (end of stream or reset) within `wait`.
async fn closed_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // hyper may answer 408 before it closes.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_connections_are_closed_by_their_deadline_and_health_answers_throughout() {
    let config = ServeConfig {
        header_timeout: Duration::from_secs(2),
        max_connections: 400,
        ..ServeConfig::default()
    };
    let live = live_with(RedbStore::in_memory().unwrap(), Limits::default(), config).await;
    let addr = live.url.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for _ in 0..300 {
        slow.push(half_sent(&addr).await);
    }
    // Health answers at once, again and again, while the 300 hold their slots.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        let asked = Instant::now();
        live.assert_healthy().await;
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "health took {:?}",
            asked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every slow connection is closed by its header deadline.
    for (i, stream) in slow.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(5)).await,
            "slow connection {i} is still open"
        );
    }
    live.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_never_finishes_gets_408_and_stores_nothing() {
    let config = ServeConfig {
        request_timeout: Duration::from_secs(1),
        ..ServeConfig::default()
    };
    let live = live_with(RedbStore::in_memory().unwrap(), Limits::default(), config).await;
    let started = Instant::now();
    let answer = answer_to_head_only(&live, &live.alice, SPACE, 1 << 20)
        .await
        .unwrap_or_default();
    assert_eq!(answer.lines().next(), Some("HTTP/1.1 408 Request Timeout"));
    // Like every other answer, it names the server's protocol revision.
    let revision = format!("{REVISION_HEADER}: {PROTOCOL_REVISION}");
    assert!(
        answer.lines().any(|line| line.eq_ignore_ascii_case(&revision)),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    assert_eq!(live.head().await, 0, "nothing was stored");
    live.assert_healthy().await;
}
