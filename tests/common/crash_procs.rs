//! Child processes that a crash test SIGKILLs at any moment: their output as
//! it comes, how they ended, and a `tidemark serve` that restarts on the same
//! port (clients are bound to its URL, so a new port would be a new server).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a child process ended, with everything it wrote.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Outcome {
    /// A Rust panic: exit code 101, or a panic message (a panic on a thread
    /// other than main can end the process otherwise, or not at all).
    pub fn panicked(&self) -> bool {
        self.status.code() == Some(101) || self.stderr.contains("panicked")
    }

    pub fn killed(&self) -> bool {
        self.status.signal() == Some(libc::SIGKILL)
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// A running child whose stdout and stderr are collected by threads, so that
/// it never blocks on a full pipe and what it wrote before a kill is kept.
/// Dropped while running, it is killed.
pub struct Running {
    child: Option<Child>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
}

fn collect(pipe: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            into.lock().unwrap().push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    })
}

impl Running {
    pub fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Running {
            child: Some(child),
            stdout,
            stderr,
            readers,
            started: Instant::now(),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether the process has ended (it stays a zombie until [`Running::wait`]).
    pub fn has_exited(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_some()
    }

    pub fn stdout_so_far(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends `signal`; a process that has already ended is left alone.
    pub fn signal(&mut self, signal: i32) {
        let child = self.child.as_mut().unwrap();
        if child.try_wait().unwrap().is_none() {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
    }

    /// Waits for the end and for the last of its output.
    pub fn wait(mut self) -> Outcome {
        let status = self.child.take().unwrap().wait().unwrap();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Outcome {
            status,
            stdout: self.stdout_so_far(),
            stderr: self.stderr_so_far(),
            took: self.started.elapsed(),
        }
    }

    /// Waits at most `limit`; on time out the process is killed and Err says so.
    pub fn wait_at_most(mut self, limit: Duration) -> Result<Outcome, String> {
        while !self.has_exited() {
            if self.started.elapsed() > limit {
                self.kill();
                let outcome = self.wait();
                return Err(format!("did not end within {limit:?}; stderr:\n{}", outcome.stderr));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(self.wait())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `tidemark serve` on a fixed loopback port, killed and started again at will.
pub struct RestartingServer {
    data: PathBuf,
    admin_token: String,
    pub url: String,
    port: u16,
    running: Option<Running>,
    /// stderr of the runs that ended, each under a header.
    past_logs: String,
    pub starts: usize,
}

/// A port nothing listens on now (the kernel's choice, released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RestartingServer {
    pub fn start(data: &Path, admin_token: &str) -> RestartingServer {
        // Another process may take the port we were given before the server binds it.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut server = RestartingServer {
                data: data.to_path_buf(),
                admin_token: admin_token.to_string(),
                url: format!("http://127.0.0.1:{port}"),
                port,
                running: None,
                past_logs: String::new(),
                starts: 0,
            };
            match server.launch() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("the server would not start: {last}");
    }

    /// Starts the process and waits for its "listening" line.
    fn launch(&mut self) -> Result<(), String> {
        let mut cmd = super::cli::tidemark();
        cmd.args(["serve", "--data"])
            .arg(&self.data)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .env("TIDEMARK_ADMIN_TOKEN", &self.admin_token);
        let mut running = Running::spawn(&mut cmd);
        self.starts += 1;
        let started = Instant::now();
        loop {
            let stderr = running.stderr_so_far();
            if stderr.contains("tidemark server listening on") {
                self.running = Some(running);
                return Ok(());
            }
            if running.has_exited() || started.elapsed() > Duration::from_secs(60) {
                let outcome = running.wait_at_most(Duration::from_secs(5))?;
                self.past_logs
                    .push_str(&format!("--- run {} (did not start)\n{}", self.starts, outcome.stderr));
                return Err(format!("{:?}: {}", outcome.status, outcome.stderr));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts it again on the same port after a kill, retrying while the port
    /// is not yet free again.
    pub fn restart(&mut self) {
        assert!(self.running.is_none(), "restart of a running server");
        let mut last = String::new();
        for _ in 0..20 {
            match self.launch() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the server would not start again after a kill: {last}");
    }

    /// Stops the process with `signal` and waits for it; returns how it ended.
    pub fn stop(&mut self, signal: i32) -> Outcome {
        let mut running = self.running.take().expect("a running server");
        running.signal(signal);
        let outcome = running
            .wait_at_most(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("the server {e}"));
        self.past_logs.push_str(&format!(
            "--- run {} ({:?})\n{}",
            self.starts, outcome.status, outcome.stderr
        ));
        outcome
    }

    pub fn kill(&mut self) -> Outcome {
        self.stop(libc::SIGKILL)
    }

    /// Whether the process ended without being told to.
    pub fn has_exited(&mut self) -> bool {
        self.running.as_mut().is_some_and(|r| r.has_exited())
    }

    /// The stderr of every run so far, the current one included.
    pub fn log(&self) -> String {
        let mut log = self.past_logs.clone();
        if let Some(running) = &self.running {
            log.push_str(&format!(
                "--- run {} (running)\n{}",
                self.starts,
                running.stderr_so_far()
            ));
        }
        log
    }
}
