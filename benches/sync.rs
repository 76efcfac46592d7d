//! Sync over loopback HTTP, against a real `tidemark` server core on redb:
//!
//! - `initial_sync_http/100k`: a fresh file replica bootstraps a 100k-record space
//!   (snapshot pages, then the ops after them). Target ≥ 100,000 records/s.
//! - `initial_sync_http/100k_cli_login`: the same through `tidemark login` of a
//!   fresh store, process start included. Target ≥ 60,000 records/s.
//! - `initial_sync_http/parts_alone` and `/ratio_to_parts` (printed): the same
//!   pages downloaded and written by redb alone (`sync/parts.rs`), taking turns
//!   with the library's bootstrap: the floor of this machine.
//! - `incremental_100/into_100k` and `/into_1k` (printed, not criterion): 100
//!   records changed elsewhere are synced into a replica holding 100k (or 1k)
//!   records, round for round in one loop, so the edited records' histories
//!   match. Target ≤ 10 ms, and the 100k case ≤ 1.3× the 1k case. Each round
//!   also times `_parts_alone`: the same pull by HTTP, automerge and redb alone.
//! - `server_ingest/4_clients`: 4 concurrent HTTP clients push 500-op batches of
//!   fresh ops into the redb store. Target ≥ 20,000 ops/s.
//!
//! - `noop_sync/library` and `/cli`: a round with nothing to do, through the
//!   library and through the `tidemark sync` process. Target (library) ≤ 2 ms.
//!
//! `cargo bench --bench sync`; `cargo bench --bench sync -- noop_sync` for one group.

mod common;
#[path = "sync/parts.rs"]
mod parts;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tidemark::Replica;
use tidemark::protocol::SessionConfig;
use tidemark::protocol::message::{CreateSpace, Grant, PushRequest, WireOp};
use tidemark::remote::Remote;
use tidemark::remote::http::HttpRemote;
use tidemark::replica::Edit;
use tidemark::server::local::LocalRemote;
use tidemark::server::store::redb::RedbStore;
use tidemark::server::{Limits, Service, http};
use tidemark::sync::Round;

type Svc = Arc<Service<RedbStore>>;

struct Fixture {
    _dir: tempfile::TempDir,
    service: Svc,
    url: String,
    tokens: Vec<String>,
    rt: tokio::runtime::Runtime,
}

fn fixture(spaces: &[(&str, usize)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let service = Arc::new(
        Service::new(
            RedbStore::open(dir.path().join("server")).unwrap(),
            Limits::default(),
            None,
        )
        .unwrap(),
    );
    let mut tokens = Vec::new();
    for user in ["writer", "reader", "c1", "c2", "c3", "c4"] {
        tokens.push(service.add_user(user).unwrap().token);
    }
    for (space, records) in spaces {
        service
            .create_space(&CreateSpace {
                space: space.to_string(),
                package: None,
            })
            .unwrap();
        for user in ["writer", "reader", "c1", "c2", "c3", "c4"] {
            service
                .grant(&Grant {
                    user: user.into(),
                    space: space.to_string(),
                    read_only: false,
                })
                .unwrap();
        }
        seed(&service, &tokens[0], space, *records);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(http::serve(listener, service.clone(), std::future::pending()));
        url
    });
    Fixture {
        _dir: dir,
        service,
        url,
        tokens,
        rt,
    }
}

fn five_fields(i: usize) -> serde_json::Value {
    json!({"name": format!("name {i}"), "email": format!("n{i}@example.com"), "n": i, "vip": i % 2 == 0, "city": "Paris"})
}

/// Writes `records` records into `space` through a writer replica and materializes them.
fn seed(service: &Svc, token: &str, space: &str, records: usize) {
    let writer = Replica::in_memory().unwrap();
    let remote = LocalRemote::new(service.clone(), token.to_string(), space);
    for start in (0..records).step_by(5000) {
        let edits = (start..(start + 5000).min(records))
            .map(|i| Edit::put("contacts", &format!("r{i:07}"), five_fields(i)).unwrap())
            .collect();
        writer.apply_edits(edits).unwrap();
        Round::new(&writer, SessionConfig::default())
            .run_blocking(|r| remote.call_blocking(r))
            .unwrap();
    }
    service.materialize(space).unwrap();
}

