//! The server's stores side by side in one run: redb (one process), PostgreSQL
//! with one process and with two processes on one database. A "process" here
//! is a whole server (service, store with its own connection pool, HTTP
//! front on its own port) inside the bench process; two of them share
//! nothing but the database, as two `tidemark serve --postgres` would.
//!
//! - `ingest/<backend>`: 4 HTTP clients (spread over the processes) push
//!   500-op batches of fresh ops. Goal on PostgreSQL with two processes:
//!   ≥ 20,000 ops/s. Printed before it, the limit of the parts: PostgreSQL
//!   alone writing the rows of the same appends under the space lock
//!   (`benches/postgres/append.sql` through `pgbench`, 4 clients).
//! - `initial_sync/<backend>`: a fresh file replica bootstraps a 100k-record space.
//! - `incremental_100/<backend>`: 100 changed records synced into a 100k replica.
//! - propagation (printed, not criterion): two replicas with background sync at
//!   its defaults (an edit nudges, as an app does; held live pulls), each on
//!   its own process; the time from `put` on one to the record readable on the
//!   other, median and p95 of 40 edits. Target ≤ 1 s median, goal ≤ 200 ms.
//!
//! PostgreSQL from `TIDEMARK_TEST_POSTGRES` (an admin URL, default
//! postgres://postgres@127.0.0.1:5432/postgres); each run makes its own
//! databases and drops them. `cargo bench --bench backends`; `BACKENDS_RECORDS`
//! sets the space size (default 100000).

#[path = "../tests/common/postgres.rs"]
mod postgres;

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tidemark::Replica;
use tidemark::protocol::message::{CreateSpace, Grant, PushRequest, WireOp};
use tidemark::protocol::{Request, SessionConfig};
use tidemark::remote::Remote;
use tidemark::remote::http::HttpRemote;
use tidemark::replica::Edit;
use tidemark::server::local::LocalRemote;
use tidemark::server::store::postgres::PgStore;
use tidemark::server::store::redb::RedbStore;
use tidemark::server::store::{NewOp, ServerStore, StoredOp};
use tidemark::server::{Limits, Service, http};
use tidemark::sync::{BackgroundConfig, BackgroundSync, Round};

const USERS: [&str; 6] = ["writer", "reader", "c1", "c2", "c3", "c4"];

