//! Peak memory of a real server while a client catches up on large ops.
//!
//! A `tidemark serve` child process (the binary this package builds) holds a
//! space with 400 records of one field each, a string of 200 KiB random
//! printable text, written by 400 ops through a `Replica` and its HTTP remote.
//! Clients are `tidemark` child processes, as a user runs them:
//!
//! - `catch_up/pull`: a store that synced before the 400 ops arrived runs
//!   `tidemark sync` and pulls them in pull pages.
//! - `catch_up/snapshot`: a fresh store runs `tidemark login`, whose initial
//!   sync downloads the compacted documents in snapshot pages.
//!
//! Each phase (taking in the ops, pulls, snapshots) has a server process of its
//! own, restarted on the same data and port, so that its peak RSS (`VmHWM` in
//! `/proc/PID/status`, read at the end of the phase) is what that phase costs,
//! from a cold start. A client's peak comes from `wait4`. Target: the server
//! stays under 256 MiB in every phase; the bench panics otherwise.
//!
//! `cargo bench --bench server_rss` (Linux: it reads `/proc`). With
//! `SERVER_RSS_RECORDS=N` the 400 ops edit N records in turn (the same field
//! again and again), so that each record's document carries 400/N values.

#[cfg(target_os = "linux")]
mod linux {
    use std::fs;
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use criterion::{Criterion, SamplingMode, Throughput};
    use rand::Rng;
    use serde_json::json;
    use tidemark::Replica;
    use tidemark::protocol::{Request, Response, SessionConfig};
    use tidemark::remote::Remote;
    use tidemark::remote::http::HttpRemote;
    use tidemark::replica::Edit;
    use tidemark::sync::Round;

    /// Ops of 200 KiB (10 in quick mode: `TIDEMARK_BENCH_QUICK=1`).
    fn ops() -> usize {
        if std::env::var("TIDEMARK_BENCH_QUICK").is_ok_and(|v| v == "1") {
            10
        } else {
            400
        }
    }
    const RECORDS_VAR: &str = "SERVER_RSS_RECORDS";
    const TEXT_BYTES: usize = 200 * 1024;
    const LIMIT_KB: u64 = 256 * 1024;
    const SPACE: &str = "big";
    const ADMIN_TOKEN: &str = "server-rss-admin-token-0123456789";

    fn tidemark() -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
        for var in ["TIDEMARK_STORE", "TIDEMARK_TOKEN", "TIDEMARK_ADMIN_TOKEN", "RUST_LOG"] {
            cmd.env_remove(var);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// `tidemark serve` on a loopback port; killed when dropped.
    struct Server {
        child: Child,
        url: String,
    }

    impl Server {
        fn start(data: &Path, listen: &str) -> Server {
            let mut child = tidemark()
                .args(["serve", "--data"])
                .arg(data)
                .args(["--listen", listen])
                .env("TIDEMARK_ADMIN_TOKEN", ADMIN_TOKEN)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting tidemark serve");
            let mut stderr = BufReader::new(child.stderr.take().unwrap());
            let mut first = String::new();
            stderr.read_line(&mut first).unwrap();
            // Keep draining so that the server never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut rest = String::new();
                while stderr.read_line(&mut rest).unwrap_or(0) > 0 {
                    eprint!("server: {rest}");
                    rest.clear();
                }
            });
            let url = first
                .strip_prefix("tidemark server listening on ")
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or_else(|| panic!("the server's first line names its address: {first:?}"))
                .to_string();
            Server { child, url }
        }

        fn status_kb(&self, key: &str) -> u64 {
            status_kb(
                &fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap(),
                key,
            )
        }

        /// Peak RSS since the process started, in kB.
        fn peak_kb(&self) -> u64 {
            self.status_kb("VmHWM")
        }

        fn rss_kb(&self) -> u64 {
            self.status_kb("VmRSS")
        }

        /// User and system time so far, from `/proc/PID/stat`.
        fn cpu(&self) -> Duration {
            let stat = fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
            // The fields after the command name, which is in parentheses and may hold spaces.
            let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
            // utime and stime are fields 14 and 15 of the line, in clock ticks.
            let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
            // SAFETY: sysconf only reads a configuration value.
            let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
            Duration::from_nanos(ticks * 1_000_000_000 / per_second)
        }