fn bench_initial(c: &mut Criterion) {
    let n = common::scaled(100_000);
    let f = fixture(&[("big", n)]);
    let mut group = c.benchmark_group("initial_sync_http");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("100k", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| bootstrap_replica(&f, n)).sum())
    });
    // The same through the CLI: `tidemark login` of a fresh store, process start included.
    group.bench_function("100k_cli_login", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let started = Instant::now();
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
                    .arg("--store")
                    .arg(dir.path().join("cli.db"))
                    .args(["login", "--server", &f.url, "--user", "reader", "--token", &f.tokens[1]])
                    .args(["--space", "big"])
                    .output()
                    .unwrap();
                total += started.elapsed();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                let said = String::from_utf8_lossy(&out.stdout);
                assert!(said.contains(&format!("downloaded {n} record(s)")), "{said}");
            }
            total
        })
    });
    group.finish();
    // The floor, side by side: the same snapshot pages downloaded, and their
    // documents, rows and log entries written by redb alone, one commit per page
    // while the next page downloads (see `sync/parts.rs`). Taking turns, so
    // that both meet the machine in the same state.
    let pairs = if common::quick() { 2 } else { 10 };
    let (mut synced, mut alone) = (Vec::new(), Vec::new());
    for pair in 0..pairs {
        if pair % 2 == 0 {
            synced.push(bootstrap_replica(&f, n));
            alone.push(bootstrap_alone(&f, n));
        } else {
            alone.push(bootstrap_alone(&f, n));
            synced.push(bootstrap_replica(&f, n));
        }
    }
    synced.sort();
    alone.sort();
    let (synced, alone) = (synced[pairs / 2], alone[pairs / 2]);
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "initial_sync_http/parts_alone: median {alone:.2?}, {:.0} records/s (HTTP pages, redb writing docs, rows and log)",
        rate(alone)
    );
    println!(
        "initial_sync_http/ratio_to_parts: library {:.2}x the parts alone ({:.0} against {:.0} records/s, medians of {pairs} turns each)",
        synced.as_secs_f64() / alone.as_secs_f64(),
        rate(synced),
        rate(alone)
    );
}

/// One bootstrap of a fresh file replica from the `big` space; its time.
fn bootstrap_replica(f: &Fixture, n: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(dir.path().join("r.db")).unwrap();
    let remote = HttpRemote::new(&f.url, &f.tokens[1], "big").unwrap();
    let started = Instant::now();
    f.rt.block_on(Round::new(&replica, SessionConfig::default()).run(&remote))
        .unwrap();
    let took = started.elapsed();
    assert_eq!(replica.status().unwrap().pulled, n as u64);
    took
}

/// The same pages by the parts alone; its time.
fn bootstrap_alone(f: &Fixture, n: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let remote = HttpRemote::new(&f.url, &f.tokens[1], "big").unwrap();
    let started = Instant::now();
    let alone = parts::MergeAlone::bootstrap(&dir.path().join("alone.db"), &f.rt, &remote);
    let took = started.elapsed();
    assert_eq!(alone.len(), n as u64);
    took
}

/// 100 changed records synced into a replica of 100k records and into one of
/// 1k, round for round in one loop: both edit the same 1,000 records in the
/// same order, so at every round the edited records carry the same history in
/// each (a criterion group would run each case a different number of times,
/// and histories grow with every round). Prints the median and p95 of each and
/// the ratio of the medians. Run by `cargo bench --bench sync` whatever the filter.
fn bench_incremental(_: &mut Criterion) {
    let rounds = if common::quick() { 3 } else { 60 };
    let f = fixture(&[("big", common::scaled(100_000)), ("small", 1_000)]);
    struct Case {
        name: &'static str,
        _dir: tempfile::TempDir,
        reader: Replica,
        remote: HttpRemote,
        writer: Replica,
        writer_remote: LocalRemote<RedbStore>,
        space: &'static str,
        alone: parts::MergeAlone,
        times: Vec<Duration>,
        alone_times: Vec<Duration>,
    }
    let mut cases: Vec<Case> = [("small", "into_1k"), ("big", "into_100k")]
        .into_iter()
        .map(|(space, name)| {
            let dir = tempfile::tempdir().unwrap();
            let reader = Replica::open(dir.path().join("r.db")).unwrap();
            let remote = HttpRemote::new(&f.url, &f.tokens[1], space).unwrap();
            f.rt.block_on(Round::new(&reader, SessionConfig::default()).run(&remote))
                .unwrap();
            let alone = parts::MergeAlone::bootstrap(&dir.path().join("alone.db"), &f.rt, &remote);
            Case {
                name,
                _dir: dir,
                reader,
                remote,
                writer: Replica::in_memory().unwrap(),
                writer_remote: LocalRemote::new(f.service.clone(), f.tokens[0].clone(), space),
                space,
                alone,
                times: Vec::with_capacity(rounds),
                alone_times: Vec::with_capacity(rounds),
            }
        })
        .collect();
    for round in 1..=rounds {
        for case in &mut cases {
            let edits = (0..100)
                .map(|k| {
                    let i = (round * 100 + k) % 1_000;
                    Edit::put("contacts", &format!("r{i:07}"), json!({"round": round})).unwrap()
                })
                .collect();
            case.writer.apply_edits(edits).unwrap();
            Round::new(&case.writer, SessionConfig::default())
                .run_blocking(|r| case.writer_remote.call_blocking(r))
                .unwrap();
            // The server materializes what it took in the background; on this
            // machine it would share the client's cores, so it is done first.
            f.service.materialize(case.space).unwrap();
            // The parts alone and the sync take turns going first, so neither
            // always meets the caches the other left.
            let alone_first = round % 2 == 0;
            if alone_first {
                case.alone_times.push(pull_alone(&f.rt, &mut case.alone, &case.remote));
            }
            let started = Instant::now();
            let s =
                f.rt.block_on(Round::new(&case.reader, SessionConfig::default()).run(&case.remote))
                    .unwrap();
            case.times.push(started.elapsed());
            assert!(s.pulled >= 100, "{s:?}");
            if !alone_first {
                case.alone_times.push(pull_alone(&f.rt, &mut case.alone, &case.remote));
            }
        }
    }
    let mut medians = Vec::new();
    for case in &mut cases {
        case.times.sort();
        case.alone_times.sort();
        let (median, p95) = (case.times[rounds / 2], case.times[rounds * 95 / 100]);
        let alone = case.alone_times[rounds / 2];
        println!(
            "incremental_100/{}: median {median:.1?}, p95 {p95:.1?} over {rounds} rounds",
            case.name
        );
        println!(
            "incremental_100/{}_parts_alone: median {alone:.1?} (HTTP pull, automerge merges, one redb commit); sync {:.2}x the parts",
            case.name,
            median.as_secs_f64() / alone.as_secs_f64()
        );
        medians.push(median.as_secs_f64());
    }
    println!(
        "incremental_100/ratio: into_100k {:.2}x into_1k (medians, same rounds)",
        medians[1] / medians[0]
    );
}