fn records() -> usize {
    std::env::var("BACKENDS_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| common::scaled(100_000))
}

/// Ops each of the 4 ingest clients pushes per iteration.
fn per_client() -> usize {
    common::scaled(5_000)
}

type Seed = Box<dyn Fn(&str, usize)>;
type Append = Box<dyn Fn(&[NewOp]) + Send + Sync>;

/// One deployment: its server processes' URLs, the users' tokens, and a
/// runtime that serves them.
struct Deployment {
    name: &'static str,
    urls: Vec<String>,
    tokens: Vec<String>,
    rt: tokio::runtime::Runtime,
    /// Seeds a space with records through the first process.
    seed: Seed,
    /// Each process's store appending ops to space `ingest` directly: the limit
    /// the store sets, without HTTP and the service's checks.
    append: Vec<Append>,
    _keep: Box<dyn std::any::Any>,
}

fn five_fields(i: usize) -> serde_json::Value {
    json!({"name": format!("name {i}"), "email": format!("n{i}@example.com"), "n": i, "vip": i % 2 == 0, "city": "Paris"})
}

fn deploy<S: ServerStore>(name: &'static str, stores: Vec<S>, keep: Box<dyn std::any::Any>) -> Deployment {
    let services: Vec<Arc<Service<S>>> = stores
        .into_iter()
        .map(|s| Arc::new(Service::new(s, Limits::default(), None).unwrap()))
        .collect();
    let first = services[0].clone();
    let tokens: Vec<String> = USERS.iter().map(|u| first.add_user(u).unwrap().token).collect();
    for space in ["ingest", "big", "watch"] {
        first
            .create_space(&CreateSpace {
                space: space.into(),
                package: None,
            })
            .unwrap();
        for user in USERS {
            first
                .grant(&Grant {
                    user: user.into(),
                    space: space.into(),
                    read_only: false,
                })
                .unwrap();
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let urls = services
        .iter()
        .map(|service| {
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let url = format!("http://{}", listener.local_addr().unwrap());
                tokio::spawn(http::serve(listener, service.clone(), std::future::pending()));
                url
            })
        })
        .collect();
    let append = services
        .iter()
        .map(|service| {
            let service = service.clone();
            Box::new(move |ops: &[NewOp]| {
                for result in service.store().append("ingest", ops).unwrap() {
                    result.unwrap();
                }
            }) as Append
        })
        .collect();
    let writer_token = tokens[0].clone();
    let seed = Box::new(move |space: &str, n: usize| {
        let writer = Replica::in_memory().unwrap();
        let remote = LocalRemote::new(first.clone(), writer_token.clone(), space);
        for start in (0..n).step_by(5000) {
            let edits = (start..(start + 5000).min(n))
                .map(|i| Edit::put("contacts", &format!("r{i:07}"), five_fields(i)).unwrap())
                .collect();
            writer.apply_edits(edits).unwrap();
            Round::new(&writer, SessionConfig::default())
                .run_blocking(|r| remote.call_blocking(r))
                .unwrap();
        }
        first.materialize(space).unwrap();
    });
    Deployment {
        name,
        urls,
        tokens,
        rt,
        seed,
        append,
        _keep: keep,
    }
}

fn deployments(pg: &postgres::TestPostgres) -> Vec<Deployment> {
    let dir = tempfile::tempdir().unwrap();
    let redb = RedbStore::open(dir.path().join("server")).unwrap();
    let one = pg.database();
    let two = pg.database();
    vec![
        deploy("redb", vec![redb], Box::new(dir)),
        deploy(
            "postgres_1_process",
            vec![PgStore::connect(&one).unwrap()],
            Box::new(()),
        ),
        deploy(
            "postgres_2_processes",
            vec![PgStore::connect(&two).unwrap(), PgStore::connect(&two).unwrap()],
            Box::new(()),
        ),
    ]
}

fn bench_ingest(c: &mut Criterion, deployments: &[Deployment]) {
    let mut group = c.benchmark_group("ingest");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(4 * per_client() as u64));
    for d in deployments {
        let mut round = 0;
        group.bench_function(d.name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    // Fresh ops each iteration (re-pushed ids would only hit the dedupe path).
                    let batches: Vec<Vec<PushRequest>> = ingest_batches(round)
                        .into_iter()
                        .map(|client| {
                            client
                                .iter()
                                .map(|batch| PushRequest {
                                    ops: batch.iter().map(WireOp::from_op).collect(),
                                })
                                .collect()
                        })
                        .collect();
                    let started = Instant::now();
                    d.rt.block_on(async {
                        let mut tasks = Vec::new();
                        for (c, pushes) in batches.into_iter().enumerate() {
                            let url = &d.urls[c % d.urls.len()];
                            let remote = HttpRemote::new(url, &d.tokens[2 + c], "ingest").unwrap();
                            tasks.push(tokio::spawn(async move {
                                for push in pushes {
                                    remote.call(Request::Push(push)).await.unwrap();
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
    }
    group.finish();
}

/// 4 clients' worth of fresh 500-op push batches of 5,000 ops each.
fn ingest_batches(round: usize) -> Vec<Vec<Vec<tidemark::Op>>> {
    (0..4)
        .map(|c| {
            let r = Replica::in_memory().unwrap();
            let edits = (0..per_client())
                .map(|i| Edit::put("contacts", &format!("c{c}-{round}-{i}"), five_fields(i)).unwrap())
                .collect();
            r.apply_edits(edits).unwrap();
            let ops: Vec<tidemark::Op> = r.pending_ops(usize::MAX).unwrap().into_iter().map(|p| p.op).collect();
            ops.chunks(500).map(<[tidemark::Op]>::to_vec).collect()
        })
        .collect()
}

/// The same load as `ingest`, straight into the stores from 4 threads.
fn bench_store_alone(c: &mut Criterion, deployments: &[Deployment]) {
    let mut group = c.benchmark_group("ingest_store_alone");
    // Rounds numbered apart from `ingest`'s, so no op id is pushed twice.
    let first_round = 1_000_000;
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(4 * per_client() as u64));
    for d in deployments {
        let mut round = first_round;
        group.bench_function(d.name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    let batches: Vec<Vec<Vec<NewOp>>> = ingest_batches(round)
                        .into_iter()
                        .map(|client| {
                            client
                                .into_iter()
                                .map(|batch| {
                                    batch
                                        .into_iter()
                                        .map(|op| NewOp {
                                            header: tidemark::record::stored_change_header(&op.change).unwrap(),
                                            stored: StoredOp { op, user: "c1".into() },
                                        })
                                        .collect()
                                })
                                .collect()
                        })
                        .collect();
                    let started = Instant::now();
                    std::thread::scope(|s| {
                        for (c, client) in batches.iter().enumerate() {
                            let append = &d.append[c % d.append.len()];
                            s.spawn(move || client.iter().for_each(|batch| append(batch)));
                        }
                    });
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

fn bench_initial(c: &mut Criterion, deployments: &[Deployment]) {
    let n = records();
    let mut group = c.benchmark_group("initial_sync");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(n as u64));
    for d in deployments {
        let url = d.urls.last().unwrap();
        group.bench_function(d.name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let replica = Replica::open(dir.path().join("r.db")).unwrap();
                    let remote = HttpRemote::new(url, &d.tokens[1], "big").unwrap();
                    let started = Instant::now();
                    d.rt.block_on(Round::new(&replica, SessionConfig::default()).run(&remote))
                        .unwrap();
                    total += started.elapsed();
                    assert_eq!(replica.status().unwrap().pulled, n as u64);
                }
                total
            })
        });
    }
    group.finish();
}

fn bench_incremental(c: &mut Criterion, deployments: &[Deployment]) {
    let n = records();
    let mut group = c.benchmark_group("incremental_100");
    group
        .sample_size(20)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(15));
    for d in deployments {
        let dir = tempfile::tempdir().unwrap();
        let reader = Replica::open(dir.path().join("r.db")).unwrap();
        let remote = HttpRemote::new(d.urls.last().unwrap(), &d.tokens[1], "big").unwrap();
        d.rt.block_on(Round::new(&reader, SessionConfig::default()).run(&remote))
            .unwrap();
        let writer = Replica::in_memory().unwrap();
        let writer_remote = HttpRemote::new(&d.urls[0], &d.tokens[0], "big").unwrap();
        let mut round = 0usize;
        group.bench_function(d.name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    let edits = (0..100)
                        .map(|k| {
                            let i = (round * 100 + k) % n;
                            Edit::put("contacts", &format!("r{i:07}"), json!({"round": round})).unwrap()
                        })
                        .collect();
                    writer.apply_edits(edits).unwrap();
                    d.rt.block_on(Round::new(&writer, SessionConfig::default()).run(&writer_remote))
                        .unwrap();
                    let started = Instant::now();
                    let s =
                        d.rt.block_on(Round::new(&reader, SessionConfig::default()).run(&remote))
                            .unwrap();
                    total += started.elapsed();
                    assert!(s.pulled >= 100, "{s:?}");
                }
                total
            })
        });
    }
    group.finish();
}