        /// Stops the server as an operator would (SIGTERM) and starts it again on
        /// the same data and address: the clients' stores name that address.
        fn restart(&mut self, data: &Path) {
            // SAFETY: signals a child of this process that has not been reaped.
            assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) }, 0);
            assert!(self.child.wait().unwrap().success(), "the server stops cleanly");
            *self = Server::start(data, self.url.strip_prefix("http://").unwrap());
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn ok(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn admin(server: &Server, args: &[&str]) -> String {
        ok(tidemark()
            .args(["admin", "--server", &server.url])
            .args(args)
            .env("TIDEMARK_ADMIN_TOKEN", ADMIN_TOKEN))
    }

    /// With this variable set, the bench binary is the launcher: it runs
    /// `tidemark` with its own arguments and writes the child's exit code, peak
    /// RSS, wall time and CPU time to the file the variable names.
    pub const LAUNCH_REPORT: &str = "SERVER_RSS_LAUNCH_REPORT";

    /// A child's peak RSS as `wait4` reports it includes the memory of the
    /// process that spawned it (the kernel keeps the peak of the address space
    /// `exec` replaces), and this bench holds hundreds of MiB by then. A freshly
    /// started launcher holds a few MiB: it spawns the client, so that the
    /// client's figure is its own.
    pub fn launch(report: std::ffi::OsString) {
        let floor_kb = self_status_kb("VmHWM");
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(std::env::args_os().skip(1))
            .env_remove(LAUNCH_REPORT)
            .spawn()
            .expect("starting tidemark");
        let (code, usage) = wait_with_usage(child);
        let elapsed = started.elapsed();
        let report_line = format!(
            "{code} {} {} {floor_kb} {}",
            usage.peak_kb,
            elapsed.as_nanos(),
            usage.cpu.as_nanos()
        );
        fs::write(report, report_line).unwrap();
    }

    fn self_status_kb(key: &str) -> u64 {
        status_kb(&fs::read_to_string("/proc/self/status").unwrap(), key)
    }

    fn status_kb(status: &str, key: &str) -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in /proc/PID/status"))
    }

    struct Usage {
        peak_kb: u64,
        /// User and system time.
        cpu: Duration,
    }

    /// Reaps `child` with `wait4`, which also returns its resource usage (not
    /// exposed by `std::process`): the exit code (-1 if killed) and the usage.
    fn wait_with_usage(child: Child) -> (i32, Usage) {
        let mut status = 0;
        // SAFETY: `rusage` is plain data, valid when zeroed.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: the child is this process's own and not yet reaped; both
        // pointers are valid for writes.
        let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
        assert_eq!(
            pid,
            child.id() as libc::pid_t,
            "wait4: {}",
            std::io::Error::last_os_error()
        );
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        };
        let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        let usage = Usage {
            // ru_maxrss is in kB on Linux.
            peak_kb: usage.ru_maxrss as u64,
            cpu: time(usage.ru_utime) + time(usage.ru_stime),
        };
        (code, usage)
    }

    /// A client command that ended well: its stdout, wall time, peak RSS and CPU time.
    struct Run {
        stdout: String,
        elapsed: Duration,
        peak_kb: u64,
        cpu: Duration,
        /// The launcher's own peak when it started the client: the client's
        /// figure is at least this much whatever the client does.
        floor_kb: u64,
    }

    /// Runs `tidemark --store STORE ARGS` through the launcher.
    fn client(store: &Path, args: &[&str], log: &Path) -> Run {
        let report = log.with_extension("report");
        let out = Command::new(std::env::current_exe().unwrap())
            .env(LAUNCH_REPORT, &report)
            .env_remove("TIDEMARK_STORE")
            .env_remove("TIDEMARK_TOKEN")
            .env_remove("TIDEMARK_ADMIN_TOKEN")
            .env_remove("RUST_LOG")
            .arg("--store")
            .arg(store)
            .args(args)
            .stdin(Stdio::null())
            .stderr(fs::File::create(log).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the launcher failed: {}",
            fs::read_to_string(log).unwrap_or_default()
        );
        let fields: Vec<i64> = fs::read_to_string(&report)
            .unwrap()
            .split(' ')
            .map(|f| f.parse().unwrap())
            .collect();
        assert_eq!(
            fields[0],
            0,
            "tidemark {args:?} failed: {}",
            fs::read_to_string(log).unwrap_or_default()
        );
        let fields: Vec<u64> = fields.into_iter().map(|f| f as u64).collect();
        Run {
            stdout: String::from_utf8(out.stdout).unwrap(),
            peak_kb: fields[1],
            elapsed: Duration::from_nanos(fields[2]),
            floor_kb: fields[3],
            cpu: Duration::from_nanos(fields[4]),
        }
    }

    /// Random printable ASCII: deflate (automerge's saved documents) gains little on it.
    fn text(rng: &mut impl Rng) -> String {
        (0..TEXT_BYTES).map(|_| rng.random_range(b' '..=b'~') as char).collect()
    }

    fn mib(kb: u64) -> String {
        format!("{:.1} MiB ({kb} kB)", kb as f64 / 1024.0)
    }

    struct Phase {
        name: &'static str,
        server_peak_kb: u64,
        /// The server's RSS when the phase ended.
        server_end_kb: u64,
        /// The clients' peaks, lowest and highest of the phase's runs.
        client_peak_kb: Option<(u64, u64)>,
        /// The highest launcher peak in the phase (see `Run::floor_kb`).
        launcher_kb: u64,
        /// CPU time per catch-up, server and client.
        cpu: Option<(Duration, Duration)>,
    }

    pub fn bench(c: &mut Criterion) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("server");
        let mut server = Server::start(&data, "127.0.0.1:0");
        let started_kb = server.rss_kb();
        admin(&server, &["create-space", SPACE]);
        let mut tokens = Vec::new();
        for user in ["writer", "reader"] {
            tokens.push(admin(&server, &["add-user", user]).trim().to_string());
            admin(&server, &["grant", user, SPACE]);
        }
        let (writer_token, reader_token) = (&tokens[0], &tokens[1]);
        let url = server.url.clone();

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let writer = Replica::in_memory().unwrap();
        let remote = HttpRemote::new(&url, writer_token, SPACE).unwrap();
        writer
            .put("notes", "seed", json!({"text": "before the large ops"}))
            .unwrap();
        rt.block_on(Round::new(&writer, SessionConfig::default()).run(&remote))
            .unwrap();

        // The pull client's store: synced once before the large ops arrive.
        let login = [
            "login",
            "--server",
            &url,
            "--user",
            "reader",
            "--token",
            reader_token,
            "--space",
            SPACE,
        ];
        let template = dir.path().join("pull-template.db");
        client(&template, &login, &dir.path().join("template.log"));

        let records: usize = std::env::var(RECORDS_VAR).map_or(ops(), |v| {
            v.parse()
                .ok()
                .filter(|n| (1..=ops()).contains(n))
                .unwrap_or_else(|| panic!("{RECORDS_VAR}={v:?}: give a number of records from 1 to {}", ops()))
        });
        let mut rng = rand::rng();
        let edits = (0..ops())
            .map(|i| {
                Edit::put(
                    "notes",
                    &format!("n{:04}", i % records),
                    json!({"text": text(&mut rng)}),
                )
                .unwrap()
            })
            .collect();
        writer.apply_edits(edits).unwrap();
        let pending = writer.pending_ops(usize::MAX).unwrap();
        let op_bytes: usize = pending.iter().map(|p| p.op.change.len()).sum();
        let pushed = rt
            .block_on(Round::new(&writer, SessionConfig::default()).run(&remote))
            .unwrap();
        assert_eq!(pushed.pushed, ops() as u64, "{pushed:?}");
        drop((pending, writer));
        // A snapshot request brings the server's documents up to date before it
        // answers: the materializing is counted with the ingest, not the catch-up.
        let materialized = rt
            .block_on(remote.call(Request::Snapshot { after: None, limit: 1 }))
            .unwrap();
        assert!(matches!(materialized, Response::Snapshot(ref s) if s.as_of == ops() as u64 + 1));

        let mut phases = vec![Phase {
            name: "taking in the ops and materializing",
            server_peak_kb: server.peak_kb(),
            server_end_kb: server.rss_kb(),
            client_peak_kb: None,
            launcher_kb: 0,
            cpu: None,
        }];
        eprintln!(
            "server RSS at start {}; {} ops on {records} records, {} bytes of change on average ({} in all)",
            mib(started_kb),
            ops(),
            op_bytes / ops(),
            op_bytes
        );

        let mut group = c.benchmark_group("catch_up");
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(10))
            .throughput(Throughput::Bytes(op_bytes as u64));

        let mut run_phase =
            |group: &mut criterion::BenchmarkGroup<_>, name: &'static str, once: &mut dyn FnMut(usize) -> Run| {
                server.restart(&data);
                let (mut client_low, mut client_high, mut launcher_kb) = (u64::MAX, 0, 0);
                let (server_cpu, mut client_cpu) = (server.cpu(), Duration::ZERO);
                let mut round = 0;
                group.bench_function(name, |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            round += 1;
                            let run = once(round);
                            client_low = client_low.min(run.peak_kb);
                            client_high = client_high.max(run.peak_kb);
                            launcher_kb = launcher_kb.max(run.floor_kb);
                            client_cpu += run.cpu;
                            total += run.elapsed;
                        }
                        total
                    })
                });
                // A bench left out by a command-line filter has no phase.
                if round == 0 {
                    return;
                }
                phases.push(Phase {
                    name,
                    server_peak_kb: server.peak_kb(),
                    server_end_kb: server.rss_kb(),
                    client_peak_kb: Some((client_low, client_high)),
                    launcher_kb,
                    cpu: Some(((server.cpu() - server_cpu) / round as u32, client_cpu / round as u32)),
                });
            };

        run_phase(&mut group, "pull", &mut |round| {
            let store = dir.path().join(format!("pull-{round}.db"));
            fs::copy(&template, &store).unwrap();
            let run = client(&store, &["sync"], &dir.path().join("pull.log"));
            assert!(
                run.stdout.starts_with(&format!("pushed 0, pulled {}, ", ops())),
                "{}",
                run.stdout
            );
            fs::remove_file(&store).unwrap();
            run
        });
        run_phase(&mut group, "snapshot", &mut |round| {
            let store = dir.path().join(format!("snapshot-{round}.db"));
            let run = client(&store, &login, &dir.path().join("snapshot.log"));
            // `pushed 0, pulled 0, downloaded N record(s) by snapshot, …`
            let expected = format!("pushed 0, pulled 0, downloaded {} record(s) by snapshot,", records + 1);
            assert!(run.stdout.starts_with(&expected), "{}", run.stdout);
            fs::remove_file(&store).unwrap();
            run
        });
        group.finish();

        for phase in &phases {
            eprintln!(
                "{}: server peak RSS {} ({} at the end)",
                phase.name,
                mib(phase.server_peak_kb),
                mib(phase.server_end_kb)
            );
            if let Some((low, high)) = phase.client_peak_kb {
                eprintln!(
                    "  client peak RSS {} to {} (launcher {})",
                    mib(low),
                    mib(high),
                    mib(phase.launcher_kb)
                );
            }
            if let Some((server_cpu, client_cpu)) = phase.cpu {
                eprintln!("  CPU time per catch-up: server {server_cpu:.2?}, client {client_cpu:.2?}");
            }
        }
        for phase in &phases {
            assert!(
                phase.server_peak_kb < LIMIT_KB,
                "the server's peak RSS in phase {:?} is {}: over the 256 MiB limit",
                phase.name,
                mib(phase.server_peak_kb)
            );
        }
    }
}

#[cfg(target_os = "linux")]
criterion::criterion_group!(benches, linux::bench);

/// `criterion_main!`, with the launcher's way out first.
#[cfg(target_os = "linux")]
fn main() {
    if let Some(report) = std::env::var_os(linux::LAUNCH_REPORT) {
        return linux::launch(report);
    }
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("server_rss reads /proc: Linux only");
}
