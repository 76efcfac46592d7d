//! A server core in memory for the server-side fuzz checks: one space with a
//! writer, a reader and an admin token, and what a refused request must leave
//! alone.
#![allow(dead_code)]

use std::sync::Arc;

use tidemark::protocol::message::{CreateSpace, Grant};
use tidemark::server::store::redb::RedbStore;
use tidemark::server::store::{PageLimit, ServerStore, StoredOp};
use tidemark::server::{Limits, Service};
use tidemark::{OpId, Seq};

use crate::common::package;

/// The space every check writes to.
pub const SPACE: &str = "crm";
/// A space the writer is not a member of.
pub const OTHER_SPACE: &str = "sales";
pub const WRITER: &str = "ada";
pub const READER: &str = "bob";
/// A user with a token and no space.
pub const STRANGER: &str = "eve";
pub const ADMIN_TOKEN: &str = "fuzz-admin-token";

pub struct Fixture {
    pub service: Arc<Service<RedbStore>>,
    pub writer_token: String,
    pub reader_token: String,
    pub stranger_token: String,
}

impl Fixture {
    /// A fresh server: SPACE (with the fuzz package or schemaless) where WRITER
    /// writes and READER reads, and OTHER_SPACE where only READER is a member.
    pub fn new(with_package: bool, limits: Limits) -> Fixture {
        let store = RedbStore::in_memory().expect("an in-memory server store");
        let service = Arc::new(Service::new(store, limits, Some(ADMIN_TOKEN)).expect("a service"));
        for space in [SPACE, OTHER_SPACE] {
            service
                .create_space(&CreateSpace {
                    space: space.into(),
                    package: with_package.then(package),
                })
                .expect("the space is created");
        }
        let token = |user: &str| service.add_user(user).expect("the user is added").token;
        let (writer_token, reader_token, stranger_token) = (token(WRITER), token(READER), token(STRANGER));
        let grant = |user: &str, space: &str, read_only: bool| {
            service
                .grant(&Grant {
                    user: user.into(),
                    space: space.into(),
                    read_only,
                })
                .expect("the grant is made")
        };
        grant(WRITER, SPACE, false);
        grant(READER, SPACE, true);
        grant(READER, OTHER_SPACE, false);
        Fixture {
            service,
            writer_token,
            reader_token,
            stranger_token,
        }
    }

    pub fn store(&self) -> &RedbStore {
        self.service.store()
    }
}

/// A random-looking (version 4) op id that is the same on every run.
pub fn v4_id(n: u64) -> OpId {
    const V4: u128 = 0x0000_0000_0000_4000_8000_0000_0000_0000;
    OpId::from_u128(V4 | u128::from(n & 0xffff_ffff_ffff))
}

/// What a refused request must leave alone in one space.
#[derive(Debug, Clone, PartialEq)]
pub struct SpaceState {
    pub head: Seq,
    pub ops: Vec<(Seq, StoredOp)>,
}

pub fn space_state(store: &impl ServerStore, space: &str) -> SpaceState {
    SpaceState {
        head: store.head(space).expect("head"),
        ops: store
            .read_ops(space, Seq(0), PageLimit::count(usize::MAX))
            .expect("read_ops"),
    }
}