/// One pull merged by the parts alone (see `sync/parts.rs`); its time.
fn pull_alone(rt: &tokio::runtime::Runtime, alone: &mut parts::MergeAlone, remote: &HttpRemote) -> Duration {
    let started = Instant::now();
    let pulled = rt.block_on(alone.pull(remote));
    let took = started.elapsed();
    assert!(pulled >= 100, "{pulled}");
    took
}

fn bench_ingest(c: &mut Criterion) {
    const CLIENTS: usize = 4;
    let per_client = common::scaled(5_000);
    const BATCH: usize = 500;
    let f = fixture(&[("ingest", 0)]);
    let mut group = c.benchmark_group("server_ingest");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements((CLIENTS * per_client) as u64));
    let mut round = 0;
    group.bench_function("4_clients", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                // Fresh ops each iteration (re-pushed ids would only hit the dedupe path).
                let batches: Vec<Vec<PushRequest>> = (0..CLIENTS)
                    .map(|c| {
                        let r = Replica::in_memory().unwrap();
                        let edits = (0..per_client)
                            .map(|i| Edit::put("contacts", &format!("c{c}-{round}-{i}"), five_fields(i)).unwrap())
                            .collect();
                        r.apply_edits(edits).unwrap();
                        r.pending_ops(usize::MAX)
                            .unwrap()
                            .chunks(BATCH)
                            .map(|chunk| PushRequest {
                                ops: chunk.iter().map(|p| WireOp::from_op(&p.op)).collect(),
                            })
                            .collect()
                    })
                    .collect();
                let started = Instant::now();
                f.rt.block_on(async {
                    let mut tasks = Vec::new();
                    for (c, pushes) in batches.into_iter().enumerate() {
                        let remote = HttpRemote::new(&f.url, &f.tokens[2 + c], "ingest").unwrap();
                        tasks.push(tokio::spawn(async move {
                            for push in pushes {
                                remote.call(tidemark::protocol::Request::Push(push)).await.unwrap();
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                });
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
}

/// A round with nothing to do: nothing pending, nothing new on the server.
/// `library`: one `Round` over loopback HTTP on a replica of 1k records;
/// `cli`: the `tidemark sync` process on a store of the same space, from
/// start to exit.
fn bench_noop(c: &mut Criterion) {
    let f = fixture(&[("small", 1_000)]);
    let mut group = c.benchmark_group("noop_sync");
    group.sample_size(50).measurement_time(Duration::from_secs(10));
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(dir.path().join("r.db")).unwrap();
    let remote = HttpRemote::new(&f.url, &f.tokens[1], "small").unwrap();
    f.rt.block_on(Round::new(&replica, SessionConfig::default()).run(&remote))
        .unwrap();
    group.bench_function("library", |b| {
        b.iter(|| {
            let s =
                f.rt.block_on(Round::new(&replica, SessionConfig::default()).run(&remote))
                    .unwrap();
            assert_eq!((s.pushed, s.pulled), (0, 0));
        })
    });
    drop(replica);

    let store = dir.path().join("cli.db");
    let tidemark = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .arg("--store")
            .arg(&store)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    tidemark(&[
        "login",
        "--server",
        &f.url,
        "--user",
        "reader",
        "--token",
        &f.tokens[1],
        "--space",
        "small",
    ]);
    group.bench_function("cli", |b| b.iter(|| tidemark(&["sync"])));
    group.finish();
}

criterion_group!(benches, bench_initial, bench_incremental, bench_ingest, bench_noop);
criterion_main!(benches);
