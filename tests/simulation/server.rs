//! The simulated server: the real service core on a redb file in memory-backed
//! storage (tmpfs where the machine has one), so that it can be restarted,
//! backed up, restored to a backup (same epoch, shorter history) and wiped (a
//! new epoch), as an operator would.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidemark::Package;
use tidemark::protocol::message::{CreateSpace, Grant};
use tidemark::protocol::{Request, Response};
use tidemark::remote::RemoteError;
use tidemark::server::local::LocalRemote;
use tidemark::server::store::redb::RedbStore;
use tidemark::server::{Limits, Service};

use super::edits::package_json;

pub const SPACE: &str = "crm";
const ADMIN_TOKEN: &str = "simulation-admin-token-0123";
/// Changes up to this size are taken; a big put is larger.
pub const MAX_OP_BYTES: usize = 2048;

pub type Svc = Arc<Service<RedbStore>>;

pub fn user_name(user: usize) -> String {
    format!("user{user}")
}

pub fn package(version: u64) -> Package {
    Package::from_json(&package_json(version)).expect("a valid package")
}

/// What an operator's backup of the server holds besides the file.
#[derive(Clone)]
struct Backup {
    file: PathBuf,
    tokens: Vec<String>,
    package: u64,
}

pub struct Server {
    dir: PathBuf,
    service: Option<Svc>,
    /// Each user's token (users are `user0`, `user1`, …).
    pub tokens: Vec<String>,
    pub package: u64,
    /// Users that may only read.
    pub read_only: Vec<bool>,
    backups: Vec<Backup>,
}

impl Server {
    pub fn new(dir: &Path, users: usize) -> Server {
        let mut server = Server {
            dir: dir.to_path_buf(),
            service: None,
            tokens: Vec::new(),
            package: 1,
            read_only: vec![false; users],
            backups: Vec::new(),
        };
        server.set_up(users);
        server
    }

    fn file(&self) -> PathBuf {
        self.dir.join("server.redb")
    }

    fn limits() -> Limits {
        Limits {
            max_op_bytes: MAX_OP_BYTES,
            ..Limits::default()
        }
    }

    /// Opens the store file. A service just dropped may still have its
    /// materializer thread holding the file for a moment: wait for it.
    fn open_store(&self) -> RedbStore {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match RedbStore::open(self.file()) {
                Ok(store) => return store,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("the server store does not open: {e}"),
            }
        }
    }

    fn start(&mut self, store: RedbStore) {
        self.service = Some(Arc::new(
            Service::new(store, Self::limits(), Some(ADMIN_TOKEN)).expect("the service starts"),
        ));
    }

    /// A new store: the space with the current package, every user a writer.
    fn set_up(&mut self, users: usize) {
        let store = self.open_store();
        self.start(store);
        let service = self.service();
        service
            .create_space(&CreateSpace {
                space: SPACE.into(),
                package: Some(package(self.package)),
            })
            .expect("space created");
        self.tokens = (0..users)
            .map(|u| {
                let token = service.add_user(&user_name(u)).expect("user added").token;
                service
                    .grant(&Grant {
                        user: user_name(u),
                        space: SPACE.into(),
                        read_only: false,
                    })
                    .expect("granted");
                token
            })
            .collect();
        self.read_only = vec![false; users];
    }

    pub fn service(&self) -> Svc {
        self.service.clone().expect("the server runs")
    }

    /// Answers one request of `user` (an in-process call: the bus decides
    /// whether the client sees the answer).
    pub fn call(&self, user: usize, request: Request) -> Result<Response, RemoteError> {
        LocalRemote::new(self.service(), self.tokens[user].clone(), SPACE).call_blocking(request)
    }

    /// Stops the process and starts it again on the same file.
    pub fn restart(&mut self) {
        self.service = None;
        let store = self.open_store();
        self.start(store);
    }

    /// Stops the server, runs `f` on its closed file, starts it again.
    fn with_stopped(&mut self, f: impl FnOnce(&Path)) {
        self.service = None;
        // Holding the store proves every other handle on the file is closed.
        let store = self.open_store();
        drop(store);
        f(&self.file());
        let store = self.open_store();
        self.start(store);
    }

    pub fn backup(&mut self) {
        let copy = self.dir.join(format!("server-backup{}.redb", self.backups.len()));
        self.with_stopped(|file| {
            std::fs::copy(file, &copy).expect("backup copied");
        });
        self.backups.push(Backup {
            file: copy,
            tokens: self.tokens.clone(),
            package: self.package,
        });
    }

    /// Puts back one earlier backup: same epoch, a shorter history.
    pub fn restore(&mut self, pick: usize) -> bool {
        if self.backups.is_empty() {
            return false;
        }
        let backup = self.backups[pick % self.backups.len()].clone();
        self.with_stopped(|file| {
            std::fs::copy(&backup.file, file).expect("backup restored");
        });
        self.tokens = backup.tokens;
        self.package = backup.package;
        let users = self.read_only.len();
        self.read_only = vec![false; users];
        // Grants in the backup may differ from what the model believes: make them all writers.
        for u in 0..users {
            self.set_access(u, false);
        }
        true
    }

    /// Loses every byte and starts over: a new epoch, new tokens.
    pub fn wipe(&mut self) {
        let users = self.read_only.len();
        self.service = None;
        drop(self.open_store());
        std::fs::remove_file(self.file()).expect("server file removed");
        self.set_up(users);
    }

    pub fn set_access(&mut self, user: usize, read_only: bool) {
        self.service()
            .grant(&Grant {
                user: user_name(user),
                space: SPACE.into(),
                read_only,
            })
            .expect("grant changed");
        self.read_only[user] = read_only;
    }

    pub fn change_package(&mut self) {
        self.package += 1;
        self.service()
            .set_package(SPACE, Some(&package(self.package)))
            .expect("package changed");
    }
}