/// Median and p95 of the time from an edit on one replica to the record on another.
fn propagation(d: &Deployment) -> (Duration, Duration) {
    let edits = if common::quick() { 5 } else { 40 };
    let (alice, bob) = (
        Arc::new(Replica::in_memory().unwrap()),
        Arc::new(Replica::in_memory().unwrap()),
    );
    let remote = |i: usize| HttpRemote::new(&d.urls[i % d.urls.len()], &d.tokens[2 + i], "watch").unwrap();
    let mut times = d.rt.block_on(async {
        let a = BackgroundSync::start(alice.clone(), remote(0), BackgroundConfig::default());
        let b = BackgroundSync::start(bob.clone(), remote(1), BackgroundConfig::default());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut times = Vec::with_capacity(edits);
        for i in 0..edits {
            let id = format!("p{i}");
            let started = Instant::now();
            alice.put("contacts", &id, json!({"n": i})).unwrap();
            a.nudge();
            while bob.get("contacts", &id).unwrap().is_none() {
                assert!(started.elapsed() < Duration::from_secs(60), "edit {i} never arrived");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            times.push(started.elapsed());
            // Apart, so each edit is a round of its own.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        a.stop().await;
        b.stop().await;
        times
    });
    times.sort();
    (times[edits / 2], times[edits * 95 / 100])
}

/// PostgreSQL alone writing what 4 clients' 500-op appends write, under the
/// space's row lock, for 15 s through `pgbench`: ops per second.
fn pgbench_limit(pg: &postgres::TestPostgres) -> Result<f64, String> {
    let url = pg.database();
    let setup = include_str!("postgres/append_setup.sql");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            let driver = tokio::spawn(connection);
            let done = client.batch_execute(setup).await;
            drop(client);
            let _ = driver.await;
            done
        })
        .map_err(|e| format!("setting up: {e}"))?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/postgres/append.sql");
    let out = std::process::Command::new("pgbench")
        .args([
            "-n",
            "-c",
            "4",
            "-j",
            "2",
            "-T",
            if common::quick() { "2" } else { "15" },
            "-f",
            script,
            &url,
        ])
        .output()
        .map_err(|e| format!("pgbench: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tps: f64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            format!(
                "no tps in pgbench's output: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(tps * 500.0)
}

fn benches(c: &mut Criterion) {
    let Some(pg) = postgres::postgres("benches/backends") else {
        return;
    };
    let deployments = deployments(&pg);
    for d in &deployments {
        let started = Instant::now();
        (d.seed)("big", records());
        eprintln!("{}: seeded {} records in {:.1?}", d.name, records(), started.elapsed());
    }
    for d in &deployments {
        let (median, p95) = propagation(d);
        println!("propagation/{}: median {median:.1?}, p95 {p95:.1?}", d.name);
    }
    match pgbench_limit(&pg) {
        Ok(ops) => println!("ingest_limit/pgbench_4_clients: {ops:.0} ops/s"),
        Err(e) => println!("ingest_limit/pgbench_4_clients: not measured ({e})"),
    }
    bench_ingest(c, &deployments);
    bench_store_alone(c, &deployments);
    bench_initial(c, &deployments);
    bench_incremental(c, &deployments);
}

criterion_group!(backends, benches);
criterion_main!(backends);
